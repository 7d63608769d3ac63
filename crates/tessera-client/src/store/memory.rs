//! [`MemoryStore`]: tokens kept only for the life of the process, for
//! services and tests that must not write credentials to disk.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::{ServerUrl, StoreError, StoredTokens, TokenStore};

/// A [`TokenStore`] that keeps tokens in memory only.
#[derive(Default)]
pub struct MemoryStore {
    by_server: Mutex<HashMap<ServerUrl, StoredTokens>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<ServerUrl, StoredTokens>> {
        // A panic in another holder cannot leave the map half-written (each
        // operation is a single insert or remove), so poisoning is ignored.
        self.by_server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<ServerUrl> = self.entries().keys().cloned().collect();
        f.debug_struct("MemoryStore")
            .field("servers", &servers)
            .finish()
    }
}

impl TokenStore for MemoryStore {
    fn load(&self, server: &ServerUrl) -> Result<Option<StoredTokens>, StoreError> {
        Ok(self.entries().get(server).cloned())
    }

    fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        self.entries().insert(tokens.server.clone(), tokens.clone());
        Ok(())
    }

    fn clear(&self, server: &ServerUrl) -> Result<(), StoreError> {
        self.entries().remove(server);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample;

    #[test]
    fn tokens_are_kept_per_server() {
        let store = MemoryStore::new();
        let a = sample("http://127.0.0.1:1", "alice");
        let b = sample("http://127.0.0.1:2", "bob");

        store.save(&a).unwrap();
        store.save(&b).unwrap();
        store.clear(&a.server).unwrap();

        assert_eq!(store.load(&a.server).unwrap(), None);
        assert_eq!(store.load(&b.server).unwrap(), Some(b));
    }
}

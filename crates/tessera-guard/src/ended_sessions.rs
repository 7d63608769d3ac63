//! The sessions the issuer has ended, as a [`crate::RevocationFeed`] reports them. The
//! [`crate::Guard`] refuses tokens of these sessions; each entry is forgotten once every
//! token of its session has expired, so the set stays small.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Ended session ids and the time (issuer clock, Unix seconds) after which no token of
/// the session can still be valid.
#[derive(Debug, Clone, Default)]
pub(crate) struct EndedSessions {
    forget_after: Arc<RwLock<HashMap<String, i64>>>,
}

impl EndedSessions {
    /// Whether tokens of `sid` must be refused.
    pub(crate) fn contains(&self, sid: &str) -> bool {
        self.read().contains_key(sid)
    }

    /// Refuses tokens of `sid` until the issuer's clock passes `forget_after`.
    /// Returns how many entries had to be dropped to stay under `capacity`.
    pub(crate) fn insert(&self, sid: String, forget_after: i64, capacity: usize) -> usize {
        let mut sessions = self.write();
        let known = sessions.get(&sid).copied().unwrap_or(i64::MIN);
        sessions.insert(sid, known.max(forget_after));
        let excess = sessions.len().saturating_sub(capacity);
        if excess == 0 {
            return 0;
        }
        // Over capacity: the entries closest to being forgotten go first. Sorting is
        // fine here because a full set means something is already badly wrong.
        let mut by_age: Vec<(i64, String)> = sessions
            .iter()
            .map(|(sid, forget)| (*forget, sid.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, sid) in by_age.into_iter().take(excess) {
            sessions.remove(&sid);
        }
        excess
    }

    /// Forgets every session whose tokens have all expired by `issuer_now`.
    pub(crate) fn forget_expired(&self, issuer_now: i64) {
        self.write()
            .retain(|_, forget_after| *forget_after >= issuer_now);
    }

    /// How many sessions are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    // A panic while holding the lock cannot leave the map half-updated in a way that
    // matters (each operation is one insert or one retain), so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, i64>> {
        self.forget_after
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, i64>> {
        self.forget_after
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_forgotten_after_their_horizon() {
        let ended = EndedSessions::default();
        ended.insert("s1".to_owned(), 100, 10);

        ended.forget_expired(100);
        assert!(ended.contains("s1"));
        ended.forget_expired(101);
        assert!(!ended.contains("s1"));
    }

    #[test]
    fn a_full_set_drops_the_entries_closest_to_expiry() {
        let ended = EndedSessions::default();
        ended.insert("old".to_owned(), 10, 2);
        ended.insert("mid".to_owned(), 20, 2);

        let dropped = ended.insert("new".to_owned(), 30, 2);

        assert_eq!(dropped, 1);
        assert_eq!(ended.len(), 2);
        assert!(!ended.contains("old"));
        assert!(ended.contains("mid") && ended.contains("new"));
    }
}

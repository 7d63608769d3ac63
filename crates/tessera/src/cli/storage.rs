//! Where the CLI keeps tokens (step 3 of the loop): the system keyring when
//! it works, else the owner-only credentials file, as `gh` does. The choice
//! is made at login, when tokens are first saved, and recorded in the
//! profile, so the warning about the fallback is shown once.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use tessera_client::{FileStore, KeyringStore, StoreError, StoredTokens, TokenStore};

use super::Target;

/// The service name of keyring entries; the account is the server URL.
const KEYRING_SERVICE: &str = "tessera";

/// Which store holds a profile's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum StoreKind {
    /// The operating system's keyring.
    Keyring,
    /// The owner-only credentials file.
    File,
}

/// The credentials file, also home of the lock that serialises renewals
/// for both stores.
pub(super) fn file_store() -> anyhow::Result<Arc<FileStore>> {
    let store = FileStore::open_default().context("cannot locate the credentials file")?;
    Ok(Arc::new(store))
}

/// `credentials.json.lock`: one renewal at a time across processes,
/// whichever store holds the tokens.
fn renewal_lock_path(file: &FileStore) -> PathBuf {
    let mut path = file.path().as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

/// The system keyring, with renewals serialised like the file's.
pub(super) fn keyring() -> Result<Arc<dyn TokenStore>, StoreError> {
    let file = FileStore::open_default()?;
    let store = KeyringStore::open(KEYRING_SERVICE)?.with_renewal_lock(renewal_lock_path(&file));
    Ok(Arc::new(store))
}

/// The store that holds `target`'s tokens: the one recorded in its profile,
/// or the credentials file for logins made before profiles existed.
pub(super) fn open(target: &Target) -> anyhow::Result<Arc<dyn TokenStore>> {
    match target.profile.as_ref().map(|profile| profile.store) {
        Some(StoreKind::Keyring) => keyring().map_err(|error| {
            anyhow!(
                "the tokens for {} are in the system keyring, which cannot \
                 be used now: {error}; log in again (add --insecure-storage \
                 to keep them in a file)",
                target.server
            )
        }),
        Some(StoreKind::File) | None => Ok(file_store()?),
    }
}

/// Where [`save_new_tokens`] put the tokens, and a warning to show if it
/// had to fall back to the file.
pub(super) struct Saved {
    pub(super) kind: StoreKind,
    pub(super) warning: Option<String>,
}

/// Saves freshly granted tokens in the keyring, or in `file` when
/// `insecure_storage` is set or the keyring fails. A keyring save also
/// removes any older copy from the file; the caller removes an older
/// keyring copy when the profile says there is one (the keyring is not
/// touched at all with `insecure_storage`).
pub(super) fn save_new_tokens(
    tokens: &StoredTokens,
    insecure_storage: bool,
    keyring: impl FnOnce() -> Result<Arc<dyn TokenStore>, StoreError>,
    file: &FileStore,
) -> Result<Saved, StoreError> {
    if insecure_storage {
        file.save(tokens)?;
        return Ok(Saved {
            kind: StoreKind::File,
            warning: None,
        });
    }

    let in_keyring = keyring().and_then(|keyring| keyring.save(tokens));
    match in_keyring {
        Ok(()) => {
            file.clear(&tokens.server)?;
            Ok(Saved {
                kind: StoreKind::Keyring,
                warning: None,
            })
        }
        Err(reason) => {
            file.save(tokens)?;
            Ok(Saved {
                kind: StoreKind::File,
                warning: Some(format!(
                    "warning: the system keyring cannot be used ({reason}); the \
                     tokens are kept in {}, readable only by you \
                     (--insecure-storage skips this attempt)",
                    file.path().display()
                )),
            })
        }
    }
}

/// How `status` names a store.
pub(super) fn describe(kind: Option<StoreKind>) -> anyhow::Result<String> {
    Ok(match kind {
        Some(StoreKind::Keyring) => "the system keyring".to_owned(),
        Some(StoreKind::File) | None => {
            format!("{} (0600 file)", file_store()?.path().display())
        }
    })
}

#[cfg(test)]
mod tests {
    use tessera_client::{MemoryStore, ServerUrl};

    use super::*;

    /// A keyring that opens but refuses every write, like a locked one.
    struct BrokenKeyring;

    impl TokenStore for BrokenKeyring {
        fn load(&self, _: &ServerUrl) -> Result<Option<StoredTokens>, StoreError> {
            Ok(None)
        }
        fn save(&self, _: &StoredTokens) -> Result<(), StoreError> {
            Err(StoreError::Keyring {
                reason: "locked".into(),
            })
        }
        fn clear(&self, _: &ServerUrl) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn tokens() -> StoredTokens {
        StoredTokens {
            server: ServerUrl::parse("http://127.0.0.1:1").unwrap(),
            username: "alice".into(),
            access_token: "access-secret".into(),
            refresh_token: "refresh-secret".into(),
            expires_at: 1_000,
            lifetime_secs: 100,
            server_clock_offset_secs: 0,
        }
    }

    fn file_in(dir: &tempfile::TempDir) -> FileStore {
        FileStore::at(dir.path().join("tessera").join("credentials.json"))
    }

    #[test]
    fn a_working_keyring_gets_the_tokens_and_the_file_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir);
        let keyring = Arc::new(MemoryStore::new());
        let handle = Arc::clone(&keyring);

        let saved = save_new_tokens(&tokens(), false, move || Ok(handle), &file).unwrap();

        assert_eq!(saved.kind, StoreKind::Keyring);
        assert!(saved.warning.is_none());
        assert!(keyring.load(&tokens().server).unwrap().is_some());
        assert!(file.load(&tokens().server).unwrap().is_none());
    }

    #[test]
    fn a_keyring_that_cannot_be_opened_falls_back_to_the_file_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir);
        let unavailable = || {
            Err(StoreError::Keyring {
                reason: "no D-Bus session".into(),
            })
        };

        let saved = save_new_tokens(&tokens(), false, unavailable, &file).unwrap();

        assert_eq!(saved.kind, StoreKind::File);
        let warning = saved.warning.unwrap();
        assert!(warning.contains("no D-Bus session"), "{warning}");
        assert!(!warning.contains("secret"), "{warning}");
        assert!(file.load(&tokens().server).unwrap().is_some());
    }

    #[test]
    fn a_keyring_that_refuses_the_write_falls_back_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir);

        let saved =
            save_new_tokens(&tokens(), false, || Ok(Arc::new(BrokenKeyring)), &file).unwrap();

        assert_eq!(saved.kind, StoreKind::File);
        assert!(saved.warning.is_some());
    }

    #[test]
    fn insecure_storage_skips_the_keyring_silently() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir);
        let keyring = Arc::new(MemoryStore::new());
        let handle = Arc::clone(&keyring);

        let saved = save_new_tokens(&tokens(), true, move || Ok(handle), &file).unwrap();

        assert_eq!(saved.kind, StoreKind::File);
        assert!(saved.warning.is_none());
        assert!(file.load(&tokens().server).unwrap().is_some());
        assert!(keyring.load(&tokens().server).unwrap().is_none());
    }
}

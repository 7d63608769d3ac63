//! [`KeyringStore`]: each server's tokens as one secret in the operating
//! system's keyring (kernel keyutils on Linux, Keychain on macOS,
//! Credential Manager on Windows), behind the `keyring` feature.
//!
//! Linux desktops' Secret Service is not among the back ends yet: it needs
//! a D-Bus client (`zbus-secret-service-keyring-store`), which would be
//! tried before keyutils; adding it is one more arm in `platform_store`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyring_core::{CredentialStore, Entry};

use super::file::{create_private_folder, lock_exclusive};
use crate::{RenewalLock, ServerUrl, StoreError, StoredTokens, TokenStore};

/// A [`TokenStore`] that keeps each server's tokens in the OS keyring,
/// under the given service name and the server's URL.
///
/// The keyring is shared by every process of the user, so renewals are
/// serialised through a lock file when one is set with
/// [`with_renewal_lock`](Self::with_renewal_lock).
///
/// On Linux the kernel keyring is in memory only: its entries survive
/// logging out for a few days but not a reboot, after which the user logs
/// in again.
#[derive(Clone)]
pub struct KeyringStore {
    service: String,
    store: Arc<CredentialStore>,
    lock_path: Option<PathBuf>,
}

impl KeyringStore {
    /// The keyring of this platform, with entries named after `service`
    /// (such as `tessera`).
    ///
    /// Fails with [`StoreError::Keyring`] when the platform has no keyring
    /// this build can use; that is the caller's cue to fall back to a
    /// [`FileStore`](crate::FileStore).
    pub fn open(service: impl Into<String>) -> Result<Self, StoreError> {
        Ok(Self {
            service: service.into(),
            store: platform_store()?,
            lock_path: None,
        })
    }

    /// Serialises renewals across processes through a lock on the file at
    /// `path` (created owner-only on first use).
    pub fn with_renewal_lock(mut self, path: impl Into<PathBuf>) -> Self {
        self.lock_path = Some(path.into());
        self
    }

    fn entry(&self, server: &ServerUrl) -> Result<Entry, StoreError> {
        Entry::new_in_store(&self.store, &self.service, server.as_str()).map_err(keyring_error)
    }
}

impl fmt::Debug for KeyringStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringStore")
            .field("service", &self.service)
            .field("lock_path", &self.lock_path)
            .finish_non_exhaustive()
    }
}

impl TokenStore for KeyringStore {
    fn load(&self, server: &ServerUrl) -> Result<Option<StoredTokens>, StoreError> {
        let secret = match self.entry(server)?.get_secret() {
            Ok(secret) => secret,
            Err(keyring_core::Error::NoEntry) => return Ok(None),
            Err(error) => return Err(keyring_error(error)),
        };
        let tokens: StoredTokens =
            serde_json::from_slice(&secret).map_err(|_| StoreError::Keyring {
                reason: format!("the keyring entry for {server} is not a Tessera token set"),
            })?;
        // An entry saved under one URL must not serve another server.
        Ok(Some(tokens).filter(|tokens| &tokens.server == server))
    }

    fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        let secret = serde_json::to_vec(tokens).map_err(|_| StoreError::Keyring {
            reason: "cannot encode the tokens".to_owned(),
        })?;
        self.entry(&tokens.server)?
            .set_secret(&secret)
            .map_err(keyring_error)
    }

    fn clear(&self, server: &ServerUrl) -> Result<(), StoreError> {
        match self.entry(server)?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(error) => Err(keyring_error(error)),
        }
    }

    fn lock_renewal(&self) -> Result<Option<RenewalLock>, StoreError> {
        let Some(path) = &self.lock_path else {
            return Ok(None);
        };
        let io = |action, path: &Path, source| StoreError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_folder(folder).map_err(|source| io("cannot create", folder, source))?;
        }
        let locked = lock_exclusive(path).map_err(|source| io("cannot lock", path, source))?;
        Ok(locked.map(RenewalLock::new))
    }
}

/// Describes a keyring failure without its payload: some variants carry
/// the raw secret bytes, which must not reach a message.
fn keyring_error(error: keyring_core::Error) -> StoreError {
    use keyring_core::Error as K;

    let reason = match &error {
        K::NoStorageAccess(cause) => format!("the keyring cannot be reached: {cause}"),
        K::PlatformFailure(cause) => format!("the keyring failed: {cause}"),
        K::NoEntry => "no such entry".to_owned(),
        K::BadEncoding(_) | K::BadDataFormat(..) => "an entry is not in the expected format".into(),
        K::TooLong(what, limit) => format!("{what} is longer than the keyring's {limit}"),
        K::NotSupportedByStore(what) => format!("not supported by this keyring: {what}"),
        other => format!("the keyring refused the request: {}", variant_name(other)),
    };
    StoreError::Keyring { reason }
}

fn variant_name(error: &keyring_core::Error) -> &'static str {
    use keyring_core::Error as K;

    match error {
        K::BadStoreFormat(_) => "bad store format",
        K::Invalid(..) => "invalid parameter",
        K::Ambiguous(_) => "ambiguous entry",
        K::NoDefaultStore => "no store",
        _ => "unknown error",
    }
}

#[cfg(target_os = "linux")]
fn platform_store() -> Result<Arc<CredentialStore>, StoreError> {
    let store: Arc<CredentialStore> =
        linux_keyutils_keyring_store::Store::new().map_err(keyring_error)?;
    Ok(store)
}

#[cfg(target_os = "macos")]
fn platform_store() -> Result<Arc<CredentialStore>, StoreError> {
    let store: Arc<CredentialStore> =
        apple_native_keyring_store::keychain::Store::new().map_err(keyring_error)?;
    Ok(store)
}

#[cfg(windows)]
fn platform_store() -> Result<Arc<CredentialStore>, StoreError> {
    let store: Arc<CredentialStore> =
        windows_native_keyring_store::Store::new().map_err(keyring_error)?;
    Ok(store)
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn platform_store() -> Result<Arc<CredentialStore>, StoreError> {
    Err(StoreError::Keyring {
        reason: "this platform has no supported keyring".to_owned(),
    })
}

//! [`FileStore`]: the tokens of every server the user logged in to, in one
//! owner-only JSON file, plus which server commands use by default.
//!
//! The file looks like this (one entry per server, keyed by its URL):
//!
//! ```json
//! {
//!   "default_server": "https://auth.example",
//!   "servers": {
//!     "https://auth.example": {
//!       "username": "alice",
//!       "access_token": "…",
//!       "refresh_token": "…",
//!       "expires_at": 1796400000,
//!       "lifetime_secs": 900
//!     }
//!   }
//! }
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufReader, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::{RenewalLock, ServerUrl, StoreError, StoredTokens, TokenStore};

/// Owner read and write only.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;

/// Owner only, so nobody else can even list or swap the file.
#[cfg(unix)]
const FOLDER_MODE: u32 = 0o700;

/// A [`TokenStore`] backed by one JSON file with owner-only permissions.
///
/// Every write replaces the whole file atomically (a temporary file in the
/// same folder, flushed to disk, then renamed over the old one), so a crash
/// or a full disk never leaves a half-written credentials file behind.
/// A file that other users can read is refused rather than used.
///
/// Renewals are serialised across processes by a lock on
/// `credentials.json.lock`, so parallel commands spend each refresh token
/// once. Other writes are serialised within one process only: two
/// processes saving at the same instant (say, two logins to different
/// servers) can lose one of the updates, as the last rename wins; taking
/// the same kind of lock around every write would remove that.
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
    // Serialises read-modify-write cycles between clones in one process.
    write_lock: Arc<Mutex<()>>,
}

#[derive(Default, Serialize, Deserialize)]
struct CredentialsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_server: Option<ServerUrl>,
    #[serde(default)]
    servers: BTreeMap<ServerUrl, ServerEntry>,
}

#[derive(Serialize, Deserialize)]
struct ServerEntry {
    username: String,
    access_token: String,
    refresh_token: String,
    expires_at: u64,
    #[serde(default)]
    lifetime_secs: u64,
    #[serde(default)]
    server_clock_offset_secs: i64,
}

impl FileStore {
    /// The store at its usual place:
    /// `$XDG_CONFIG_HOME/tessera/credentials.json`, or
    /// `$HOME/.config/tessera/credentials.json` when `XDG_CONFIG_HOME` is
    /// unset or not absolute.
    pub fn open_default() -> Result<Self, StoreError> {
        let path = default_path(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        )
        .ok_or(StoreError::NoConfigDir)?;
        Ok(Self::at(path))
    }

    /// A store in the file at `path` (created on first save).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            write_lock: Arc::new(Mutex::new(())),
        }
    }

    /// The credentials file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The server commands use when none is named: the one last chosen
    /// with [`set_default_server`](Self::set_default_server).
    pub fn default_server(&self) -> Result<Option<ServerUrl>, StoreError> {
        Ok(self.read()?.default_server)
    }

    /// Makes `server` the default one.
    pub fn set_default_server(&self, server: &ServerUrl) -> Result<(), StoreError> {
        self.update(|file| file.default_server = Some(server.clone()))
    }

    /// Every server with stored tokens, in URL order.
    pub fn servers(&self) -> Result<Vec<ServerUrl>, StoreError> {
        Ok(self.read()?.servers.into_keys().collect())
    }

    fn read(&self) -> Result<CredentialsFile, StoreError> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Ok(CredentialsFile::default());
            }
            Err(source) => return Err(self.io("cannot open", source)),
        };
        // Checked on the open handle, so the file cannot be swapped
        // between the check and the read.
        let metadata = file
            .metadata()
            .map_err(|source| self.io("cannot inspect", source))?;
        refuse_if_shared(&self.path, &metadata)?;

        serde_json::from_reader(BufReader::new(file)).map_err(|source| StoreError::Corrupt {
            path: self.path.clone(),
            source,
        })
    }

    fn update(&self, change: impl FnOnce(&mut CredentialsFile)) -> Result<(), StoreError> {
        let _writer = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut file = self.read()?;
        change(&mut file);
        self.write(&file)
    }

    fn folder(&self) -> &Path {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    }

    /// `credentials.json.lock` beside the credentials file. A separate
    /// file, because the credentials file itself is replaced on each save
    /// and a lock on a replaced file protects nothing.
    fn lock_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(OsString::from)
            .unwrap_or_else(|| OsString::from("credentials.json"));
        name.push(".lock");
        self.path.with_file_name(name)
    }

    fn write(&self, contents: &CredentialsFile) -> Result<(), StoreError> {
        let folder = self.folder();
        create_private_folder(folder)
            .map_err(|source| self.io_at("cannot create", folder, source))?;

        // `tempfile` creates the file with mode 0600 and an unguessable
        // name, so no other user can open it while it is being written.
        let mut temporary = tempfile::Builder::new()
            .prefix(".credentials-")
            .suffix(".tmp")
            .tempfile_in(folder)
            .map_err(|source| self.io_at("cannot write in", folder, source))?;
        let json = serde_json::to_vec_pretty(contents).map_err(|source| StoreError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        owner_only(temporary.as_file())
            .and_then(|()| temporary.write_all(&json))
            .and_then(|()| temporary.as_file().sync_all())
            .map_err(|source| self.io("cannot write", source))?;
        temporary
            .persist(&self.path)
            .map_err(|failed| self.io("cannot replace", failed.error))?;

        // The rename itself is durable only once the folder is flushed.
        sync_folder(folder).map_err(|source| self.io_at("cannot flush", folder, source))
    }

    fn io(&self, action: &'static str, source: std::io::Error) -> StoreError {
        self.io_at(action, &self.path, source)
    }

    fn io_at(&self, action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

impl TokenStore for FileStore {
    fn load(&self, server: &ServerUrl) -> Result<Option<StoredTokens>, StoreError> {
        let mut file = self.read()?;
        Ok(file.servers.remove(server).map(|entry| StoredTokens {
            server: server.clone(),
            username: entry.username,
            access_token: entry.access_token,
            refresh_token: entry.refresh_token,
            expires_at: entry.expires_at,
            lifetime_secs: entry.lifetime_secs,
            server_clock_offset_secs: entry.server_clock_offset_secs,
        }))
    }

    fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        let entry = ServerEntry {
            username: tokens.username.clone(),
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
            expires_at: tokens.expires_at,
            lifetime_secs: tokens.lifetime_secs,
            server_clock_offset_secs: tokens.server_clock_offset_secs,
        };
        self.update(|file| {
            file.servers.insert(tokens.server.clone(), entry);
        })
    }

    fn lock_renewal(&self) -> Result<Option<RenewalLock>, StoreError> {
        let folder = self.folder();
        create_private_folder(folder)
            .map_err(|source| self.io_at("cannot create", folder, source))?;
        let path = self.lock_path();
        let locked =
            lock_exclusive(&path).map_err(|source| self.io_at("cannot lock", &path, source))?;
        Ok(locked.map(RenewalLock::new))
    }

    fn clear(&self, server: &ServerUrl) -> Result<(), StoreError> {
        let _writer = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut file = self.read()?;
        if file.servers.remove(server).is_none() {
            // Nothing to forget: do not create a file just to say so.
            return Ok(());
        }
        if file.default_server.as_ref() == Some(server) {
            file.default_server = None;
        }
        self.write(&file)
    }
}

/// `$XDG_CONFIG_HOME/tessera/credentials.json`, else
/// `$HOME/.config/tessera/credentials.json`. The XDG base directory rules
/// say a relative `XDG_CONFIG_HOME` is invalid and must be ignored.
fn default_path(xdg_config_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute =
        |value: Option<OsString>| value.map(PathBuf::from).filter(|path| path.is_absolute());
    let config =
        absolute(xdg_config_home).or_else(|| absolute(home).map(|home| home.join(".config")))?;
    Some(config.join("tessera").join("credentials.json"))
}

#[cfg(unix)]
fn refuse_if_shared(path: &Path, metadata: &fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;

    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_shared(_path: &Path, _metadata: &fs::Metadata) -> Result<(), StoreError> {
    // Without Unix modes there are no bits to check; the file sits in the
    // user's own profile folder.
    Ok(())
}

#[cfg(unix)]
pub(super) fn create_private_folder(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    fs::DirBuilder::new()
        .recursive(true)
        .mode(FOLDER_MODE)
        .create(folder)?;
    // The folder may predate us with looser bits; it holds only our files.
    fs::set_permissions(folder, fs::Permissions::from_mode(FOLDER_MODE))
}

#[cfg(not(unix))]
pub(super) fn create_private_folder(folder: &Path) -> std::io::Result<()> {
    fs::create_dir_all(folder)
}

/// Opens (creating, owner-only) and locks the file at `path`, waiting for
/// any other holder; the lock goes when the file is closed.
#[cfg(unix)]
pub(super) fn lock_exclusive(path: &Path) -> std::io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;

    use rustix::fs::{FlockOperation, flock};
    use rustix::io::Errno;

    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    loop {
        match flock(&file, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(Some(file)),
            // A signal interrupted the wait; keep waiting.
            Err(Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

#[cfg(not(unix))]
pub(super) fn lock_exclusive(_path: &Path) -> std::io::Result<Option<File>> {
    // No `flock` here: parallel processes may race to renew, and the one
    // presenting an already spent refresh token can be logged out.
    Ok(None)
}

/// Sets mode 0600 explicitly rather than trusting how the temporary file
/// happened to be created.
#[cfg(unix)]
fn owner_only(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;

    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
}

#[cfg(not(unix))]
fn owner_only(_file: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn sync_folder(folder: &Path) -> std::io::Result<()> {
    File::open(folder)?.sync_all()
}

#[cfg(not(unix))]
fn sync_folder(_folder: &Path) -> std::io::Result<()> {
    // Folders cannot be opened for syncing here; the rename is as durable
    // as the platform makes it.
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::store::tests::sample;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn store_in(dir: &tempfile::TempDir) -> FileStore {
        FileStore::at(dir.path().join("tessera").join("credentials.json"))
    }

    #[test]
    fn saved_file_and_folder_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);

        store.save(&sample("http://127.0.0.1:1", "alice")).unwrap();

        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(store.path().parent().unwrap()), 0o700);
    }

    #[test]
    fn existing_loose_folder_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let folder = store.path().parent().unwrap();
        fs::create_dir_all(folder).unwrap();
        fs::set_permissions(folder, fs::Permissions::from_mode(0o755)).unwrap();

        store.save(&sample("http://127.0.0.1:1", "alice")).unwrap();

        assert_eq!(mode(folder), 0o700);
    }

    #[test]
    fn each_server_keeps_its_own_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let alice = sample("http://127.0.0.1:1", "alice");
        let bob = sample("https://auth.example.test/", "bob");

        store.save(&alice).unwrap();
        store.save(&bob).unwrap();

        let reopened = store_in(&dir);
        assert_eq!(reopened.load(&alice.server).unwrap(), Some(alice.clone()));
        assert_eq!(reopened.load(&bob.server).unwrap(), Some(bob.clone()));
        assert_eq!(
            reopened.servers().unwrap(),
            vec![alice.server.clone(), bob.server.clone()]
        );

        reopened.clear(&alice.server).unwrap();
        assert_eq!(reopened.load(&alice.server).unwrap(), None);
        assert_eq!(reopened.load(&bob.server).unwrap(), Some(bob));
    }

    #[test]
    fn file_is_keyed_by_server_url() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);

        store.save(&sample("http://127.0.0.1:1/", "alice")).unwrap();

        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
        let entry = &json["servers"]["http://127.0.0.1:1"];
        assert_eq!(entry["username"], "alice");
        assert!(entry.get("server").is_none());
    }

    #[test]
    fn default_server_is_remembered_and_dropped_with_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let alice = sample("http://127.0.0.1:1", "alice");
        assert_eq!(store.default_server().unwrap(), None);

        store.save(&alice).unwrap();
        store.set_default_server(&alice.server).unwrap();
        assert_eq!(store.default_server().unwrap(), Some(alice.server.clone()));

        store.clear(&alice.server).unwrap();
        assert_eq!(store.default_server().unwrap(), None);
    }

    #[test]
    fn save_replaces_the_file_instead_of_rewriting_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let mut tokens = sample("http://127.0.0.1:1", "alice");
        store.save(&tokens).unwrap();
        // An open handle keeps seeing the old file after an atomic rename;
        // an in-place rewrite would show it the new contents.
        let before = fs::read(store.path()).unwrap();
        let old_handle = File::open(store.path()).unwrap();

        tokens.access_token = "access-secret-renewed".to_owned();
        store.save(&tokens).unwrap();

        let seen_by_old_handle = std::io::read_to_string(old_handle).unwrap().into_bytes();
        assert_eq!(seen_by_old_handle, before);
        assert_eq!(store.load(&tokens.server).unwrap(), Some(tokens));
        let leftovers: Vec<_> = fs::read_dir(store.path().parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![OsString::from("credentials.json")]);
    }

    #[test]
    fn file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let tokens = sample("http://127.0.0.1:1", "alice");
        store.save(&tokens).unwrap();

        for loose in [0o644, 0o640, 0o604, 0o620] {
            fs::set_permissions(store.path(), fs::Permissions::from_mode(loose)).unwrap();

            let error = store.load(&tokens.server).unwrap_err();

            assert!(
                matches!(error, StoreError::InsecurePermissions { mode, .. }
                    if mode == loose),
                "{error:?}"
            );
            assert!(error.to_string().contains("chmod 600"));
            // Saving must not quietly overwrite (and so hide) the problem.
            assert!(store.save(&tokens).is_err());
        }
    }

    #[test]
    fn renewal_lock_keeps_other_holders_waiting() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let first = store_in(&dir);
        // A separate store value opens its own lock file handle, as
        // another process would.
        let second = store_in(&dir);
        let released = Arc::new(AtomicBool::new(false));

        let held = first.lock_renewal().unwrap().unwrap();
        let waiter = {
            let released = Arc::clone(&released);
            std::thread::spawn(move || {
                let _lock = second.lock_renewal().unwrap().unwrap();
                released.load(Ordering::SeqCst)
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        released.store(true, Ordering::SeqCst);
        drop(held);

        assert!(waiter.join().unwrap(), "second holder did not wait");
        assert_eq!(mode(&first.lock_path()), 0o600);
    }

    #[test]
    fn missing_file_means_no_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let server = ServerUrl::parse("http://127.0.0.1:1").unwrap();

        assert_eq!(store.load(&server).unwrap(), None);
        store.clear(&server).unwrap();
        assert!(!store.path().exists());
    }

    #[test]
    fn corrupt_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let tokens = sample("http://127.0.0.1:1", "alice");
        store.save(&tokens).unwrap();
        fs::write(store.path(), b"{not json").unwrap();

        assert!(matches!(
            store.load(&tokens.server),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(store.save(&tokens).is_err());
        assert_eq!(fs::read(store.path()).unwrap(), b"{not json");
    }

    #[test]
    fn config_path_follows_xdg_then_home() {
        let path = |xdg: Option<&str>, home: Option<&str>| {
            default_path(xdg.map(Into::into), home.map(Into::into))
        };

        assert_eq!(
            path(Some("/x"), Some("/h")),
            Some(PathBuf::from("/x/tessera/credentials.json"))
        );
        assert_eq!(
            path(None, Some("/h")),
            Some(PathBuf::from("/h/.config/tessera/credentials.json"))
        );
        assert_eq!(
            path(Some("relative"), Some("/h")),
            Some(PathBuf::from("/h/.config/tessera/credentials.json"))
        );
        assert_eq!(path(None, None), None);
    }
}

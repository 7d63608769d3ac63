//! Signing keys on disk: `keys/<kid>.pem` (PKCS#8, 0600) beside `keys/<kid>.json` (its
//! algorithm and schedule) in a 0700 folder of the data dir. A key file that others can
//! read is refused, because whoever read it can mint tokens. This module only reads and
//! writes; [`crate::key_ring`] decides which key signs and which are published.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tessera_token::{KeyAlgorithm, SigningKey};

/// A signing key with its schedule.
#[derive(Debug, Clone)]
pub(crate) struct KeyRecord {
    pub(crate) key: SigningKey,
    /// When the key was made, seconds since the epoch.
    pub(crate) created_at: i64,
    /// When the key starts signing; it is published from creation on.
    pub(crate) activates_at: i64,
}

/// The metadata file beside each key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyMeta {
    alg: KeyAlgorithm,
    created_at: i64,
    activates_at: i64,
}

/// Every key in `keys_dir`, oldest activation first. Creates the folder if needed.
pub(crate) fn load_all(keys_dir: &Path) -> anyhow::Result<Vec<KeyRecord>> {
    create_private_dir(keys_dir)?;
    let owner = check_private_dir(keys_dir)?;
    let mut records = Vec::new();
    for entry in
        fs::read_dir(keys_dir).with_context(|| format!("cannot list {}", keys_dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "pem") {
            records.push(load_one(&path, owner)?);
        }
    }
    records.sort_by_key(|record| (record.activates_at, record.created_at));
    Ok(records)
}

fn load_one(pem_path: &Path, owner: u32) -> anyhow::Result<KeyRecord> {
    let metadata = fs::symlink_metadata(pem_path)?;
    if !metadata.is_file() || metadata.uid() != owner {
        bail!(
            "key file {} is not a regular file owned by the owner of its folder; \
             remove it and rotate the key",
            pem_path.display()
        );
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        bail!(
            "key file {} can be read by other users; run `chmod 600 {}` \
             and rotate the key (`tessera keys rotate`)",
            pem_path.display(),
            pem_path.display()
        );
    }
    let text = fs::read_to_string(pem_path)
        .with_context(|| format!("cannot read key file {}", pem_path.display()))?;
    let key = SigningKey::from_pkcs8_pem(&text)
        .with_context(|| format!("key file {} is not a valid key", pem_path.display()))?;
    let meta_path = pem_path.with_extension("json");
    let (created_at, activates_at) = match fs::read_to_string(&meta_path) {
        Ok(text) => {
            let meta: KeyMeta = serde_json::from_str(&text)
                .with_context(|| format!("key metadata {} is invalid", meta_path.display()))?;
            if meta.alg != key.algorithm() {
                bail!(
                    "key metadata {} says {} but the key is {}",
                    meta_path.display(),
                    meta.alg,
                    key.algorithm()
                );
            }
            (meta.created_at, meta.activates_at)
        }
        // A key without metadata signs from the time its file was written.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let written = unix_seconds(metadata.modified()?);
            (written, written)
        }
        Err(error) => return Err(error.into()),
    };
    Ok(KeyRecord {
        key,
        created_at,
        activates_at,
    })
}

/// Generates and stores a key that is published at once and signs from `activates_at`.
pub(crate) fn create(
    keys_dir: &Path,
    algorithm: KeyAlgorithm,
    now: i64,
    activates_at: i64,
) -> anyhow::Result<KeyRecord> {
    create_private_dir(keys_dir)?;
    let key = SigningKey::generate(algorithm)
        .with_context(|| format!("cannot generate an {algorithm} key"))?;
    let pem = key
        .to_pkcs8_pem()
        .context("only asymmetric keys are stored in the data dir")?;
    let meta = serde_json::to_vec_pretty(&KeyMeta {
        alg: algorithm,
        created_at: now,
        activates_at,
    })?;
    // The metadata lands first, the key last: a key file is never seen without its
    // schedule, so a crash in between cannot make a delayed key sign at once.
    write_private(&keys_dir.join(format!("{}.json", key.kid())), &meta)?;
    write_private(&keys_dir.join(format!("{}.pem", key.kid())), pem.as_bytes())?;
    // The new names must be durable too, or a crash could lose a key that signed
    // tokens already handed out.
    fs::File::open(keys_dir)?.sync_all()?;
    Ok(KeyRecord {
        key,
        created_at: now,
        activates_at,
    })
}

/// Deletes a key whose tokens have all expired.
pub(crate) fn remove(keys_dir: &Path, kid: &str) -> anyhow::Result<()> {
    for extension in ["pem", "json"] {
        let path = keys_dir.join(format!("{kid}.{extension}"));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot remove {}", path.display()));
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a 0600 temporary file and a rename, so a reader
/// sees the whole file or none of it.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Refuses a folder that others could write to (they could plant a key or a
/// database), and returns its owner, whom every file in it must belong to.
pub(crate) fn check_private_dir(dir: &Path) -> anyhow::Result<u32> {
    let metadata =
        fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !metadata.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    if metadata.permissions().mode() & 0o022 != 0 {
        bail!(
            "{} can be written by other users; run `chmod 700 {}`",
            dir.display(),
            dir.display()
        );
    }
    Ok(metadata.uid())
}

/// Creates `dir` (and parents) if needed, owner-only.
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_private_and_loads_back_with_its_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");

        let created = create(&keys, KeyAlgorithm::ES256, 100, 160).unwrap();
        let loaded = load_all(&keys).unwrap();

        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].key.kid(), created.key.kid());
        assert_eq!(loaded[0].key.algorithm(), KeyAlgorithm::ES256);
        assert_eq!((loaded[0].created_at, loaded[0].activates_at), (100, 160));
        for extension in ["pem", "json"] {
            let file = keys.join(format!("{}.{extension}", created.key.kid()));
            assert_eq!(
                fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let record = create(&keys, KeyAlgorithm::EdDSA, 1, 1).unwrap();
        let file = keys.join(format!("{}.pem", record.key.kid()));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();

        let error = load_all(&keys).unwrap_err();

        assert!(error.to_string().contains("chmod 600"));
    }

    #[test]
    fn a_key_folder_others_can_write_to_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        create(&keys, KeyAlgorithm::EdDSA, 1, 1).unwrap();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o777)).unwrap();

        let error = load_all(&keys).unwrap_err();

        assert!(error.to_string().contains("chmod 700"));
    }

    #[test]
    fn removing_a_key_deletes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let record = create(&keys, KeyAlgorithm::EdDSA, 1, 1).unwrap();

        remove(&keys, record.key.kid()).unwrap();

        assert!(load_all(&keys).unwrap().is_empty());
        assert_eq!(fs::read_dir(&keys).unwrap().count(), 0);
    }
}

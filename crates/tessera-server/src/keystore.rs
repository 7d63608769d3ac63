//! The signing key on disk: `keys/<kid>.pem` (PKCS#8) in the data dir, the folder 0700
//! and each file 0600. A key file that others can read is refused at start-up, because
//! whoever read it can mint tokens.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use tessera_token::SigningKey;

/// Loads the newest key in `keys_dir`, creating the folder and a first key if needed.
pub fn load_or_create(keys_dir: &Path) -> anyhow::Result<SigningKey> {
    create_private_dir(keys_dir)?;
    let mut newest: Option<(std::time::SystemTime, SigningKey)> = None;
    let entries =
        fs::read_dir(keys_dir).with_context(|| format!("cannot list {}", keys_dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|extension| extension != "pem") {
            continue;
        }
        let metadata = fs::metadata(&path)?;
        if metadata.permissions().mode() & 0o077 != 0 {
            bail!(
                "key file {} can be read by other users; run `chmod 600 {}` \
                 and consider rotating the key",
                path.display(),
                path.display()
            );
        }
        let text = fs::read_to_string(&path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        let key = SigningKey::from_pkcs8_pem(&text)
            .with_context(|| format!("key file {} is not a valid key", path.display()))?;
        let modified = metadata.modified()?;
        if newest.as_ref().is_none_or(|(time, _)| modified > *time) {
            newest = Some((modified, key));
        }
    }
    match newest {
        Some((_, key)) => Ok(key),
        None => create_key(keys_dir),
    }
}

fn create_key(keys_dir: &Path) -> anyhow::Result<SigningKey> {
    let key = SigningKey::generate().context("cannot generate a signing key")?;
    let path = keys_dir.join(format!("{}.pem", key.kid()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    file.write_all(key.to_pkcs8_pem().as_bytes())?;
    file.sync_all()?;
    // The new name must be durable too, or a crash could lose the key that signed
    // tokens already handed out.
    fs::File::open(keys_dir)?.sync_all()?;
    Ok(key)
}

/// Creates `dir` (and parents) if needed, owner-only.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_start_creates_one_private_key_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");

        let first = load_or_create(&keys).unwrap();
        let second = load_or_create(&keys).unwrap();

        assert_eq!(first.kid(), second.kid());
        let file = keys.join(format!("{}.pem", first.kid()));
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn a_key_file_readable_by_others_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let key = load_or_create(&keys).unwrap();
        let file = keys.join(format!("{}.pem", key.kid()));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();

        let error = load_or_create(&keys).unwrap_err();

        assert!(error.to_string().contains("chmod 600"));
    }
}

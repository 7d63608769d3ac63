//! Start-up refuses files and folders that others could read or write: a data dir
//! others can write to (they could plant a database or a key), secret files others can
//! read (master key, introspection credential), a signing key file others can read;
//! and what the server creates itself is owner-only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use support::{TestSetup, spawn_app};
use tessera_server::Server;

#[tokio::test]
async fn a_data_dir_others_or_the_group_can_write_to_stops_start_up() {
    for mode in [0o777, 0o770, 0o702] {
        let setup = TestSetup::new().await;
        std::fs::create_dir(&setup.config.data_dir).unwrap();
        set_mode(&setup.config.data_dir, mode);

        let error = Server::bind(setup.config.clone()).await.err().unwrap();

        let error = format!("{error:#}");
        assert!(
            error.contains("can be written by other users"),
            "{mode:o}: {error}"
        );
        assert!(error.contains("chmod 700"), "{mode:o}: {error}");
    }
}

#[tokio::test]
async fn a_secret_file_others_or_the_group_can_read_stops_start_up() {
    for (key, mode) in [
        ("master_key_file", 0o644),
        ("master_key_file", 0o640),
        ("introspection_secret_file", 0o604),
    ] {
        let mut setup = TestSetup::new().await;
        let file = setup.dir().join("secret");
        std::fs::write(&file, [7u8; 32]).unwrap();
        set_mode(&file, mode);
        match key {
            "master_key_file" => setup.config.master_key_file = Some(file),
            _ => setup.config.introspection_secret_file = Some(file),
        }

        let error = Server::bind(setup.config.clone()).await.err().unwrap();

        let error = format!("{error:#}");
        assert!(error.contains(key), "{key} {mode:o}: {error}");
        assert!(error.contains("chmod 600"), "{key} {mode:o}: {error}");
    }
}

#[tokio::test]
async fn a_signing_key_file_others_can_read_stops_start_up() {
    let setup = TestSetup::new().await.with_key_on_disk().await;
    if setup.config.master_key_file.is_some() {
        // On PostgreSQL the keys live in the database; there is no key file to check.
        return;
    }
    let keys = setup.config.data_dir.join("keys");
    for entry in std::fs::read_dir(&keys).unwrap() {
        set_mode(&entry.unwrap().path(), 0o644);
    }

    let error = Server::bind(setup.config.clone()).await.err().unwrap();

    assert!(format!("{error:#}").contains("chmod 600"), "{error:#}");
}

#[tokio::test]
async fn what_the_server_creates_is_owner_only() {
    let app = spawn_app().await;
    let data_dir = &app.config.data_dir;

    assert_eq!(mode(data_dir), 0o700);
    assert_eq!(mode(&data_dir.join("lock")), 0o600);
    if app.config.database_url.is_none() {
        for file in ["tessera.db", "tessera.db-wal", "tessera.db-shm"] {
            assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
        }
        assert_eq!(mode(&data_dir.join("keys")), 0o700);
        for entry in std::fs::read_dir(data_dir.join("keys")).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

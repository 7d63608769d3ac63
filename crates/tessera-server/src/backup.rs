//! Backups of a server on SQLite, for `tessera admin backup` and `restore`. A backup is
//! one SQLite file (0600) made with `VACUUM INTO` while the server keeps serving: a
//! consistent snapshot of users, sessions, refresh tokens and the audit trail, taken
//! in one read transaction that writers do not wait for (the database is in WAL mode).
//! The signing keys of the data dir's `keys/` folder ride along inside it, in a table
//! of their own, so that a restored server still accepts the access tokens issued
//! before; keys kept in the database (with `master_key_file`) are in the snapshot
//! already, sealed, and need the same master key file after a restore. A restore
//! checks the backup (`PRAGMA integrity_check`) and writes it into a new or empty data
//! dir only, so it never mixes with or replaces a live one. PostgreSQL has its own
//! tools (`pg_dump`, `pg_restore`), which these commands point to.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, Row as _};

use crate::config::ServerConfig;

/// The table inside a backup that carries the key folder's files.
const KEY_FILES_TABLE: &str = "tessera_backup_key_files";
/// How long the snapshot waits for a writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// What the commands say about PostgreSQL, whose own tools do this job.
const USE_PG_TOOLS: &str = "this server keeps its data in PostgreSQL (database_url): back it \
     up with PostgreSQL's own tools, e.g. `pg_dump --format=custom --file=tessera.dump \
     DBNAME`, and restore with `pg_restore --dbname=NEWDB tessera.dump`; the signing keys \
     are in that database, sealed under master_key_file, so keep a copy of that file \
     apart from the dump";

/// What a backup or a restore holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// Users in the backup.
    pub users: u64,
    /// Sessions in the backup that were neither ended nor past their absolute end.
    pub open_sessions: u64,
    /// Files of the `keys/` folder carried along (0 when the keys live in the database).
    pub key_files: usize,
}

/// Writes a consistent copy of the server's SQLite database, and its key folder's
/// files, into `destination`, which must not exist. Safe while the server runs.
pub async fn back_up(config: &ServerConfig, destination: &Path) -> anyhow::Result<BackupSummary> {
    if config.database_url.is_some() {
        bail!("{USE_PG_TOOLS}");
    }
    let source = config.data_dir.join(crate::DATABASE_FILE);
    if !source.is_file() {
        bail!(
            "no database in {}: pass the server's --data-dir (or its --config)",
            config.data_dir.display()
        );
    }
    let destination_text = destination.to_str().with_context(|| {
        format!(
            "{} is not valid UTF-8; choose a plain file name",
            destination.display()
        )
    })?;
    // Created here, empty and owner-only, so that nothing is ever overwritten (the
    // name is taken atomically) and the copy is never readable by others, even for
    // a moment. VACUUM INTO accepts an empty file.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(destination)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} exists already; a backup never overwrites a file: choose another name",
                destination.display()
            ),
            _ => anyhow::Error::new(error)
                .context(format!("cannot create {}", destination.display())),
        })?;
    let written = write_backup(config, &source, destination, destination_text).await;
    if written.is_err() {
        // A half-written backup must not pass for one; the file is ours alone.
        let _leftover = fs::remove_file(destination);
    }
    written
}

async fn write_backup(
    config: &ServerConfig,
    source: &Path,
    destination: &Path,
    destination_text: &str,
) -> anyhow::Result<BackupSummary> {
    let options = SqliteConnectOptions::new()
        .filename(source)
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT);
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open {}", source.display()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(destination_text)
        .execute(&mut connection)
        .await
        .with_context(|| format!("cannot copy the database into {}", destination.display()))?;
    connection.close().await?;

    let key_files = match &config.master_key_file {
        Some(_) => Vec::new(),
        None => read_key_files(&config.data_dir.join(crate::KEYS_DIR))?,
    };
    let mut copy = open_file(destination, false).await?;
    if !key_files.is_empty() {
        let mut transaction = copy.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {KEY_FILES_TABLE} (name TEXT PRIMARY KEY NOT NULL, \
             contents BLOB NOT NULL) STRICT"
        )))
        .execute(&mut *transaction)
        .await?;
        for (name, contents) in &key_files {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {KEY_FILES_TABLE} (name, contents) VALUES (?, ?)"
            )))
            .bind(name)
            .bind(&contents[..])
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
    }
    check_integrity(&mut copy, destination).await?;
    let summary = summarize(&mut copy, key_files.len()).await?;
    copy.close().await?;
    fs::File::open(destination)?.sync_all()?;
    Ok(summary)
}

/// Writes the backup `backup` into `config.data_dir`, which must be new or empty,
/// after checking it: the data dir is then ready for `tessera server`.
pub async fn restore(config: &ServerConfig, backup: &Path) -> anyhow::Result<BackupSummary> {
    if config.database_url.is_some() {
        bail!("{USE_PG_TOOLS}");
    }
    let mut source = open_file(backup, true).await?;
    check_integrity(&mut source, backup).await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'table'")
            .fetch_all(&mut source)
            .await?;
    if !["users", "sessions", "_sqlx_migrations"]
        .iter()
        .all(|table| tables.iter().any(|name| name == table))
    {
        bail!(
            "{} is an SQLite database but not a Tessera backup",
            backup.display()
        );
    }
    source.close().await?;

    let data_dir = &config.data_dir;
    if data_dir.exists() {
        let mut entries = fs::read_dir(data_dir)
            .with_context(|| format!("cannot read {}", data_dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty; restore into a new or empty data dir, then point the \
                 server at it (its --data-dir)",
                data_dir.display()
            );
        }
        fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))?;
    } else {
        crate::keystore::create_private_dir(data_dir)?;
    }
    crate::keystore::check_private_dir(data_dir)?;

    let database = data_dir.join(crate::DATABASE_FILE);
    copy_private(backup, &database)?;
    let mut restored = open_file(&database, false).await?;
    let key_files = if tables.iter().any(|name| name == KEY_FILES_TABLE) {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name, contents FROM {KEY_FILES_TABLE} ORDER BY name"
        )))
        .fetch_all(&mut restored)
        .await?;
        let keys_dir = data_dir.join(crate::KEYS_DIR);
        crate::keystore::create_private_dir(&keys_dir)?;
        for row in &rows {
            let name: String = row.try_get("name")?;
            let contents: Vec<u8> = row.try_get("contents")?;
            if !is_key_file_name(&name) {
                bail!("the backup names a key file {name:?}, which Tessera never writes");
            }
            write_new_private(&keys_dir.join(&name), &contents)?;
        }
        fs::File::open(&keys_dir)?.sync_all()?;
        // The table served the journey only; the server's schema does not know it.
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {KEY_FILES_TABLE}")))
            .execute(&mut restored)
            .await?;
        rows.len()
    } else {
        0
    };
    let summary = summarize(&mut restored, key_files).await?;
    restored.close().await?;
    fs::File::open(&database)?.sync_all()?;
    fs::File::open(data_dir)?.sync_all()?;
    Ok(summary)
}

/// A connection to one SQLite file, never creating it.
async fn open_file(path: &Path, read_only: bool) -> anyhow::Result<SqliteConnection> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .read_only(read_only)
        .busy_timeout(BUSY_TIMEOUT);
    SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open {} as an SQLite database", path.display()))
}

/// Refuses a file whose pages SQLite finds damaged.
async fn check_integrity(connection: &mut SqliteConnection, path: &Path) -> anyhow::Result<()> {
    let verdict: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut *connection)
        .await
        .with_context(|| format!("cannot check {}", path.display()))?;
    if verdict != ["ok"] {
        bail!(
            "{} is damaged (PRAGMA integrity_check: {}); use another backup",
            path.display(),
            verdict.join("; ")
        );
    }
    Ok(())
}

async fn summarize(
    connection: &mut SqliteConnection,
    key_files: usize,
) -> anyhow::Result<BackupSummary> {
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut *connection)
        .await?;
    let open_sessions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL AND expires_at > ?",
    )
    .bind(crate::clock::now())
    .fetch_one(&mut *connection)
    .await?;
    Ok(BackupSummary {
        users: u64::try_from(users).unwrap_or(0),
        open_sessions: u64::try_from(open_sessions).unwrap_or(0),
        key_files,
    })
}

/// The key folder's files (`<kid>.pem` and `<kid>.json`), by name; none when the
/// folder does not exist.
fn read_key_files(keys_dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let entries = match fs::read_dir(keys_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot list {}", keys_dir.display()));
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_key_file_name(&name) || !entry.file_type()?.is_file() {
            continue;
        }
        match fs::read(entry.path()) {
            Ok(contents) => files.push((name, contents)),
            // Removed by the server's key expiry since the folder was listed.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot read {}", entry.path().display()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `<kid>.pem` or `<kid>.json`, with a kid of base64url characters: the only names
/// the key folder holds, and none that could leave it.
fn is_key_file_name(name: &str) -> bool {
    let Some((kid, extension)) = name.rsplit_once('.') else {
        return false;
    };
    matches!(extension, "pem" | "json")
        && !kid.is_empty()
        && kid
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Copies `from` into a new 0600 file `to`, durably, without holding it in memory.
fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut source =
        fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut copy = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    std::io::copy(&mut source, &mut copy)
        .with_context(|| format!("cannot copy {} into {}", from.display(), to.display()))?;
    copy.sync_all()?;
    Ok(())
}

/// Writes a new 0600 file, durably.
fn write_new_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_key_folder_holds_are_carried() {
        assert!(is_key_file_name("Ab3_-x.pem"));
        assert!(is_key_file_name("Ab3_-x.json"));
        assert!(!is_key_file_name("Ab3.tmp"));
        assert!(!is_key_file_name("../lock.pem"));
        assert!(!is_key_file_name(".pem"));
        assert!(!is_key_file_name("a/b.json"));
    }
}

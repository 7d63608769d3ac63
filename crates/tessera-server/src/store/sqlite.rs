//! The SQLite store: one file in the data dir, WAL journal, full fsync on commit so that
//! a rotated refresh token survives a crash, and a busy timeout before a write gives up.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    Credentials, NewSession, NewUser, Note, RefreshHash, Rotation, SessionId, Store, StoreError,
    User, UserId,
};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite behind the [`Store`] trait.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs its migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_owner_only(path).map_err(|error| StoreError::Database(error.into()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|error| StoreError::Database(error.into()))?;
        Ok(Self { pool })
    }

    /// Closes every connection, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the database file readable by its owner only, before SQLite does: SQLite
/// gives its WAL and shared-memory files the mode of the database file.
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Sorts database failures into what callers act on.
fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => StoreError::Conflict,
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
        sqlx::Error::Database(database)
            if database
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| matches!(code & 0xff, 5 | 6)) =>
        {
            StoreError::Busy
        }
        sqlx::Error::PoolTimedOut => StoreError::Busy,
        _ => StoreError::Database(error),
    }
}

type NoteRow = (String, String, String, i64, i64);

fn note_from_row((id, title, body, created_at, updated_at): NoteRow) -> Note {
    Note {
        id,
        title,
        body,
        created_at,
        updated_at,
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, new: NewUser) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, created_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&new.user.id.0)
        .bind(&new.user.username)
        .bind(&new.username_key)
        .bind(&new.password_hash)
        .bind(new.user.created_at)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError> {
        let row: Option<(String, String, String, bool, i64)> = sqlx::query_as(
            "SELECT id, username, password_hash, disabled, created_at
             FROM users WHERE username_key = ?",
        )
        .bind(username_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.map(
            |(id, username, password_hash, disabled, created_at)| Credentials {
                user: User {
                    id: UserId(id),
                    username,
                    created_at,
                },
                password_hash,
                disabled,
            },
        ))
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT username, created_at FROM users WHERE id = ?")
                .bind(&id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
        Ok(row.map(|(username, created_at)| User {
            id: id.clone(),
            username,
            created_at,
        }))
    }

    async fn open_session(
        &self,
        session: NewSession,
        first: RefreshHash,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query(
            "INSERT INTO sessions
               (id, user_id, client_id, user_agent, created_at, last_used_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.id.0)
        .bind(&session.user_id.0)
        .bind(&session.client_id)
        .bind(&session.user_agent)
        .bind(session.created_at)
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES (?, ?, ?)",
        )
        .bind(&first.0[..])
        .bind(&session.id.0)
        .bind(session.created_at)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    async fn rotate_refresh(
        &self,
        presented: RefreshHash,
        successor: RefreshHash,
        now: i64,
        idle_secs: i64,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // One conditional UPDATE decides: of any number of concurrent presentations
        // of the same token, exactly one finds `spent_at IS NULL`.
        let spent: Option<(String,)> = sqlx::query_as(
            "UPDATE refresh_tokens SET spent_at = ?1
             WHERE token_hash = ?2 AND spent_at IS NULL
               AND session_id IN (
                 SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.ended_at IS NULL AND s.expires_at > ?1
                   AND s.last_used_at + ?3 > ?1 AND u.disabled = 0)
             RETURNING session_id",
        )
        .bind(now)
        .bind(&presented.0[..])
        .bind(idle_secs)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some((session_id,)) = spent else {
            return Ok(Rotation::Refused);
        };

        let (user_id,): (String,) =
            sqlx::query_as("UPDATE sessions SET last_used_at = ? WHERE id = ? RETURNING user_id")
                .bind(now)
                .bind(&session_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES (?, ?, ?)",
        )
        .bind(&successor.0[..])
        .bind(&session_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;

        Ok(Rotation::Rotated {
            session: SessionId(session_id),
            user: UserId(user_id),
        })
    }

    async fn end_session(
        &self,
        session: &SessionId,
        user: &UserId,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE sessions SET ended_at = ?, end_reason = ?
             WHERE id = ? AND user_id = ? AND ended_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(&session.0)
        .bind(&user.0)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(result.rows_affected() == 1)
    }

    async fn end_user_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE sessions SET ended_at = ?, end_reason = ?
             WHERE user_id = ? AND ended_at IS NULL AND id IS NOT ?",
        )
        .bind(now)
        .bind(reason)
        .bind(&user.0)
        .bind(keep.map(|session| session.0.as_str()))
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(result.rows_affected())
    }

    async fn session_is_open(
        &self,
        session: &SessionId,
        user: &UserId,
        now: i64,
    ) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id = ? AND s.user_id = ? AND s.ended_at IS NULL
               AND s.expires_at > ? AND u.disabled = 0",
        )
        .bind(&session.0)
        .bind(&user.0)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.is_some())
    }

    async fn create_note(&self, user: &UserId, note: &Note) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notes (id, user_id, title, body, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&note.id)
        .bind(&user.0)
        .bind(&note.title)
        .bind(&note.body)
        .bind(note.created_at)
        .bind(note.updated_at)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn notes(&self, user: &UserId) -> Result<Vec<Note>, StoreError> {
        let rows: Vec<NoteRow> = sqlx::query_as(
            "SELECT id, title, body, created_at, updated_at FROM notes
             WHERE user_id = ? ORDER BY created_at, rowid",
        )
        .bind(&user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows.into_iter().map(note_from_row).collect())
    }

    async fn note(&self, user: &UserId, id: &str) -> Result<Option<Note>, StoreError> {
        let row: Option<NoteRow> = sqlx::query_as(
            "SELECT id, title, body, created_at, updated_at FROM notes
             WHERE user_id = ? AND id = ?",
        )
        .bind(&user.0)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.map(note_from_row))
    }

    async fn update_note(
        &self,
        user: &UserId,
        id: &str,
        title: &str,
        body: &str,
        now: i64,
    ) -> Result<Option<Note>, StoreError> {
        let row: Option<NoteRow> = sqlx::query_as(
            "UPDATE notes SET title = ?, body = ?, updated_at = ?
             WHERE user_id = ? AND id = ?
             RETURNING id, title, body, created_at, updated_at",
        )
        .bind(title)
        .bind(body)
        .bind(now)
        .bind(&user.0)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.map(note_from_row))
    }

    async fn delete_note(&self, user: &UserId, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM notes WHERE user_id = ? AND id = ?")
            .bind(&user.0)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(result.rows_affected() == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

//! The SQLite store: one file in the data dir, WAL journal, full fsync on commit so that
//! a rotated refresh token survives a crash, and a busy timeout before a write gives up.
//!
//! Renewals are committed in groups: one task takes every renewal waiting and spends
//! them in one transaction, so that one disk sync carries many of them (group commit).
//! Each renewal is answered only after the commit that holds it; a renewal that the
//! group cannot carry is tried again alone, so that it fails only for its own reason.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    AuditEvent, AuditRow, Credentials, NewSession, NewUser, Note, NoteRow, RefreshHash,
    RefreshRecord, RefreshRow, SessionId, SessionRecord, SessionRow, Store, StoreError, StoredKey,
    User, UserId, UserRow, audit_from_row, credentials_from_row, note_from_row, refresh_from_row,
    session_from_row,
};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most renewals one group commit carries.
const MAX_GROUP: usize = 64;
/// Renewals that may wait for the committing task before callers wait to hand theirs in.
const QUEUED_RENEWALS: usize = 1024;

/// SQLite behind the [`Store`] trait.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Renewals on their way to the group-commit task.
    renewals: mpsc::Sender<Renewal>,
}

/// One renewal waiting for a group commit, and where its outcome goes.
struct Renewal {
    presented: RefreshHash,
    successor: RefreshHash,
    sealed: Vec<u8>,
    now: i64,
    event: AuditEvent,
    outcome: oneshot::Sender<Result<bool, StoreError>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs its migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_synchronous(path, SqliteSynchronous::Full).await
    }

    /// [`SqliteStore::open`] with another `synchronous` setting, only to measure what
    /// durable commits cost (`bench/durable-writes.sh`): `Normal` can lose the last
    /// commits (renewals already answered) when the machine loses power.
    #[doc(hidden)]
    pub async fn open_with_synchronous(
        path: &Path,
        synchronous: SqliteSynchronous,
    ) -> Result<Self, StoreError> {
        create_owner_only(path).map_err(|error| StoreError::Database(error.into()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
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
        let (renewals, queue) = mpsc::channel(QUEUED_RENEWALS);
        tokio::spawn(commit_renewals(pool.clone(), queue));
        Ok(Self { pool, renewals })
    }
}

/// The group-commit task: takes every renewal waiting (up to [`MAX_GROUP`]) and commits
/// them together; while one group waits for the disk, the next one gathers. Ends when
/// the store is dropped.
async fn commit_renewals(pool: SqlitePool, mut queue: mpsc::Receiver<Renewal>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        match spend_group(&pool, &group).await {
            Ok(outcomes) => {
                for (renewal, spent) in group.drain(..).zip(outcomes) {
                    // A caller that stopped waiting (its client left) needs no answer:
                    // its renewal is committed and its grace window replays it.
                    let _caller_gone = renewal.outcome.send(Ok(spent));
                }
            }
            Err(error) => {
                tracing::debug!(
                    %error,
                    renewals = group.len(),
                    "group commit failed; renewing one by one"
                );
                for renewal in group.drain(..) {
                    let outcome = spend_group(&pool, std::slice::from_ref(&renewal))
                        .await
                        .map(|spent| spent.first().copied().unwrap_or(false));
                    let _caller_gone = renewal.outcome.send(outcome);
                }
            }
        }
    }
}

/// Spends a group of renewals in one transaction: whether each was spent, or nothing
/// at all when any statement fails.
async fn spend_group(pool: &SqlitePool, group: &[Renewal]) -> Result<Vec<bool>, StoreError> {
    let mut tx = pool.begin().await.map_err(classify)?;
    let mut outcomes = Vec::with_capacity(group.len());
    for renewal in group {
        outcomes.push(spend_in(&mut tx, renewal).await?);
    }
    tx.commit().await.map_err(classify)?;
    Ok(outcomes)
}

/// Spends `renewal.presented`, stores its successor and records its audit event, inside
/// a transaction; false (and nothing written) when the token was already spent or its
/// session ended.
async fn spend_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    renewal: &Renewal,
) -> Result<bool, StoreError> {
    // One conditional UPDATE decides: of any number of presentations of the same
    // token, in one group or in several, exactly one finds `spent_at IS NULL`.
    let spent: Option<(String,)> = sqlx::query_as(
        "UPDATE refresh_tokens
         SET spent_at = ?, successor_hash = ?, successor_sealed = ?
         WHERE token_hash = ? AND spent_at IS NULL
           AND session_id IN (SELECT id FROM sessions WHERE ended_at IS NULL)
         RETURNING session_id",
    )
    .bind(renewal.now)
    .bind(&renewal.successor.0[..])
    .bind(&renewal.sealed[..])
    .bind(&renewal.presented.0[..])
    .fetch_optional(&mut **tx)
    .await
    .map_err(classify)?;
    let Some((session_id,)) = spent else {
        return Ok(false);
    };
    sqlx::query("UPDATE sessions SET last_used_at = ? WHERE id = ?")
        .bind(renewal.now)
        .bind(&session_id)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    insert_refresh(tx, renewal.successor, &session_id, renewal.now).await?;
    insert_audit(&mut **tx, &renewal.event).await?;
    Ok(true)
}

/// Appends an audit event, alone or inside a transaction.
async fn insert_audit<'c>(
    executor: impl sqlx::SqliteExecutor<'c>,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, kind, user_id, session_id, ip, user_agent, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.at)
    .bind(&event.kind)
    .bind(&event.user_id)
    .bind(&event.session_id)
    .bind(&event.ip)
    .bind(&event.user_agent)
    .bind(&event.detail)
    .execute(executor)
    .await
    .map_err(classify)?;
    Ok(())
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

/// Stores a newly issued refresh token (its hash) of `session` inside a transaction.
async fn insert_refresh(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    token: RefreshHash,
    session: &str,
    issued_at: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES (?, ?, ?)")
        .bind(&token.0[..])
        .bind(session)
        .bind(issued_at)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Ends the open sessions of `user` but `keep` inside a transaction; the ids ended.
async fn end_sessions_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    user: &UserId,
    keep: Option<&SessionId>,
    reason: &str,
    now: i64,
) -> Result<Vec<SessionId>, StoreError> {
    let ended: Vec<(String,)> = sqlx::query_as(
        "UPDATE sessions SET ended_at = ?, end_reason = ?
         WHERE user_id = ? AND ended_at IS NULL AND id IS NOT ?
         RETURNING id",
    )
    .bind(now)
    .bind(reason)
    .bind(&user.0)
    .bind(keep.map(|session| session.0.as_str()))
    .fetch_all(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(ended.into_iter().map(|(id,)| SessionId(id)).collect())
}

/// Sorts database failures into what callers act on.
fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => StoreError::Conflict,
        // SQLITE_FULL (13): a write hit ENOSPC and its transaction rolled back.
        sqlx::Error::Database(database) if sqlite_code(database.as_ref()) == Some(13) => {
            StoreError::DiskFull
        }
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
        sqlx::Error::Database(database)
            if sqlite_code(database.as_ref()).is_some_and(|code| matches!(code, 5 | 6)) =>
        {
            StoreError::Busy
        }
        sqlx::Error::PoolTimedOut => StoreError::Busy,
        _ => StoreError::Database(error),
    }
}

/// The primary result code of an SQLite error (its low byte; the rest is the extended
/// code).
fn sqlite_code(error: &dyn sqlx::error::DatabaseError) -> Option<i32> {
    let code = error.code()?.parse::<i32>().ok()?;
    Some(code & 0xff)
}

/// The columns every user query reads, in `UserRow` order.
macro_rules! user_columns {
    () => {
        "id, username, password_hash, disabled, created_at, roles"
    };
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, new: NewUser) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, created_at, roles)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&new.user.id.0)
        .bind(&new.user.username)
        .bind(&new.username_key)
        .bind(&new.password_hash)
        .bind(new.user.created_at)
        .bind(new.user.roles.join(" "))
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username_key = ?"
        ))
        .bind(username_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.map(credentials_from_row))
    }

    async fn credentials_by_id(&self, id: &UserId) -> Result<Option<Credentials>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?"
        ))
        .bind(&id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.map(credentials_from_row))
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        Ok(self.credentials_by_id(id).await?.map(|found| found.user))
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, rowid"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|row| credentials_from_row(row).user)
            .collect())
    }

    async fn set_password(
        &self,
        user: &UserId,
        password_hash: &str,
        keep: Option<&SessionId>,
        now: i64,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(&user.0)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let ended = end_sessions_in(&mut tx, user, keep, "password_changed", now).await?;
        tx.commit().await.map_err(classify)?;
        Ok(ended)
    }

    async fn set_disabled(
        &self,
        user: &UserId,
        disabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let changed = sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
            .bind(disabled)
            .bind(&user.0)
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        if disabled {
            end_sessions_in(&mut tx, user, None, "user_disabled", now).await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(changed == 1)
    }

    async fn set_roles(&self, user: &UserId, roles: &[String]) -> Result<bool, StoreError> {
        let changed = sqlx::query("UPDATE users SET roles = ? WHERE id = ?")
            .bind(roles.join(" "))
            .bind(&user.0)
            .execute(&self.pool)
            .await
            .map_err(classify)?
            .rows_affected();
        Ok(changed == 1)
    }

    async fn open_session(
        &self,
        session: NewSession,
        first: RefreshHash,
        verified_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // Writes are serialised: a password change or a disable either commits before
        // this insert (which then finds no matching user and inserts nothing) or after
        // it (and then ends this session with the others).
        let opened = sqlx::query(
            "INSERT INTO sessions (id, user_id, client_id, user_agent, ip, created_at,
                                   last_used_at, expires_at)
             SELECT ?, id, ?, ?, ?, ?, ?, ?
             FROM users WHERE id = ? AND password_hash = ? AND disabled = 0",
        )
        .bind(&session.id.0)
        .bind(&session.client_id)
        .bind(&session.user_agent)
        .bind(&session.ip)
        .bind(session.created_at)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(&session.user_id.0)
        .bind(verified_hash)
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        if opened != 1 {
            return Ok(false);
        }
        insert_refresh(&mut tx, first, &session.id.0, session.created_at).await?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn refresh_record(
        &self,
        presented: RefreshHash,
        now: i64,
        idle_secs: i64,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        let row: Option<RefreshRow> = sqlx::query_as(
            "SELECT r.session_id, s.user_id, u.roles, r.spent_at, r.successor_hash,
                    r.successor_sealed,
                    (s.ended_at IS NULL AND s.expires_at > ?1
                     AND s.last_used_at + ?2 > ?1 AND u.disabled = 0),
                    s.expires_at
             FROM refresh_tokens r
             JOIN sessions s ON s.id = r.session_id
             JOIN users u ON u.id = s.user_id
             WHERE r.token_hash = ?3",
        )
        .bind(now)
        .bind(idle_secs)
        .bind(&presented.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.map(refresh_from_row))
    }

    async fn spend_refresh(
        &self,
        presented: RefreshHash,
        successor: RefreshHash,
        sealed: &[u8],
        now: i64,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (outcome, answer) = oneshot::channel();
        let renewal = Renewal {
            presented,
            successor,
            sealed: sealed.to_vec(),
            now,
            event: event.clone(),
            outcome,
        };
        // Both fail only once the group-commit task has ended, with the store.
        self.renewals
            .send(renewal)
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?
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
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let ended = end_sessions_in(&mut tx, user, keep, reason, now).await?;
        tx.commit().await.map_err(classify)?;
        Ok(ended)
    }

    async fn open_sessions(
        &self,
        user: &UserId,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id, client_id, user_agent, ip, created_at, last_used_at, expires_at
             FROM sessions
             WHERE user_id = ? AND ended_at IS NULL AND expires_at > ?
             ORDER BY created_at, rowid",
        )
        .bind(&user.0)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows.into_iter().map(session_from_row).collect())
    }

    async fn count_open_sessions(&self, now: i64, idle_since: i64) -> Result<u64, StoreError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sessions
             WHERE ended_at IS NULL AND expires_at > ? AND last_used_at > ?",
        )
        .bind(now)
        .bind(idle_since)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn session_owner(&self, session: &SessionId) -> Result<Option<UserId>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT user_id FROM sessions WHERE id = ?")
            .bind(&session.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(row.map(|(user,)| UserId(user)))
    }

    async fn ended_since(&self, since: i64) -> Result<Vec<(SessionId, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, ended_at FROM sessions
             WHERE ended_at IS NOT NULL AND ended_at >= ? ORDER BY ended_at",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(id, ended_at)| (SessionId(id), ended_at))
            .collect())
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows: Vec<(String, String, Vec<u8>, i64, i64)> =
            sqlx::query_as("SELECT kid, alg, sealed, created_at, activates_at FROM signing_keys")
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(kid, alg, sealed, created_at, activates_at)| StoredKey {
                kid,
                alg,
                sealed,
                created_at,
                activates_at,
            })
            .collect())
    }

    async fn add_signing_key(
        &self,
        key: &StoredKey,
        unless_created_since: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // A write first, so this transaction holds SQLite's write lock before it reads:
        // the check and the insert then see no other writer in between.
        sqlx::query("UPDATE signing_keys SET kid = kid WHERE 0")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if let Some(since) = unless_created_since {
            let (recent,): (bool,) =
                sqlx::query_as("SELECT EXISTS (SELECT 1 FROM signing_keys WHERE created_at >= ?)")
                    .bind(since)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
            if recent {
                return Ok(false);
            }
        }
        sqlx::query("INSERT INTO signing_keys (kid, alg, sealed, created_at, activates_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(&key.sealed)
            .bind(key.created_at)
            .bind(key.activates_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn remove_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = ?")
            .bind(kid)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn record_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        insert_audit(&self.pool, event).await
    }

    async fn audit_events(&self, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT at, kind, user_id, session_id, ip, user_agent, detail
             FROM audit_events ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows.into_iter().map(audit_from_row).collect())
    }

    async fn prune_audit(&self, before: i64) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM audit_events WHERE at < ?")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(result.rows_affected())
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

    /// Closes every connection, checkpointing the WAL.
    async fn close(&self) {
        self.pool.close().await;
    }
}

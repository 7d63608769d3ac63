//! The PostgreSQL store, for several instances behind a load balancer: a bounded
//! connection pool that replaces lost connections, its own migrations, and the same
//! semantics as the SQLite store. SQLite serialises every write; here concurrent
//! transactions run at READ COMMITTED, so each step that must not interleave takes the
//! row lock that orders it (see `open_session` and `spend_refresh`).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::{
    AuditEvent, AuditRow, Credentials, NewSession, NewUser, Note, NoteRow, RefreshHash,
    RefreshRecord, RefreshRow, SessionId, SessionRecord, SessionRow, Store, StoreError, StoredKey,
    User, UserId, UserRow, audit_from_row, credentials_from_row, note_from_row, refresh_from_row,
    session_from_row,
};
use crate::config::DatabaseUrl;

/// Connections per instance: enough for the hashing pool's logins and the renewals
/// around them, small enough that a dozen instances fit PostgreSQL's default limit of
/// 100 connections.
const MAX_CONNECTIONS: u32 = 8;
/// How long a request waits for a free connection (or a new one) before the store
/// answers `Busy`, and so the client 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a statement waits for a row lock, like SQLite's busy timeout.
const LOCK_TIMEOUT: &str = "5s";
/// Longest statement; Tessera's are all small, so a longer one is stuck.
const STATEMENT_TIMEOUT: &str = "15s";
/// Idle connections beyond the first are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Connections are replaced after this long, so a failover or a reconfigured server
/// reaches every instance without a restart.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// PostgreSQL behind the [`Store`] trait.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (once, so a wrong URL or a stopped server stops start-up) and
    /// runs the migrations. The migrator holds an advisory lock meanwhile, so instances
    /// starting together migrate once.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.expose().parse()?;
        let options = options.application_name("tessera").options([
            ("lock_timeout", LOCK_TIMEOUT),
            ("statement_timeout", STATEMENT_TIMEOUT),
        ]);
        // One connection first, alone: the pool would only report that it timed out,
        // where this says why (refused, unknown database, authentication failed).
        let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer from the database server in time",
                ))
            })??;
        probe.close().await?;
        // The pool checks a connection before lending it and opens a new one when a
        // connection was lost (a restarted server, a dropped proxy), so a database
        // that comes back is used again without restarting Tessera.
        let pool = PgPoolOptions::new()
            .min_connections(1)
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .max_lifetime(MAX_LIFETIME)
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|error| StoreError::Database(error.into()))?;
        Ok(Self { pool })
    }
}

/// Stores a newly issued refresh token (its hash) of `session` inside a transaction.
async fn insert_refresh(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    token: RefreshHash,
    session: &str,
    issued_at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
    )
    .bind(&token.0[..])
    .bind(session)
    .bind(issued_at)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}

/// Appends an audit event, alone or inside a transaction.
async fn insert_audit<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, kind, user_id, session_id, ip, user_agent, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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

/// Ends the open sessions of `user` but `keep` inside a transaction; the ids ended.
async fn end_sessions_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user: &UserId,
    keep: Option<&SessionId>,
    reason: &str,
    now: i64,
) -> Result<Vec<SessionId>, StoreError> {
    // A session whose refresh is being spent right now is locked by that spend: this
    // waits for it and then ends it too, so no renewal slips past.
    let ended: Vec<(String,)> = sqlx::query_as(
        "UPDATE sessions SET ended_at = $1, end_reason = $2
         WHERE user_id = $3 AND ended_at IS NULL AND id IS DISTINCT FROM $4
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

/// Sorts database failures into what callers act on: a taken name, a failure worth
/// retrying (answered 503), or a fault.
fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => StoreError::Conflict,
        // disk_full
        sqlx::Error::Database(database) if database.code().as_deref() == Some("53100") => {
            StoreError::DiskFull
        }
        sqlx::Error::Database(database)
            if database.code().is_some_and(|code| is_transient(&code)) =>
        {
            StoreError::Busy
        }
        // The connection broke or none could be had in time: the pool replaces broken
        // connections, so a retry can succeed.
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Busy,
        _ => StoreError::Database(error),
    }
}

/// SQLSTATEs that say "not now" rather than "never": the statement may succeed when
/// retried.
fn is_transient(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected
        "40001" | "40P01"
        // lock_not_available (lock_timeout), query_canceled (statement_timeout)
        | "55P03" | "57014"
        // admin_shutdown, crash_shutdown, cannot_connect_now (a restart or failover)
        | "57P01" | "57P02" | "57P03"
        // too_many_connections
        | "53300"
    ) || code.starts_with("08") // connection exceptions
}

/// The columns every user query reads, in `UserRow` order.
macro_rules! user_columns {
    () => {
        "id, username, password_hash, disabled, created_at, roles"
    };
}

#[async_trait]
impl Store for PgStore {
    async fn create_user(&self, new: NewUser) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, created_at, roles)
             VALUES ($1, $2, $3, $4, $5, $6)",
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
            " FROM users WHERE username_key = $1"
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
            " FROM users WHERE id = $1"
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
            " FROM users ORDER BY created_at, seq"
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
        // The user's row lock waits for logins that verified the old hash and are
        // opening their session (`open_session` holds a share lock); at READ COMMITTED
        // the next statement then sees those sessions and ends them.
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
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
        // Ordered against logins by the user's row lock, as in `set_password`.
        let changed = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
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
        let changed = sqlx::query("UPDATE users SET roles = $1 WHERE id = $2")
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
        // FOR SHARE orders this against a password change or a disable, which update
        // the user's row: if one is in flight, this waits for it and then re-reads the
        // row, finds the hash changed or the user disabled, and inserts nothing; if
        // this comes first, the change waits for this commit and then ends this
        // session with the others.
        let opened = sqlx::query(
            "INSERT INTO sessions (id, user_id, client_id, user_agent, ip, created_at,
                                   last_used_at, expires_at)
             SELECT $1, id, $2, $3, $4, $5, $5, $6
             FROM users WHERE id = $7 AND password_hash = $8 AND NOT disabled
             FOR SHARE",
        )
        .bind(&session.id.0)
        .bind(&session.client_id)
        .bind(&session.user_agent)
        .bind(&session.ip)
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
                    (s.ended_at IS NULL AND s.expires_at > $1
                     AND s.last_used_at + $2 > $1 AND NOT u.disabled),
                    s.expires_at
             FROM refresh_tokens r
             JOIN sessions s ON s.id = r.session_id
             JOIN users u ON u.id = s.user_id
             WHERE r.token_hash = $3",
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
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // First the session's row lock: every spend in the session, and every way of
        // ending it, queue on it. Waiting for a concurrent end and then re-reading the
        // row at READ COMMITTED finds it ended, and spends nothing.
        let session: Option<(String,)> = sqlx::query_as(
            "UPDATE sessions SET last_used_at = $1
             WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = $2)
               AND ended_at IS NULL
             RETURNING id",
        )
        .bind(now)
        .bind(&presented.0[..])
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some((session_id,)) = session else {
            return Ok(false);
        };
        // Then one conditional UPDATE decides: of any number of concurrent
        // presentations of the same token, the first through the lock finds
        // `spent_at IS NULL`; the others find it spent and roll back, leaving
        // `last_used_at` as the winner set it.
        let spent = sqlx::query(
            "UPDATE refresh_tokens
             SET spent_at = $1, successor_hash = $2, successor_sealed = $3
             WHERE token_hash = $4 AND spent_at IS NULL",
        )
        .bind(now)
        .bind(&successor.0[..])
        .bind(sealed)
        .bind(&presented.0[..])
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        if spent != 1 {
            return Ok(false);
        }
        insert_refresh(&mut tx, successor, &session_id, now).await?;
        insert_audit(&mut *tx, event).await?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn end_session(
        &self,
        session: &SessionId,
        user: &UserId,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2
             WHERE id = $3 AND user_id = $4 AND ended_at IS NULL",
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
             WHERE user_id = $1 AND ended_at IS NULL AND expires_at > $2
             ORDER BY created_at, seq",
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
             WHERE ended_at IS NULL AND expires_at > $1 AND last_used_at > $2",
        )
        .bind(now)
        .bind(idle_since)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn session_owner(&self, session: &SessionId) -> Result<Option<UserId>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT user_id FROM sessions WHERE id = $1")
            .bind(&session.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(row.map(|(user,)| UserId(user)))
    }

    async fn ended_since(&self, since: i64) -> Result<Vec<(SessionId, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, ended_at FROM sessions
             WHERE ended_at IS NOT NULL AND ended_at >= $1 ORDER BY ended_at",
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

    fn ended_pushes(&self) -> Option<tokio::sync::mpsc::Receiver<(SessionId, i64)>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(PUSH_BUFFER);
        tokio::spawn(listen_for_ends(self.pool.clone(), sender));
        Some(receiver)
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
        // One instance at a time decides: the lock lasts until this transaction ends,
        // and the next holder's check then sees the key this one added.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tessera_signing_keys'))")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if let Some(since) = unless_created_since {
            let (recent,): (bool,) =
                sqlx::query_as("SELECT EXISTS (SELECT 1 FROM signing_keys WHERE created_at >= $1)")
                    .bind(since)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
            if recent {
                return Ok(false);
            }
        }
        sqlx::query("INSERT INTO signing_keys (kid, alg, sealed, created_at, activates_at) VALUES ($1, $2, $3, $4, $5)")
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
        sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
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
             FROM audit_events ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows.into_iter().map(audit_from_row).collect())
    }

    async fn prune_audit(&self, before: i64) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(result.rows_affected())
    }

    async fn create_note(&self, user: &UserId, note: &Note) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notes (id, user_id, title, body, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
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
             WHERE user_id = $1 ORDER BY created_at, seq",
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
             WHERE user_id = $1 AND id = $2",
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
            "UPDATE notes SET title = $1, body = $2, updated_at = $3
             WHERE user_id = $4 AND id = $5
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
        let result = sqlx::query("DELETE FROM notes WHERE user_id = $1 AND id = $2")
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

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// How many pushed ends may wait for the revocation set before the listener waits.
const PUSH_BUFFER: usize = 1024;
/// The channel the `sessions_notify_ended` trigger notifies (migration 0003).
const ENDED_CHANNEL: &str = "tessera_session_ended";
/// Pause before listening again after the listener connection failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Forwards each `NOTIFY tessera_session_ended` ("<session id> <ended_at>") to `sender`
/// until its receiver is dropped. A lost connection is reopened after a pause;
/// notifications sent meanwhile are lost, which the revocation set's periodic read of
/// `ended_since` makes up for.
async fn listen_for_ends(pool: PgPool, sender: tokio::sync::mpsc::Sender<(SessionId, i64)>) {
    let mut warned = false;
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(ENDED_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => listener,
            Err(error) => {
                if !warned {
                    tracing::warn!(%error, "cannot listen for ended sessions; reading them every second");
                    warned = true;
                }
                tokio::time::sleep(LISTEN_RETRY).await;
                continue;
            }
        };
        warned = false;
        loop {
            // The listener holds a pooled connection: give it back as soon as nobody
            // follows, so that closing the pool at shutdown does not wait for it.
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = sender.closed() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    let Some((session, at)) = notification.payload().split_once(' ') else {
                        continue;
                    };
                    let Ok(at) = at.parse::<i64>() else { continue };
                    if sender
                        .send((SessionId(session.to_owned()), at))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                // The connection was lost: listen again on a new one.
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "listening for ended sessions failed; retrying");
                    tokio::time::sleep(LISTEN_RETRY).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_transient;

    #[test]
    fn failures_a_retry_can_cure_are_told_apart_from_faults() {
        for code in [
            "40001", "40P01", "55P03", "57014", "57P01", "53300", "08006",
        ] {
            assert!(is_transient(code), "{code}");
        }
        // unique_violation, undefined_table, syntax_error, insufficient_privilege
        for code in ["23505", "42P01", "42601", "42501"] {
            assert!(!is_transient(code), "{code}");
        }
    }
}

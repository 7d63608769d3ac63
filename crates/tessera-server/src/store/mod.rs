//! The repository: everything Tessera keeps, behind one trait so that SQLite (the
//! embedded default) and PostgreSQL (for several instances behind a load balancer) serve
//! the same service code. [`open`] picks the one the configuration names.

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use serde::Serialize;

use crate::config::DatabaseUrl;

/// Opens the store at `database_url` (PostgreSQL), or, without one, the SQLite file
/// `sqlite_file`; either way its migrations have run when this returns.
pub async fn open(
    database_url: Option<&DatabaseUrl>,
    sqlite_file: &Path,
) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match database_url {
        Some(url) => {
            Arc::new(PgStore::open(url).await.with_context(|| {
                format!("cannot open the PostgreSQL database {}", url.redacted())
            })?)
        }
        None => Arc::new(
            SqliteStore::open(sqlite_file)
                .await
                .with_context(|| format!("cannot open {}", sqlite_file.display()))?,
        ),
    })
}

/// A user's id: a random UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(pub String);

/// A session's id (the refresh family): a random UUID, carried as `sid` in tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

/// A SHA-256 digest of a refresh token: what the store keeps instead of the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RefreshHash(pub [u8; 32]);

impl std::fmt::Debug for RefreshHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshHash([REDACTED])")
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// The username as first written (trimmed).
    pub username: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Role names, carried in access tokens.
    pub roles: Vec<String>,
    /// A disabled user cannot log in or renew, and has no open session.
    pub disabled: bool,
}

/// A user with what login needs.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user.
    pub user: User,
    /// PHC string of the Argon2id hash.
    pub password_hash: String,
}

/// A user about to be created.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The user.
    pub user: User,
    /// Lower-cased username for the unique index.
    pub username_key: String,
    /// PHC string of the Argon2id hash.
    pub password_hash: String,
}

/// A session about to be opened by a login.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Id.
    pub id: SessionId,
    /// Owner.
    pub user_id: UserId,
    /// The client's label (`client_id`), if it gave one.
    pub client_id: Option<String>,
    /// The client's `User-Agent`, if any.
    pub user_agent: Option<String>,
    /// The client's IP address.
    pub ip: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// End of the absolute lifetime.
    pub expires_at: i64,
}

/// An open session as its user sees it in their list of devices.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Id.
    pub id: SessionId,
    /// The client's label, if it gave one.
    pub client_id: Option<String>,
    /// The client's `User-Agent` at login.
    pub user_agent: Option<String>,
    /// The client's IP address at login.
    pub ip: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Last login or renewal.
    pub last_used_at: i64,
    /// End of the absolute lifetime.
    pub expires_at: i64,
}

/// What the store knows of a presented refresh token.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    /// Its session.
    pub session: SessionId,
    /// The session's user.
    pub user: UserId,
    /// The user's roles.
    pub roles: Vec<String>,
    /// When it was spent, if it was.
    pub spent_at: Option<i64>,
    /// The token that replaced it.
    pub successor: Option<RefreshHash>,
    /// The successor pair, sealed with a key derived from this token.
    pub successor_sealed: Option<Vec<u8>>,
    /// Whether the session may still renew at the time asked: not ended, before its
    /// absolute end, used within the idle timeout, user enabled.
    pub session_live: bool,
    /// End of the session's absolute lifetime.
    pub session_expires_at: i64,
}

/// A recorded security event.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    /// Seconds since the epoch.
    pub at: i64,
    /// What happened: `login_succeeded`, `refresh_reuse_detected`, …
    pub kind: String,
    /// The user concerned, when known.
    pub user_id: Option<String>,
    /// The session concerned, when known.
    pub session_id: Option<String>,
    /// The client's IP address, when known.
    pub ip: Option<String>,
    /// The client's `User-Agent`, when known.
    pub user_agent: Option<String>,
    /// Free text without secrets.
    pub detail: Option<String>,
}

/// A note of the demo API.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

/// A signing key as the database keeps it: the private key sealed under the master key
/// (see `master_key`), with its schedule.
#[derive(Clone)]
pub struct StoredKey {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// Algorithm name, as in the JWS header.
    pub alg: String,
    /// Nonce, ciphertext and tag of the PKCS#8 PEM.
    pub sealed: Vec<u8>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// When the key starts signing, seconds since the epoch.
    pub activates_at: i64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .finish_non_exhaustive()
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write.
    #[error("conflict")]
    Conflict,
    /// The database stayed busy or locked past its timeout, gave up a transaction that
    /// lost to a concurrent one, or could not be reached: worth retrying shortly.
    #[error("database busy")]
    Busy,
    /// The disk under the database is full: writes fail until space is freed, while
    /// reads still work. Nothing half-written is kept (the transaction rolled back).
    #[error("database disk full")]
    DiskFull,
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Everything Tessera stores.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user; `Conflict` when the username key is taken.
    async fn create_user(&self, user: NewUser) -> Result<(), StoreError>;

    /// The user with this lower-cased username, with their hash.
    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError>;

    /// The user with this id, with their hash.
    async fn credentials_by_id(&self, id: &UserId) -> Result<Option<Credentials>, StoreError>;

    /// The user with this id.
    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError>;

    /// Every user, oldest first.
    async fn users(&self) -> Result<Vec<User>, StoreError>;

    /// Replaces a user's password hash and ends their other sessions in one step;
    /// the ids of the sessions ended.
    async fn set_password(
        &self,
        user: &UserId,
        password_hash: &str,
        keep: Option<&SessionId>,
        now: i64,
    ) -> Result<Vec<SessionId>, StoreError>;

    /// Disables or enables a user; disabling ends every session of theirs in the same
    /// step. False when there is no such user.
    async fn set_disabled(
        &self,
        user: &UserId,
        disabled: bool,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Replaces a user's roles. False when there is no such user.
    async fn set_roles(&self, user: &UserId, roles: &[String]) -> Result<bool, StoreError>;

    /// Opens a session with its first refresh token, only if the user still holds
    /// `verified_hash` and is enabled: a login that checked the old password while the
    /// password changed or the user was disabled opens nothing. False then.
    async fn open_session(
        &self,
        session: NewSession,
        first: RefreshHash,
        verified_hash: &str,
    ) -> Result<bool, StoreError>;

    /// What is known of a presented refresh token at `now`.
    async fn refresh_record(
        &self,
        presented: RefreshHash,
        now: i64,
        idle_secs: i64,
    ) -> Result<Option<RefreshRecord>, StoreError>;

    /// Spends `presented` and stores `successor` (with the sealed successor pair) and
    /// the renewal's audit `event` in one atomic step. False, with nothing stored, when
    /// `presented` was spent meanwhile: of any number of concurrent calls with one
    /// token, exactly one returns true.
    async fn spend_refresh(
        &self,
        presented: RefreshHash,
        successor: RefreshHash,
        sealed: &[u8],
        now: i64,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Ends a session of `user`; false when it was not open.
    async fn end_session(
        &self,
        session: &SessionId,
        user: &UserId,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Ends every open session of `user` except `keep`; the ids ended.
    async fn end_user_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
        reason: &str,
        now: i64,
    ) -> Result<Vec<SessionId>, StoreError>;

    /// The open sessions of `user` (not ended, not past their absolute end).
    async fn open_sessions(
        &self,
        user: &UserId,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// How many sessions can still renew at `now`: not ended, not past their absolute
    /// end, and used since `idle_since`. For the open-sessions gauge, read every 30 s.
    async fn count_open_sessions(&self, now: i64, idle_since: i64) -> Result<u64, StoreError>;

    /// The user a session belongs to.
    async fn session_owner(&self, session: &SessionId) -> Result<Option<UserId>, StoreError>;

    /// Sessions ended at or after `since`, with when they ended, oldest first.
    async fn ended_since(&self, since: i64) -> Result<Vec<(SessionId, i64)>, StoreError>;

    /// Ends pushed by the database as they commit, for databases that can push them
    /// (PostgreSQL's LISTEN/NOTIFY); `None` when only reading `ended_since` tells.
    /// Pushes can be lost while the connection is down, so they complement the reads.
    fn ended_pushes(&self) -> Option<tokio::sync::mpsc::Receiver<(SessionId, i64)>> {
        None
    }

    /// Every signing key kept in the database.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Adds a signing key. With `unless_created_since`, adds it only when no key was
    /// created at or after that time, decided atomically even when several instances
    /// try at once; false when skipped.
    async fn add_signing_key(
        &self,
        key: &StoredKey,
        unless_created_since: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Deletes a signing key; deleting an absent one is no error.
    async fn remove_signing_key(&self, kid: &str) -> Result<(), StoreError>;

    /// Appends an audit event.
    async fn record_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// The newest audit events, newest first, at most `limit`.
    async fn audit_events(&self, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;

    /// Deletes audit events older than `before`; how many.
    async fn prune_audit(&self, before: i64) -> Result<u64, StoreError>;

    /// Creates a note for `user`.
    async fn create_note(&self, user: &UserId, note: &Note) -> Result<(), StoreError>;

    /// The notes of `user`, oldest first.
    async fn notes(&self, user: &UserId) -> Result<Vec<Note>, StoreError>;

    /// One note of `user`.
    async fn note(&self, user: &UserId, id: &str) -> Result<Option<Note>, StoreError>;

    /// Replaces title and body of a note of `user`; the updated note, if it exists.
    async fn update_note(
        &self,
        user: &UserId,
        id: &str,
        title: &str,
        body: &str,
        now: i64,
    ) -> Result<Option<Note>, StoreError>;

    /// Deletes a note of `user`; false when there was none.
    async fn delete_note(&self, user: &UserId, id: &str) -> Result<bool, StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes every connection once in-flight work is done; called at shutdown.
    async fn close(&self);
}

// Rows as both stores read them, in the order of their SELECT lists, and what they
// become.

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

/// Role names as stored: space-separated.
fn split_roles(roles: &str) -> Vec<String> {
    roles.split_whitespace().map(str::to_owned).collect()
}

type UserRow = (String, String, String, bool, i64, String);

fn credentials_from_row(
    (id, username, password_hash, disabled, created_at, roles): UserRow,
) -> Credentials {
    Credentials {
        user: User {
            id: UserId(id),
            username,
            created_at,
            roles: split_roles(&roles),
            disabled,
        },
        password_hash,
    }
}

type RefreshRow = (
    String,
    String,
    String,
    Option<i64>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    bool,
    i64,
);

fn refresh_from_row(
    (session, user, roles, spent_at, successor, sealed, live, expires_at): RefreshRow,
) -> RefreshRecord {
    RefreshRecord {
        session: SessionId(session),
        user: UserId(user),
        roles: split_roles(&roles),
        spent_at,
        successor: successor
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(RefreshHash),
        successor_sealed: sealed,
        session_live: live,
        session_expires_at: expires_at,
    }
}

type SessionRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
);

fn session_from_row(
    (id, client_id, user_agent, ip, created_at, last_used_at, expires_at): SessionRow,
) -> SessionRecord {
    SessionRecord {
        id: SessionId(id),
        client_id,
        user_agent,
        ip,
        created_at,
        last_used_at,
        expires_at,
    }
}

type AuditRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn audit_from_row((at, kind, user_id, session_id, ip, user_agent, detail): AuditRow) -> AuditEvent {
    AuditEvent {
        at,
        kind,
        user_id,
        session_id,
        ip,
        user_agent,
        detail,
    }
}

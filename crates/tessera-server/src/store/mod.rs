//! The repository: everything Tessera keeps, behind one trait so that SQLite (the
//! embedded default) and other databases serve the same service code.

mod sqlite;

pub use sqlite::SqliteStore;

use async_trait::async_trait;
use serde::Serialize;

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
}

/// A user with what login needs.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user.
    pub user: User,
    /// PHC string of the Argon2id hash.
    pub password_hash: String,
    /// A disabled user cannot log in or renew.
    pub disabled: bool,
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
    /// Seconds since the epoch.
    pub created_at: i64,
    /// End of the absolute lifetime.
    pub expires_at: i64,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live; it is now spent and its successor stored.
    Rotated {
        /// The session it belongs to.
        session: SessionId,
        /// The session's user.
        user: UserId,
    },
    /// The token is unknown, spent, or its session has ended, expired, idled out, or
    /// belongs to a disabled user.
    Refused,
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

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write.
    #[error("conflict")]
    Conflict,
    /// The database stayed busy or locked past its timeout.
    #[error("database busy")]
    Busy,
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

    /// The user with this id.
    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError>;

    /// Opens a session with its first refresh token.
    async fn open_session(&self, session: NewSession, first: RefreshHash)
    -> Result<(), StoreError>;

    /// Spends `presented` and stores `successor` in one atomic step, if `presented`
    /// is live and its session may still be renewed at `now` (not ended, before its
    /// absolute end, used within `idle_secs`, user enabled).
    async fn rotate_refresh(
        &self,
        presented: RefreshHash,
        successor: RefreshHash,
        now: i64,
        idle_secs: i64,
    ) -> Result<Rotation, StoreError>;

    /// Ends a session of `user`; false when it was not open.
    async fn end_session(
        &self,
        session: &SessionId,
        user: &UserId,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Ends every open session of `user` except `keep`; how many were ended.
    async fn end_user_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError>;

    /// Whether the session is open and its user enabled.
    async fn session_is_open(
        &self,
        session: &SessionId,
        user: &UserId,
        now: i64,
    ) -> Result<bool, StoreError>;

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
}

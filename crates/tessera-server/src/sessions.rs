//! The life of a session: sign-up, login with the password grant (which opens a session
//! and its first refresh token), renewal with the refresh grant (which rotates the
//! refresh token in one atomic step), and logout. Handlers call these; they own no HTTP.

use aws_lc_rs::rand;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tessera_token::Secret;

use crate::clock;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{
    NewSession, NewUser, RefreshHash, Rotation, SessionId, StoreError, User, UserId,
};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes: enough for any passphrase, bounded for hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest username accepted, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// The one answer for every failed login, whatever failed (RFC 6749 §5.2).
const BAD_CREDENTIALS: &str = "invalid username or password";
/// The one answer for every refused refresh token.
const BAD_REFRESH: &str = "the refresh token is invalid, expired or already used; log in again";

/// A successful grant (RFC 6749 §5.1).
#[derive(Serialize)]
pub struct TokenResponse {
    /// The signed access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The single-use refresh token.
    pub refresh_token: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Where a login comes from, recorded on its session.
#[derive(Debug, Default, Clone)]
pub struct ClientLabel {
    /// `client_id` sent by the client.
    pub client_id: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// Creates a user after checking the username and password rules.
pub async fn sign_up(
    state: &AppState,
    username: &str,
    password: Secret<String>,
) -> Result<User, ApiError> {
    let username = normalize_username(username)?;
    check_password(password.expose())?;
    let password_hash = state.passwords.hash(password).await?;
    let user = User {
        id: UserId(uuid::Uuid::new_v4().to_string()),
        username: username.to_owned(),
        created_at: clock::now(),
    };
    let new = NewUser {
        user: user.clone(),
        username_key: username_key(username),
        password_hash,
    };
    match state.store.create_user(new).await {
        Ok(()) => Ok(user),
        Err(StoreError::Conflict) => Err(ApiError::UsernameTaken),
        Err(error) => Err(error.into()),
    }
}

/// The password grant: checks the credentials and opens a session.
pub async fn log_in(
    state: &AppState,
    username: &str,
    password: Secret<String>,
    label: ClientLabel,
) -> Result<TokenResponse, ApiError> {
    // The same work and the same answer whether the user is unknown, disabled or gave
    // a wrong password, so the answer tells nothing about which (no enumeration).
    // Limitation: nothing throttles guessing yet beyond the cost of each hash.
    // Per-account and per-IP limits checked before hashing would remove it.
    let key = username_key(username.trim());
    let credentials = if key.is_empty() {
        None
    } else {
        state.store.credentials(&key).await?
    };
    let hash = credentials
        .as_ref()
        .map(|found| found.password_hash.clone());
    let matches = state.passwords.verify(password, hash).await?;
    let Some(credentials) = credentials.filter(|found| matches && !found.disabled) else {
        tracing::debug!(reason = "bad_credentials", "login refused");
        return Err(ApiError::InvalidGrant(BAD_CREDENTIALS));
    };

    let now = clock::now();
    let (refresh_token, refresh_hash) = new_refresh_token()?;
    let session = NewSession {
        id: SessionId(uuid::Uuid::new_v4().to_string()),
        user_id: credentials.user.id.clone(),
        client_id: label.client_id,
        user_agent: label.user_agent,
        created_at: now,
        expires_at: now.saturating_add(secs(state.config.session_lifetime)),
    };
    let session_id = session.id.clone();
    state.store.open_session(session, refresh_hash).await?;
    tracing::info!(user = %credentials.user.id.0, session = %session_id.0, "login");
    token_response(state, &credentials.user.id, &session_id, refresh_token, now)
}

/// The refresh grant: spends the presented token and returns its successor.
pub async fn renew(
    state: &AppState,
    presented: &Secret<String>,
) -> Result<TokenResponse, ApiError> {
    let Some(presented_hash) = refresh_hash(presented.expose()) else {
        tracing::debug!(reason = "malformed", "refresh refused");
        return Err(ApiError::InvalidGrant(BAD_REFRESH));
    };
    let now = clock::now();
    let (refresh_token, successor) = new_refresh_token()?;
    let idle = secs(state.config.session_idle_timeout);
    match state
        .store
        .rotate_refresh(presented_hash, successor, now, idle)
        .await?
    {
        Rotation::Rotated { session, user } => {
            tracing::info!(user = %user.0, session = %session.0, "refresh");
            token_response(state, &user, &session, refresh_token, now)
        }
        // Limitation: a spent token is refused but its session lives on, and two
        // clients racing with one token get one success and one refusal. A grace
        // window that returns the same successor, with reuse after it ending the
        // session, would remove both.
        Rotation::Refused => {
            tracing::debug!(reason = "not_live", "refresh refused");
            Err(ApiError::InvalidGrant(BAD_REFRESH))
        }
    }
}

/// Which sessions a logout ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    /// The caller's session.
    This,
    /// Every session of the caller.
    Global,
    /// Every session of the caller but this one.
    Others,
}

/// Ends sessions of `user` as `scope` says.
pub async fn log_out(
    state: &AppState,
    user: &UserId,
    session: &SessionId,
    scope: LogoutScope,
) -> Result<(), ApiError> {
    let now = clock::now();
    let ended = match scope {
        LogoutScope::This => u64::from(
            state
                .store
                .end_session(session, user, "logout", now)
                .await?,
        ),
        LogoutScope::Global => {
            state
                .store
                .end_user_sessions(user, None, "logout_global", now)
                .await?
        }
        LogoutScope::Others => {
            state
                .store
                .end_user_sessions(user, Some(session), "logout_others", now)
                .await?
        }
    };
    tracing::info!(user = %user.0, ended, ?scope, "logout");
    Ok(())
}

fn token_response(
    state: &AppState,
    user: &UserId,
    session: &SessionId,
    refresh_token: Secret<String>,
    now: i64,
) -> Result<TokenResponse, ApiError> {
    let ttl = state.config.access_ttl.as_secs();
    let issued = state
        .keys
        .issuer()
        .issue(
            &user.0,
            &session.0,
            now,
            i64::try_from(ttl).unwrap_or(i64::MAX),
        )
        .map_err(|error| ApiError::Internal(error.into()))?;
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token: refresh_token.expose().clone(),
    })
}

/// 256 random bits, base64url: the token handed out, and the hash that is stored.
fn new_refresh_token() -> Result<(Secret<String>, RefreshHash), ApiError> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).map_err(|_| ApiError::Internal(anyhow::anyhow!("no randomness")))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = RefreshHash(Sha256::digest(token.as_bytes()).into());
    Ok((Secret::new(token), hash))
}

/// The stored hash of a presented refresh token, or `None` when it cannot be one of
/// ours (an access token, a truncated copy): refused without a database read.
fn refresh_hash(token: &str) -> Option<RefreshHash> {
    let decoded = URL_SAFE_NO_PAD.decode(token).ok()?;
    (decoded.len() == 32).then(|| RefreshHash(Sha256::digest(token.as_bytes()).into()))
}

fn secs(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The key that makes usernames unique regardless of case.
fn username_key(username: &str) -> String {
    username.to_lowercase()
}

fn normalize_username(username: &str) -> Result<&str, ApiError> {
    let trimmed = username.trim();
    let length = trimmed.chars().count();
    if length == 0 || length > MAX_USERNAME_CHARS {
        return Err(ApiError::Validation(format!(
            "username must be 1 to {MAX_USERNAME_CHARS} characters"
        )));
    }
    if trimmed.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(ApiError::Validation(
            "username must not contain control or invisible characters".to_owned(),
        ));
    }
    Ok(trimmed)
}

/// Characters that print as nothing or reorder text: they let `alice` and a look-alike
/// of it both exist (soft hyphen, zero-width and joiners, bidi controls, BOM).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
    )
}

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::Validation(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::Validation(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_and_compared_without_case() {
        assert_eq!(normalize_username("  Alice ").unwrap(), "Alice");
        assert_eq!(username_key("Alice"), username_key("aLICE"));
        assert!(normalize_username("   ").is_err());
        assert!(normalize_username("a\u{0}b").is_err());
        assert!(normalize_username("alice\u{200B}").is_err());
        assert!(normalize_username("\u{202E}ecila").is_err());
        assert!(normalize_username(&"x".repeat(65)).is_err());
    }

    #[test]
    fn passwords_shorter_than_eight_characters_are_refused() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn only_strings_shaped_like_our_refresh_tokens_are_looked_up() {
        let (token, hash) = new_refresh_token().unwrap();

        assert_eq!(refresh_hash(token.expose()), Some(hash));
        assert_eq!(refresh_hash("eyJhbGciOiJFZERTQSJ9.e30.c2ln"), None);
        assert_eq!(refresh_hash(&token.expose()[..42]), None);
        assert_eq!(refresh_hash(""), None);
    }
}

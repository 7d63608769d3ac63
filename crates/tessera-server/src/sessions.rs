//! The life of a session: sign-up, login with the password grant (which opens a session
//! and its first refresh token), renewal with the refresh grant (which rotates the
//! refresh token in one atomic step), and logout. Handlers call these; they own no HTTP.

use aws_lc_rs::rand;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tessera_token::Secret;

use crate::audit::{self, Subject};
use crate::clock;
use crate::error::ApiError;
use crate::origin::Origin;
use crate::passwords::Passwords;
use crate::state::AppState;
use crate::store::{
    NewSession, NewUser, RefreshHash, RefreshRecord, SessionId, Store, StoreError, User, UserId,
};
use crate::successor::{self, SuccessorPair};

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
/// The answer when a spent refresh token comes back after the grace window.
const REUSED_REFRESH: &str =
    "refresh token reuse detected: the session was ended for safety; log in again";

/// A successful grant (RFC 6749 §5.1).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The signed access token.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, pattern = "^Bearer$")]
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

/// How a client names itself at login, recorded on its session.
#[derive(Debug, Default, Clone)]
pub struct ClientLabel {
    /// `client_id` sent by the client.
    pub client_id: Option<String>,
}

/// Creates a user after checking the username and password rules.
pub async fn sign_up(
    state: &AppState,
    username: &str,
    password: Secret<String>,
) -> Result<User, ApiError> {
    create_user(state.store.as_ref(), &state.passwords, username, password).await
}

/// Creates a user in `store`: the rules and the hashing every way of adding a user
/// shares (sign-up, `tessera admin users create`).
pub(crate) async fn create_user(
    store: &dyn Store,
    passwords: &Passwords,
    username: &str,
    password: Secret<String>,
) -> Result<User, ApiError> {
    let username = normalize_username(username)?;
    check_password(password.expose())?;
    let password_hash = passwords
        .hash(password)
        .await
        .map_err(crate::error::from_password_error)?;
    let user = User {
        id: UserId(uuid::Uuid::new_v4().to_string()),
        username: username.to_owned(),
        created_at: clock::now(),
        roles: Vec::new(),
        disabled: false,
    };
    let new = NewUser {
        user: user.clone(),
        username_key: username_key(username),
        password_hash,
    };
    match store.create_user(new).await {
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
    origin: &Origin,
) -> Result<TokenResponse, ApiError> {
    // The same work and the same answer whether the user is unknown, disabled or gave
    // a wrong password, so the answer tells nothing about which (no enumeration).
    let key = username_key(username.trim());
    let ip = origin.ip_text();
    let throttle_ip = origin.ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    if let Err(throttled) = state.throttle.check(&key, throttle_ip).await {
        audit::record(state, "login_throttled", origin, Subject::default(), None).await;
        return Err(ApiError::Throttled(throttled.retry_after));
    }
    let credentials = if key.is_empty() {
        None
    } else {
        state.store.credentials(&key).await?
    };
    let hash = credentials
        .as_ref()
        .map(|found| found.password_hash.clone());
    let matches = match state.passwords.verify(password, hash).await {
        Ok(matches) => matches,
        Err(error) => {
            // No verdict: the attempt must not count against the pair.
            state.throttle.release(&key, throttle_ip).await;
            return Err(crate::error::from_password_error(error));
        }
    };
    let known_user = credentials.as_ref().map(|found| found.user.id.clone());
    let Some(credentials) = credentials.filter(|found| matches && !found.user.disabled) else {
        state.throttle.record_failure(&key, throttle_ip).await;
        // For the audit trail only: which account was tried, when it exists.
        let subject = Subject {
            user: known_user.as_ref(),
            session: None,
        };
        audit::record(state, "login_failed", origin, subject, None).await;
        return Err(ApiError::InvalidGrant(BAD_CREDENTIALS));
    };
    state.throttle.record_success(&key, throttle_ip).await;

    let now = clock::now();
    let (refresh_token, refresh_hash) = new_refresh_token()?;
    let session = NewSession {
        id: SessionId(uuid::Uuid::new_v4().to_string()),
        user_id: credentials.user.id.clone(),
        client_id: label.client_id,
        user_agent: origin.user_agent.clone(),
        ip: ip.clone(),
        created_at: now,
        expires_at: now.saturating_add(secs(state.config.session_lifetime)),
    };
    let session_id = session.id.clone();
    let expires_at = session.expires_at;
    if !state
        .store
        .open_session(session, refresh_hash, &credentials.password_hash)
        .await?
    {
        // The password changed or the user was disabled while the hash was checked.
        tracing::debug!(reason = "credentials_changed", "login refused");
        return Err(ApiError::InvalidGrant(BAD_CREDENTIALS));
    }
    crate::request_trace::record_user(&credentials.user.id.0);
    let subject = Subject::of(&credentials.user.id, &session_id);
    audit::record(state, "login_succeeded", origin, subject, None).await;
    let user = &credentials.user;
    let (access_token, access_expires_at) =
        mint_access(state, &user.id, &session_id, &user.roles, now, expires_at)?;
    Ok(token_response(
        access_token,
        refresh_token.expose().clone(),
        access_expires_at - now,
    ))
}

/// The refresh grant: spends the presented token and returns its successor. Inside the
/// grace window a spent token gets the very same successor pair; after it, presenting
/// a spent token ends its session (reuse detection, RFC 9700 §4.14.2).
pub async fn renew(
    state: &AppState,
    presented: &Secret<String>,
    origin: &Origin,
) -> Result<TokenResponse, ApiError> {
    let Some(presented_hash) = refresh_hash(presented.expose()) else {
        tracing::debug!(reason = "malformed", "refresh refused");
        return Err(ApiError::InvalidGrant(BAD_REFRESH));
    };
    let idle = secs(state.config.session_idle_timeout);
    // Two rounds at most: losing the race to spend the token sends us back to read
    // the winner's sealed successor.
    for _ in 0..2 {
        let now = clock::now();
        let Some(record) = state
            .store
            .refresh_record(presented_hash, now, idle)
            .await?
        else {
            tracing::debug!(reason = "unknown", "refresh refused");
            return Err(ApiError::InvalidGrant(BAD_REFRESH));
        };
        if !record.session_live {
            tracing::debug!(reason = "session_over", "refresh refused");
            return Err(ApiError::InvalidGrant(BAD_REFRESH));
        }
        let Some(spent_at) = record.spent_at else {
            let (refresh_token, successor) = new_refresh_token()?;
            let (access_token, expires_at) = mint_access(
                state,
                &record.user,
                &record.session,
                &record.roles,
                now,
                record.session_expires_at,
            )?;
            let pair = SuccessorPair {
                access_token,
                refresh_token: refresh_token.expose().clone(),
                expires_at,
            };
            let sealed = successor::seal(presented.expose(), &pair)?;
            let subject = Subject::of(&record.user, &record.session);
            let event = audit::event("refresh", origin, subject, None);
            if state
                .store
                .spend_refresh(presented_hash, successor, &sealed, now, &event)
                .await?
            {
                crate::request_trace::record_user(&record.user.0);
                audit::announce(state, &event);
                return Ok(token_response(
                    pair.access_token,
                    pair.refresh_token,
                    expires_at - now,
                ));
            }
            continue;
        };
        if let Some(pair) = replay(state, presented, &record, spent_at, now, idle).await? {
            crate::request_trace::record_user(&record.user.0);
            tracing::debug!(session = %record.session.0, "refresh replayed in grace window");
            return Ok(token_response(
                pair.access_token,
                pair.refresh_token,
                (pair.expires_at - now).max(0),
            ));
        }
        return Err(reuse_detected(state, &record, origin).await);
    }
    Err(ApiError::Unavailable)
}

/// The successor pair of a token spent inside the grace window, if its successor has
/// not been spent in turn (a grandparent replayed is reuse, not a retry).
async fn replay(
    state: &AppState,
    presented: &Secret<String>,
    record: &RefreshRecord,
    spent_at: i64,
    now: i64,
    idle: i64,
) -> Result<Option<SuccessorPair>, ApiError> {
    let grace = secs(state.config.refresh_grace);
    if grace == 0 || now.saturating_sub(spent_at) > grace {
        return Ok(None);
    }
    let (Some(successor), Some(sealed)) = (record.successor, &record.successor_sealed) else {
        return Ok(None);
    };
    let successor_unspent = state
        .store
        .refresh_record(successor, now, idle)
        .await?
        .is_some_and(|next| next.spent_at.is_none());
    if !successor_unspent {
        return Ok(None);
    }
    Ok(successor::open(presented.expose(), sealed))
}

/// Ends the session of a reused token and says so.
async fn reuse_detected(state: &AppState, record: &RefreshRecord, origin: &Origin) -> ApiError {
    let now = clock::now();
    let ended = match state
        .store
        .end_session(&record.session, &record.user, "refresh_reuse", now)
        .await
    {
        Ok(ended) => ended,
        Err(error) => return error.into(),
    };
    if ended {
        state.revocations.insert([(&record.session, now)]);
    }
    let subject = Subject::of(&record.user, &record.session);
    audit::record(state, "refresh_reuse_detected", origin, subject, None).await;
    ApiError::InvalidGrant(REUSED_REFRESH)
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

impl LogoutScope {
    /// The scope named by a logout's `scope` query parameter.
    pub(crate) fn from_query(scope: Option<&str>) -> Result<Self, ApiError> {
        match scope {
            None | Some("local") => Ok(Self::This),
            Some("global") => Ok(Self::Global),
            Some("others") => Ok(Self::Others),
            Some(_) => Err(ApiError::InvalidRequest(
                "scope must be local, global or others".to_owned(),
            )),
        }
    }
}

/// Ends sessions of `user` as `scope` says.
pub async fn log_out(
    state: &AppState,
    user: &UserId,
    session: &SessionId,
    scope: LogoutScope,
    origin: &Origin,
) -> Result<(), ApiError> {
    let ended = match scope {
        LogoutScope::This => {
            end_session(state, user, session, "logout", origin).await?;
            return Ok(());
        }
        LogoutScope::Global => ("logout_global", None),
        LogoutScope::Others => ("logout_others", Some(session)),
    };
    let (reason, keep) = ended;
    let now = clock::now();
    let ended = state
        .store
        .end_user_sessions(user, keep, reason, now)
        .await?;
    state
        .revocations
        .insert(ended.iter().map(|ended| (ended, now)));
    let detail = format!("sessions ended: {}", ended.len());
    let subject = Subject::of(user, session);
    audit::record(state, reason, origin, subject, Some(&detail)).await;
    Ok(())
}

/// Ends one session of `user`; false when it was not open (or not theirs).
pub async fn end_session(
    state: &AppState,
    user: &UserId,
    session: &SessionId,
    reason: &str,
    origin: &Origin,
) -> Result<bool, ApiError> {
    let now = clock::now();
    let ended = state.store.end_session(session, user, reason, now).await?;
    if ended {
        state.revocations.insert([(session, now)]);
        let subject = Subject::of(user, session);
        audit::record(state, reason, origin, subject, None).await;
    }
    Ok(ended)
}

/// Changes the caller's password after checking the current one, and ends every other
/// session of theirs in the same step.
pub async fn change_password(
    state: &AppState,
    user: &UserId,
    session: &SessionId,
    current: Secret<String>,
    new: Secret<String>,
    origin: &Origin,
) -> Result<(), ApiError> {
    check_password(new.expose())?;
    let throttle_ip = origin.ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let credentials = state
        .store
        .credentials_by_id(user)
        .await?
        .ok_or(ApiError::InvalidToken)?;
    let key = username_key(&credentials.user.username);
    if let Err(throttled) = state.throttle.check(&key, throttle_ip).await {
        return Err(ApiError::Throttled(throttled.retry_after));
    }
    let matches = match state
        .passwords
        .verify(current, Some(credentials.password_hash))
        .await
    {
        Ok(matches) => matches,
        Err(error) => {
            state.throttle.release(&key, throttle_ip).await;
            return Err(crate::error::from_password_error(error));
        }
    };
    if !matches {
        state.throttle.record_failure(&key, throttle_ip).await;
        return Err(ApiError::Validation(
            "the current password is not correct".to_owned(),
        ));
    }
    state.throttle.record_success(&key, throttle_ip).await;
    let hash = state
        .passwords
        .hash(new)
        .await
        .map_err(crate::error::from_password_error)?;
    let now = clock::now();
    let ended = state
        .store
        .set_password(user, &hash, Some(session), now)
        .await?;
    state
        .revocations
        .insert(ended.iter().map(|ended| (ended, now)));
    let detail = format!("other sessions ended: {}", ended.len());
    let subject = Subject::of(user, session);
    audit::record(state, "password_changed", origin, subject, Some(&detail)).await;
    Ok(())
}

/// Signs an access token that expires with its session at the latest; the token and
/// its expiry.
fn mint_access(
    state: &AppState,
    user: &UserId,
    session: &SessionId,
    roles: &[String],
    now: i64,
    session_expires_at: i64,
) -> Result<(String, i64), ApiError> {
    let ttl = secs(state.config.access_ttl).min(session_expires_at.saturating_sub(now));
    let issued = state
        .keys
        .issuer()
        .issue_with_roles(&user.0, &session.0, roles, now, ttl.max(1))
        .map_err(|error| ApiError::Internal(error.into()))?;
    Ok((issued.token, issued.claims.exp))
}

fn token_response(access_token: String, refresh_token: String, expires_in: i64) -> TokenResponse {
    TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: u64::try_from(expires_in).unwrap_or(0),
        refresh_token,
    }
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
pub(crate) fn refresh_hash(token: &str) -> Option<RefreshHash> {
    let decoded = URL_SAFE_NO_PAD.decode(token).ok()?;
    (decoded.len() == 32).then(|| RefreshHash(Sha256::digest(token.as_bytes()).into()))
}

fn secs(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The key that makes usernames unique regardless of case.
pub(crate) fn username_key(username: &str) -> String {
    username.to_lowercase()
}

pub(crate) fn normalize_username(username: &str) -> Result<&str, ApiError> {
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

pub(crate) fn check_password(password: &str) -> Result<(), ApiError> {
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

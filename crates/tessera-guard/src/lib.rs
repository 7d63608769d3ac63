//! Validation of Tessera access tokens for resource servers: step 5 of the loop. A
//! [`Guard`] reads the bearer token of a request, validates it with
//! [`tessera_token::Validator`], and refuses with RFC 6750 answers. [`Identity`] is the
//! axum extractor for handlers that need a caller; [`Identity::require_role`] and
//! [`Identity::require_scope`] answer 403 `insufficient_scope` for callers whose valid
//! token lacks what a route needs.
//!
//! A resource server apart from the issuer keeps its guard current with two background
//! tasks:
//!
//! - [`RemoteKeys`] fetches the issuer's JWKS (through discovery or a configured URL),
//!   refreshes it as `Cache-Control: max-age` says (between 30 s and 1 h, 5 min when
//!   absent), and looks again when a token names an unknown `kid` (one fetch shared by
//!   all waiting requests, at most one per 10 s). While the issuer is unreachable the
//!   keys already fetched stay trusted.
//! - [`RevocationFeed`] follows the issuer's stream of ended sessions (server-sent
//!   events; polling every second when the stream cannot be opened), and the guard
//!   refuses tokens of those sessions ([`Refusal::SessionEnded`], still a 401), without
//!   a request per token. **If the feed is unreachable, a warning is logged once per outage and tokens of
//!   sessions ended meanwhile stay valid until they expire**: revocation is prompt
//!   while the feed is up, and bounded by the access-token lifetime otherwise.
//!
//! `examples/protected_service.rs` shows both wired into an axum service. The smallest
//! use, with keys held locally:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tessera_guard::{Guard, Identity};
//! use tessera_token::{KeySet, SigningKey, Validator, ValidatorConfig};
//!
//! async fn whoami(Identity(claims): Identity) -> String {
//!     claims.sub
//! }
//!
//! # fn build() -> Result<Router, Box<dyn std::error::Error>> {
//! let keys = KeySet::new(vec![SigningKey::generate(tessera_token::KeyAlgorithm::EdDSA)?.verifying_key()]);
//! let validator = Validator::new(keys, ValidatorConfig::new("https://auth.example", "tessera"))?;
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .with_state(Guard::new(validator));
//! # Ok(app) }
//! ```
#![deny(missing_docs)]

mod authorize;
mod ended_sessions;
mod layer;
mod remote;
mod remote_keys;
#[cfg(test)]
mod remote_tests;
mod revocation_feed;
mod sse;

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_token::{AccessClaims, KeySet, TokenError, Validator, read_compact};

pub use authorize::{INSUFFICIENT_SCOPE_CHALLENGE, InsufficientScope};
use ended_sessions::EndedSessions;
pub use layer::{GuardLayer, GuardService};
pub use remote::RemoteError;
pub use remote_keys::{
    DEFAULT_KEYS_MAX_AGE, MAX_KEYS_MAX_AGE, MIN_KEYS_MAX_AGE, MIN_REFETCH_INTERVAL, RemoteKeys,
};
pub use revocation_feed::{
    DEFAULT_POLL_INTERVAL, MAX_ENDED_SESSIONS, REVOCATION_STREAM_PATH, REVOCATIONS_PATH,
    RevocationFeed,
};

/// The `WWW-Authenticate` value for every refused token (RFC 6750 §3).
pub const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer error="invalid_token""#;

/// Checks the bearer token of requests against a validator. Clones share one key set,
/// which [`Guard::replace_keys`] swaps without blocking requests in flight, and one set
/// of ended sessions, which a [`RevocationFeed`] fills.
#[derive(Debug, Clone)]
pub struct Guard {
    validator: Arc<ArcSwap<Validator>>,
    ended: EndedSessions,
    /// Set once by [`RemoteKeys::attach`], so that [`Guard::check_async`] can ask for
    /// the issuer's new keys when a token names an unknown `kid`.
    remote_keys: Arc<OnceLock<RemoteKeys>>,
}

impl Guard {
    /// A guard that trusts what `validator` trusts.
    pub fn new(validator: Validator) -> Self {
        Self {
            validator: Arc::new(ArcSwap::from_pointee(validator)),
            ended: EndedSessions::default(),
            remote_keys: Arc::new(OnceLock::new()),
        }
    }

    /// Trusts exactly `keys` from now on (after a key rotation, say).
    pub fn replace_keys(&self, keys: KeySet) {
        let next = self.validator.load().with_keys(keys);
        self.validator.store(Arc::new(next));
    }

    /// Validates the bearer token in `headers` at the current time.
    pub fn check(&self, headers: &HeaderMap) -> Result<AccessClaims, Refusal> {
        let token = bearer_token(headers).inspect_err(|refusal| {
            tracing::debug!(reason = refusal.code(), "access token refused");
        })?;
        self.check_token(token)
    }

    /// Validates a token already taken from a request.
    pub fn check_token(&self, token: &str) -> Result<AccessClaims, Refusal> {
        let claims = self
            .validator
            .load()
            .validate(token, unix_now())
            .map_err(|reason| {
                let (kid, jti) = unverified_ids(token);
                tracing::debug!(
                    reason = reason.code(),
                    kid = kid.as_deref(),
                    jti = jti.as_deref(),
                    "access token refused"
                );
                Refusal::Invalid(reason)
            })?;
        if self.ended.contains(&claims.sid) {
            tracing::debug!(
                reason = Refusal::SessionEnded.code(),
                jti = claims.jti.as_str(),
                "access token refused"
            );
            return Err(Refusal::SessionEnded);
        }
        Ok(claims)
    }

    /// Like [`Guard::check`], and when the token names a key this guard does not know,
    /// asks the attached [`RemoteKeys`] for the issuer's current keys (at most one fetch
    /// shared by every waiting request, at most one per [`MIN_REFETCH_INTERVAL`]) and
    /// checks once more.
    pub async fn check_async(&self, headers: &HeaderMap) -> Result<AccessClaims, Refusal> {
        let token = bearer_token(headers).inspect_err(|refusal| {
            tracing::debug!(reason = refusal.code(), "access token refused");
        })?;
        self.check_token_async(token).await
    }

    /// Like [`Guard::check_token`], with the unknown-key refetch of
    /// [`Guard::check_async`].
    pub async fn check_token_async(&self, token: &str) -> Result<AccessClaims, Refusal> {
        match self.check_token(token) {
            Err(Refusal::Invalid(TokenError::UnknownKey)) => {
                let Some(remote_keys) = self.remote_keys.get() else {
                    return Err(Refusal::Invalid(TokenError::UnknownKey));
                };
                if remote_keys.refetch_for_unknown_key(self).await {
                    self.check_token(token)
                } else {
                    Err(Refusal::Invalid(TokenError::UnknownKey))
                }
            }
            other => other,
        }
    }

    /// The ended sessions this guard refuses, shared by its clones.
    pub(crate) fn ended_sessions(&self) -> &EndedSessions {
        &self.ended
    }

    /// Remembers `remote_keys` for [`Guard::check_async`]; a second call is ignored.
    pub(crate) fn set_remote_keys(&self, remote_keys: RemoteKeys) -> bool {
        self.remote_keys.set(remote_keys).is_ok()
    }
}

/// Why a request was refused. Every variant answers 401 with the same body and
/// challenge, so a caller learns nothing about which check failed; the reason is for
/// logs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// The header is there but is not a single well-formed bearer credential.
    #[error("malformed authorization header")]
    MalformedHeader,
    /// The token failed validation.
    #[error("{0}")]
    Invalid(TokenError),
    /// The token is valid, but the issuer's revocation feed says its session has ended.
    #[error("the session of this token has ended")]
    SessionEnded,
}

impl Refusal {
    /// A short reason code for logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MalformedHeader => "malformed_header",
            Self::Invalid(error) => error.code(),
            Self::SessionEnded => "session_ended",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        invalid_token_response()
    }
}

/// Longest `kid` or `jti` copied into a log line: they are unverified input.
const MAX_LOGGED_ID_CHARS: usize = 64;

/// The `kid` and `jti` of a refused token, for logs only: never trusted, never the
/// token itself, and cut short.
fn unverified_ids(token: &str) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Ids {
        jti: Option<String>,
    }
    let Ok(jws) = read_compact(token, tessera_token::DEFAULT_MAX_TOKEN_BYTES) else {
        return (None, None);
    };
    let short = |id: String| id.chars().take(MAX_LOGGED_ID_CHARS).collect::<String>();
    let jti = serde_json::from_slice::<Ids>(&jws.claims_json)
        .ok()
        .and_then(|ids| ids.jti);
    (jws.header.kid.map(short), jti.map(short))
}

/// The `error_description` of every 401 answer: the same for every reason.
pub fn invalid_token_response_description() -> &'static str {
    "the access token is missing, invalid or expired"
}

/// The one 401 answer for a missing or invalid token.
pub fn invalid_token_response() -> Response {
    let body = serde_json::json!({
        "error": "invalid_token",
        "error_description": invalid_token_response_description(),
    });
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(INVALID_TOKEN_CHALLENGE),
    );
    response
}

/// Takes the token from `Authorization: Bearer <token>` (RFC 6750 §2.1). The scheme is
/// case-insensitive (RFC 9110 §11.1); the credential must be one token68 value.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, Refusal> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(Refusal::Missing)?;
    if values.next().is_some() {
        return Err(Refusal::MalformedHeader);
    }
    let value = value.to_str().map_err(|_| Refusal::MalformedHeader)?;
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !is_token68(token) {
        return Err(Refusal::MalformedHeader);
    }
    Ok(token)
}

/// RFC 9110 §11.2 token68: URL-safe or standard base64 characters, then padding.
fn is_token68(value: &str) -> bool {
    let body = value.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte))
}

/// Seconds since the Unix epoch; a clock before 1970 reads as 0 and fails every token.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The validated claims of the caller. Extracting it refuses the request with 401 when
/// the token is missing or invalid; a token signed by a key the guard does not know yet
/// makes the attached [`RemoteKeys`], if any, look for it first. Behind a
/// [`GuardLayer`] the layer's verdict is reused, not computed again.
///
/// As `Option<Identity>` it is for routes open to anyone: a request without an
/// `Authorization` header gives `None`, and one with an invalid token is still refused
/// with 401, so a client whose token went bad hears so instead of being served as a
/// stranger.
#[derive(Debug, Clone)]
pub struct Identity(pub AccessClaims);

impl<S> FromRequestParts<S> for Identity
where
    Guard: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        if let Some(identity) = parts.extensions.get::<Identity>() {
            return Ok(identity.clone());
        }
        Guard::from_ref(state)
            .check_async(&parts.headers)
            .await
            .map(Identity)
    }
}

impl<S> OptionalFromRequestParts<S> for Identity
where
    Guard: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Refusal> {
        if parts.extensions.get::<Identity>().is_none()
            && !parts.headers.contains_key(AUTHORIZATION)
        {
            return Ok(None);
        }
        <Identity as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn bearer_scheme_is_read_in_any_case() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER abc.def.ghi",
        ] {
            assert_eq!(bearer_token(&headers(&[value])), Ok("abc.def.ghi"));
        }
    }

    #[test]
    fn other_schemes_and_odd_shapes_are_refused() {
        for value in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer  abc",
            "Bearerabc",
            "Bearer abc\"def",
        ] {
            assert_eq!(
                bearer_token(&headers(&[value])),
                Err(Refusal::MalformedHeader),
                "{value}"
            );
        }
        assert_eq!(bearer_token(&headers(&[])), Err(Refusal::Missing));
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(Refusal::MalformedHeader)
        );
    }

    #[test]
    fn refusals_answer_401_with_the_rfc_6750_challenge() {
        let response = Refusal::Invalid(TokenError::Expired).into_response();

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            INVALID_TOKEN_CHALLENGE
        );
    }
}

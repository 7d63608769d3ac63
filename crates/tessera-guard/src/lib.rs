//! Validation of Tessera access tokens for resource servers: step 5 of the loop. A
//! [`Guard`] reads the bearer token of a request, validates it with
//! [`tessera_token::Validator`], and refuses with RFC 6750 answers. [`Identity`] is the
//! axum extractor for handlers that need a caller.
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

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_token::{AccessClaims, KeySet, TokenError, Validator, read_compact};

/// The `WWW-Authenticate` value for every refused token (RFC 6750 §3).
pub const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer error="invalid_token""#;

/// Checks the bearer token of requests against a validator. Clones share one key set,
/// which [`Guard::replace_keys`] swaps without blocking requests in flight.
#[derive(Debug, Clone)]
pub struct Guard {
    validator: Arc<ArcSwap<Validator>>,
}

impl Guard {
    /// A guard that trusts what `validator` trusts.
    pub fn new(validator: Validator) -> Self {
        Self {
            validator: Arc::new(ArcSwap::from_pointee(validator)),
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
        self.validator
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
            })
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
}

impl Refusal {
    /// A short reason code for logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MalformedHeader => "malformed_header",
            Self::Invalid(error) => error.code(),
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
/// the token is missing or invalid.
#[derive(Debug, Clone)]
pub struct Identity(pub AccessClaims);

impl<S> FromRequestParts<S> for Identity
where
    Guard: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        Guard::from_ref(state).check(&parts.headers).map(Identity)
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

//! Validation of Tessera access tokens for resource servers: step 5 of the loop. A
//! [`Guard`] reads the bearer token of a request, validates it with
//! [`tessera_token::Validator`], and refuses with RFC 6750 answers. [`Identity`] is the
//! axum extractor for handlers that need a caller; [`Identity::require_role`] and
//! [`Identity::require_scope`] answer 403 `insufficient_scope` for callers whose valid
//! token lacks what a route needs.
//!
//! A client sends the same access token until it renews it, so the guard remembers the
//! tokens it has verified (at most [`DEFAULT_TOKEN_CACHE_CAPACITY`], each up to
//! [`MAX_CACHED_TOKEN_BYTES`]), keyed by the whole token string: a repeated token skips
//! the signature check, nearly all the cost of a check. Its expiry and not-before time
//! and its session are still checked on every request, and a key leaving the trusted set
//! empties the cache. [`Guard::with_token_cache`] sets another size, or none.
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
mod verified_tokens;

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_token::{AccessClaims, KeySet, TokenError, Validator, VerifyingKey, read_compact};

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
use verified_tokens::VerifiedTokens;
pub use verified_tokens::{DEFAULT_TOKEN_CACHE_CAPACITY, MAX_CACHED_TOKEN_BYTES};

/// The `WWW-Authenticate` value for every refused token (RFC 6750 §3).
pub const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer error="invalid_token""#;

/// Checks the bearer token of requests against a validator. Clones share one key set,
/// which [`Guard::replace_keys`] swaps without blocking requests in flight, one set of
/// ended sessions, which a [`RevocationFeed`] fills, and one cache of verified tokens.
///
/// The cache lets a token seen before skip its signature check (nearly all the cost of
/// a check); its expiry, not-before time and session are still checked on every
/// request, and a key leaving the trusted set empties it.
#[derive(Debug, Clone)]
pub struct Guard {
    checker: Arc<ArcSwap<Checker>>,
    ended: EndedSessions,
    /// Set once by [`RemoteKeys::attach`], so that [`Guard::check_async`] can ask for
    /// the issuer's new keys when a token names an unknown `kid`.
    remote_keys: Arc<OnceLock<RemoteKeys>>,
}

/// A validator and the cache of tokens it has verified, swapped together so that a
/// token verified under one key set is never served from the cache under another that
/// lacks its key.
#[derive(Debug)]
struct Checker {
    validator: Validator,
    verified: Arc<VerifiedTokens>,
}

impl Guard {
    /// A guard that trusts what `validator` trusts, with a cache of
    /// [`DEFAULT_TOKEN_CACHE_CAPACITY`] verified tokens.
    pub fn new(validator: Validator) -> Self {
        Self::with_token_cache(validator, DEFAULT_TOKEN_CACHE_CAPACITY)
    }

    /// A guard with a cache of at most `capacity` verified tokens; 0 turns the cache
    /// off, so that every request pays for its signature check.
    pub fn with_token_cache(validator: Validator, capacity: usize) -> Self {
        let checker = Checker {
            validator,
            verified: Arc::new(VerifiedTokens::new(capacity)),
        };
        Self {
            checker: Arc::new(ArcSwap::from_pointee(checker)),
            ended: EndedSessions::default(),
            remote_keys: Arc::new(OnceLock::new()),
        }
    }

    /// Trusts exactly `keys` from now on (after a key rotation, say). The cache of
    /// verified tokens is kept only when every key trusted so far is still trusted, as
    /// it was: otherwise a token signed by a removed key could still be served from it.
    pub fn replace_keys(&self, keys: KeySet) {
        let current = self.checker.load();
        let verified = if keeps_every_key(current.validator.keys(), &keys) {
            Arc::clone(&current.verified)
        } else {
            Arc::new(current.verified.emptied())
        };
        let next = Checker {
            validator: current.validator.with_keys(keys),
            verified,
        };
        self.checker.store(Arc::new(next));
    }

    /// Validates the bearer token in `headers` at the current time.
    pub fn check(&self, headers: &HeaderMap) -> Result<AccessClaims, Refusal> {
        let log = |refusal: &Refusal| {
            tracing::debug!(reason = refusal.code(), "access token refused");
        };
        let credential = bearer_credential(headers).inspect_err(log)?;
        let now = unix_now();
        // A credential equal to a token verified before needs no second look at its
        // characters: it is that token.
        if let Some(checked) = self.check_cached(credential, now) {
            return checked;
        }
        let token = token68(credential).inspect_err(log)?;
        self.validate_at(token, now)
    }

    /// Validates a token already taken from a request.
    pub fn check_token(&self, token: &str) -> Result<AccessClaims, Refusal> {
        self.check_token_at(token, unix_now())
    }

    fn check_token_at(&self, token: &str, now: i64) -> Result<AccessClaims, Refusal> {
        self.check_cached(token.as_bytes(), now)
            .unwrap_or_else(|| self.validate_at(token, now))
    }

    /// The verdict on `token` if it was verified before: signature and shape were
    /// checked then; the clock rules depend on `now` and sessions end at any moment,
    /// so those run again. `None` when it is not in the cache.
    fn check_cached(&self, token: &[u8], now: i64) -> Option<Result<AccessClaims, Refusal>> {
        let checker = self.checker.load();
        let claims = checker.verified.get(token)?;
        Some(
            match checker.validator.check_claims(&claims, now) {
                Ok(()) => Ok(claims),
                // Only verified tokens are cached, so this one is text.
                Err(reason) => Err(refused(std::str::from_utf8(token).unwrap_or(""), reason)),
            }
            .and_then(|claims| self.admit(claims)),
        )
    }

    /// Validates `token` in full and caches it when it passes.
    fn validate_at(&self, token: &str, now: i64) -> Result<AccessClaims, Refusal> {
        let checker = self.checker.load();
        let claims = checker
            .validator
            .validate(token, now)
            .map_err(|reason| refused(token, reason))?;
        checker.verified.insert(token, &claims, now);
        self.admit(claims)
    }

    /// Valid claims pass unless their session has ended: consulted on every request,
    /// cached token or not, since a session can end at any moment.
    fn admit(&self, claims: AccessClaims) -> Result<AccessClaims, Refusal> {
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

/// Whether every key of `old` is in `new` with the same algorithm and public key, so
/// that whatever `old` verified, `new` verifies too. A secret HS256 key has no public
/// form to compare and never counts as kept.
fn keeps_every_key(old: &KeySet, new: &KeySet) -> bool {
    let public = |key: &VerifyingKey| key.to_jwk().map(|jwk| (key.algorithm(), jwk));
    old.keys().iter().all(|key| {
        let Some(kept) = public(key) else {
            return false;
        };
        new.find(key.kid())
            .and_then(public)
            .is_some_and(|found| found == kept)
    })
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
    token68(bearer_credential(headers)?)
}

/// What follows `Bearer ` in the one `Authorization` header, not yet checked.
fn bearer_credential(headers: &HeaderMap) -> Result<&[u8], Refusal> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(Refusal::Missing)?;
    if values.next().is_some() {
        return Err(Refusal::MalformedHeader);
    }
    // Read as bytes: the token68 check admits ASCII only, so the token is checked once
    // rather than again by `HeaderValue::to_str`.
    let value = value.as_bytes();
    let space = value
        .iter()
        .position(|&byte| byte == b' ')
        .ok_or(Refusal::MalformedHeader)?;
    let (scheme, credential) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Refusal::MalformedHeader);
    }
    Ok(credential)
}

/// `credential` as text when it is one token68 value.
fn token68(credential: &[u8]) -> Result<&str, Refusal> {
    if !is_token68(credential) {
        return Err(Refusal::MalformedHeader);
    }
    std::str::from_utf8(credential).map_err(|_| Refusal::MalformedHeader)
}

/// Logs why `token` was refused, naming its key and id as it claims them, and says so.
fn refused(token: &str, reason: TokenError) -> Refusal {
    let (kid, jti) = unverified_ids(token);
    tracing::debug!(
        reason = reason.code(),
        kid = kid.as_deref(),
        jti = jti.as_deref(),
        "access token refused"
    );
    Refusal::Invalid(reason)
}

/// RFC 9110 §11.2 token68: URL-safe or standard base64 characters, then padding.
fn is_token68(value: &[u8]) -> bool {
    let padding = value.iter().rev().take_while(|&&byte| byte == b'=').count();
    let body = &value[..value.len() - padding];
    // Every request's token is scanned: comparisons folded over every byte, without
    // stopping early, compile to vector instructions (a few per 32 bytes), where a
    // table lookup per byte costs several instructions a byte.
    !body.is_empty()
        && body.iter().fold(true, |all, &byte| {
            let letter = (byte | 0x20).wrapping_sub(b'a') < 26;
            let digit = byte.wrapping_sub(b'0') < 10;
            let mark = (byte == b'-') | (byte == b'.') | (byte == b'_') | (byte == b'~');
            let base64 = (byte == b'+') | (byte == b'/');
            all & (letter | digit | mark | base64)
        })
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
    fn token68_takes_exactly_its_characters_anywhere_in_a_long_token() {
        let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte);
        for byte in 0..=u8::MAX {
            // Both ends of the body and the middle of a vector-sized run.
            for position in [0, 31, 32, 250, 499] {
                let mut token = vec![b'a'; 500];
                token[position] = byte;
                // `=` is padding, taken at the end only.
                let padding = byte == b'=' && position == 499;
                assert_eq!(
                    is_token68(&token),
                    allowed(byte) || padding,
                    "{byte:#04x} at {position}"
                );
            }
        }
        assert!(is_token68(b"abc=="));
        assert!(!is_token68(b"=="));
        assert!(!is_token68(b"ab=c"));
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

    mod token_cache {
        use super::super::*;
        use tessera_token::{KeyAlgorithm, SigningKey, TokenIssuer, ValidatorConfig};

        const ISSUER: &str = "https://auth.example";
        const LEEWAY: i64 = 5;
        const NOW: i64 = 1_900_000_000;

        fn key() -> SigningKey {
            SigningKey::generate(KeyAlgorithm::EdDSA).unwrap()
        }

        fn token(key: &SigningKey, session: &str, ttl: i64) -> String {
            TokenIssuer::new(key.clone(), ISSUER, "tessera")
                .issue("user", session, NOW, ttl)
                .unwrap()
                .token
        }

        fn guard(keys: &[&SigningKey]) -> Guard {
            let mut config = ValidatorConfig::new(ISSUER, "tessera");
            config.leeway_secs = LEEWAY.unsigned_abs();
            Guard::new(Validator::new(key_set(keys), config).unwrap())
        }

        fn key_set(keys: &[&SigningKey]) -> KeySet {
            KeySet::new(keys.iter().map(|key| key.verifying_key()).collect())
        }

        fn cached(guard: &Guard) -> usize {
            guard.checker.load().verified.len()
        }

        #[test]
        fn a_repeated_token_skips_the_signature_check() {
            let key = key();
            let guard = guard(&[&key]);
            let valid = token(&key, "s1", 900);
            let claims = guard.check_token_at(&valid, NOW).unwrap();
            // A string that was never signed, planted in the cache: only a cache hit
            // can let it through.
            guard
                .checker
                .load()
                .verified
                .insert("planted.never.signed", &claims, NOW);

            let again = guard.check_token_at(&valid, NOW + 1);
            let planted = guard.check_token_at("planted.never.signed", NOW + 1);

            assert_eq!(again, Ok(claims.clone()));
            assert_eq!(planted, Ok(claims));
            assert_eq!(cached(&guard), 2);
        }

        #[test]
        fn a_cached_token_is_refused_once_it_expires() {
            let key = key();
            let guard = guard(&[&key]);
            let short = token(&key, "s1", 60);
            guard.check_token_at(&short, NOW).unwrap();

            let within_leeway = guard.check_token_at(&short, NOW + 60 + LEEWAY - 1);
            let past_leeway = guard.check_token_at(&short, NOW + 60 + LEEWAY);

            assert!(within_leeway.is_ok());
            assert_eq!(past_leeway, Err(Refusal::Invalid(TokenError::Expired)));
        }

        #[test]
        fn a_cached_token_is_refused_before_its_not_before_time() {
            let key = key();
            let guard = guard(&[&key]);
            let valid = token(&key, "s1", 900);
            guard.check_token_at(&valid, NOW).unwrap();

            let early = guard.check_token_at(&valid, NOW - LEEWAY - 1);

            assert_eq!(early, Err(Refusal::Invalid(TokenError::NotYetValid)));
        }

        #[test]
        fn a_cached_token_of_an_ended_session_is_refused() {
            let key = key();
            let guard = guard(&[&key]);
            let valid = token(&key, "s1", 900);
            guard.check_token_at(&valid, NOW).unwrap();

            guard
                .ended_sessions()
                .insert("s1".to_owned(), NOW + 900, 10);
            let after_end = guard.check_token_at(&valid, NOW + 1);

            assert_eq!(after_end, Err(Refusal::SessionEnded));
            assert_eq!(cached(&guard), 1, "the refusal came from a cache hit");
        }

        #[test]
        fn removing_a_key_empties_the_cache() {
            let (old, new) = (key(), key());
            let guard = guard(&[&old]);
            let signed_by_old = token(&old, "s1", 900);
            guard.check_token_at(&signed_by_old, NOW).unwrap();

            guard.replace_keys(key_set(&[&new]));
            let after_removal = guard.check_token_at(&signed_by_old, NOW + 1);

            assert_eq!(cached(&guard), 0);
            assert_eq!(after_removal, Err(Refusal::Invalid(TokenError::UnknownKey)));
        }

        #[test]
        fn a_key_replaced_under_the_same_kid_empties_the_cache() {
            let (old, other) = (key(), key());
            let guard = guard(&[&old]);
            let signed_by_old = token(&old, "s1", 900);
            guard.check_token_at(&signed_by_old, NOW).unwrap();
            let mut impostor = other.verifying_key().to_jwk().unwrap();
            impostor.kid = old.kid().to_owned();

            guard.replace_keys(KeySet::new(vec![
                VerifyingKey::from_jwk(&impostor).unwrap(),
            ]));
            let after = guard.check_token_at(&signed_by_old, NOW + 1);

            assert_eq!(cached(&guard), 0);
            assert_eq!(after, Err(Refusal::Invalid(TokenError::BadSignature)));
        }

        #[test]
        fn adding_a_key_keeps_the_cache() {
            let (old, new) = (key(), key());
            let guard = guard(&[&old]);
            guard.check_token_at(&token(&old, "s1", 900), NOW).unwrap();

            guard.replace_keys(key_set(&[&old, &new]));

            assert_eq!(cached(&guard), 1);
        }

        #[test]
        fn a_refused_token_is_not_cached() {
            let key = key();
            let guard = guard(&[&key]);
            let valid = token(&key, "s1", 900);
            let (signed, signature) = valid.rsplit_once('.').unwrap();
            let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
            let tampered = format!("{signed}.{flipped}{}", &signature[1..]);

            let refused = guard.check_token_at(&tampered, NOW);

            assert!(refused.is_err());
            assert_eq!(cached(&guard), 0);
        }

        #[test]
        fn a_guard_without_a_cache_checks_every_signature() {
            let key = key();
            let config = ValidatorConfig::new(ISSUER, "tessera");
            let validator = Validator::new(key_set(&[&key]), config).unwrap();
            let guard = Guard::with_token_cache(validator, 0);

            guard.check_token_at(&token(&key, "s1", 900), NOW).unwrap();

            assert_eq!(cached(&guard), 0);
        }
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

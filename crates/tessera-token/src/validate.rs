//! The validator behind every protected request. Order matters: the strict reader first
//! (no cryptography on malformed input), then the key chosen by `kid` among Tessera's
//! own keys, then `alg` compared byte for byte with that key's algorithm, then the
//! signature, and only then the claims.

use crate::{
    ACCESS_TOKEN_MEDIA_TYPE, ACCESS_TOKEN_TYPE, AccessClaims, DEFAULT_MAX_TOKEN_BYTES, KeyError,
    KeySet, TokenError, read_compact,
};

/// The largest clock-skew allowance Tessera accepts, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 30;

/// Bounds of a plausible timestamp: after 2001 and before the year 5000. Anything else
/// is a forged or corrupted claim, not clock skew.
const EARLIEST_TIMESTAMP: i64 = 1_000_000_000;
const LATEST_TIMESTAMP: i64 = 95_000_000_000;

/// What a validator requires of a token.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    /// The exact `iss` required.
    pub issuer: String,
    /// The audience `aud` must contain.
    pub audience: String,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`, at most [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
    /// Tokens longer than this are refused unread.
    pub max_token_bytes: usize,
}

impl ValidatorConfig {
    /// Defaults: 10 s leeway, 8 KiB tokens.
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway_secs: 10,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

/// Validates Tessera access tokens against a fixed key set.
#[derive(Debug, Clone)]
pub struct Validator {
    keys: KeySet,
    config: ValidatorConfig,
}

impl Validator {
    /// A validator for `keys`; refuses a leeway above [`MAX_LEEWAY_SECS`].
    pub fn new(keys: KeySet, config: ValidatorConfig) -> Result<Self, KeyError> {
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(KeyError::InvalidConfig(format!(
                "leeway {} s is above the maximum of {MAX_LEEWAY_SECS} s",
                config.leeway_secs
            )));
        }
        Ok(Self { keys, config })
    }

    /// The same checks against another key set (after a key rotation).
    pub fn with_keys(&self, keys: KeySet) -> Self {
        Self {
            keys,
            config: self.config.clone(),
        }
    }

    /// The keys this validator trusts.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The time, issuer and audience rules of [`Validator::validate`] alone, at time
    /// `now`, for claims this validator has already accepted: a cache of verified
    /// tokens skips the signature on a repeated token but must still refuse it once it
    /// expires.
    pub fn check_claims(&self, claims: &AccessClaims, now: i64) -> Result<(), TokenError> {
        self.check_times(claims, now)
    }

    /// Validates `token` at time `now` (seconds since the epoch) and returns its claims.
    pub fn validate(&self, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        let jws = read_compact(token, self.config.max_token_bytes)?;
        // RFC 9068 §4: `at+jwt`, or the same media type written in full (RFC 7515
        // §4.1.9 lets issuers omit `application/`), and nothing else.
        if !matches!(
            jws.header.typ.as_deref(),
            Some(ACCESS_TOKEN_TYPE | ACCESS_TOKEN_MEDIA_TYPE)
        ) {
            return Err(TokenError::WrongType);
        }
        let kid = jws.header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = self.keys.find(kid).ok_or(TokenError::UnknownKey)?;
        // RFC 7515 §4.1.1 names are case-sensitive: "none", "None" and every other
        // spelling that is not the key's own algorithm end here.
        if jws.header.alg != key.algorithm().jose_name() {
            return Err(TokenError::AlgorithmMismatch);
        }
        // The typed claims refuse unknown members, duplicates, wrong JSON types and a
        // missing `exp`, `nbf`, `iat`, `iss`, `aud`, `sub`, `jti` or `sid` before the
        // signature check spends any time on them.
        let claims = serde_json::from_slice::<AccessClaims>(&jws.claims_json)
            .map_err(|_| TokenError::InvalidClaims)?;

        // The signature over the header and claims exactly as sent (RFC 7515 §5.2),
        // with the key's own algorithm. The reader has already checked every segment
        // and parsed the claims above, so nothing is decoded a second time.
        // Limitation: ES256 accepts both s and n - s (RFC 7518 allows either), so one
        // claim set has two valid strings. Revocation works by session, so this grants
        // nothing; a low-s check here would remove it.
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        if !key.verify_signature(signing_input, signature) {
            return Err(TokenError::BadSignature);
        }
        self.check_times(&claims, now)?;
        Ok(claims)
    }

    fn check_times(&self, claims: &AccessClaims, now: i64) -> Result<(), TokenError> {
        let plausible = EARLIEST_TIMESTAMP..LATEST_TIMESTAMP;
        if ![claims.exp, claims.nbf, claims.iat]
            .iter()
            .all(|time| plausible.contains(time))
        {
            return Err(TokenError::InvalidClaims);
        }
        let leeway = i64::try_from(self.config.leeway_secs).unwrap_or(0);
        if now >= claims.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.iss != self.config.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !claims.aud.contains(&self.config.audience) {
            return Err(TokenError::WrongAudience);
        }
        Ok(())
    }
}

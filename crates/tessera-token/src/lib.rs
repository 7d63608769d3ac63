//! Tessera's access tokens, with no I/O and no HTTP: the claims Tessera issues, its
//! signing keys and their public JWKS form, the strict compact-JWS reader, and the
//! validator every protected route (and the guard library) relies on.
//!
//! The smallest working use: generate a key, issue a token, validate it.
//!
//! ```
//! use tessera_token::{
//!     AccessClaims, KeyAlgorithm, KeySet, SigningKey, TokenIssuer, Validator,
//!     ValidatorConfig,
//! };
//!
//! let key = SigningKey::generate(KeyAlgorithm::EdDSA)?;
//! let issuer = TokenIssuer::new(key.clone(), "https://auth.example", "tessera");
//! let now = 1_800_000_000;
//! let minted = issuer.issue("user-1", "session-1", now, 900)?;
//!
//! let keys = KeySet::new(vec![key.verifying_key()]);
//! let config = ValidatorConfig::new("https://auth.example", "tessera");
//! let validator = Validator::new(keys, config)?;
//! let claims: AccessClaims = validator.validate(&minted.token, now + 10)?;
//! assert_eq!(claims.sub, "user-1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod claims;
mod compact;
mod error;
mod keys;
mod secret;
mod validate;

pub use claims::{AccessClaims, Audience, IssuedToken, TokenIssuer};
pub use compact::{CompactJws, DEFAULT_MAX_TOKEN_BYTES, JoseHeader, MAX_JSON_DEPTH, read_compact};
pub use error::{KeyError, TokenError};
pub use keys::{
    Jwk, JwkSet, KeyAlgorithm, KeySet, MIN_HMAC_SECRET_BYTES, SigningKey, VerifyingKey,
};
pub use secret::Secret;
pub use validate::{MAX_LEEWAY_SECS, Validator, ValidatorConfig};

/// The `typ` header of Tessera access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The same type as a full media type, which other issuers may write and validation
/// accepts (RFC 9068 §4); Tessera itself always writes [`ACCESS_TOKEN_TYPE`].
pub const ACCESS_TOKEN_MEDIA_TYPE: &str = "application/at+jwt";

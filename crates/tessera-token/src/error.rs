//! Why a token or a key was refused. Each variant is a reason code for logs; none of them
//! carries token content, and HTTP callers answer every one of them the same way.

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than the configured bound.
    #[error("token too long")]
    TooLong,
    /// Not three canonical base64url segments of JSON objects.
    #[error("token is not a well-formed compact JWS")]
    Malformed,
    /// The header has a member Tessera does not accept (`jku`, `jwk`, `crit`, …).
    #[error("token header has a forbidden or unknown member")]
    ForbiddenHeader,
    /// The header `typ` is neither `at+jwt` nor `application/at+jwt`.
    #[error("token type is not an access token")]
    WrongType,
    /// No key of Tessera's own has this `kid`.
    #[error("token names an unknown key")]
    UnknownKey,
    /// The header `alg` differs from the algorithm of the key named by `kid`.
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// A claim is missing or has the wrong JSON type.
    #[error("token claims are invalid")]
    InvalidClaims,
    /// `exp` has passed (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// `iss` is not exactly Tessera's issuer.
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// `aud` does not contain Tessera's audience.
    #[error("token audience does not match")]
    WrongAudience,
}

impl TokenError {
    /// A short, stable reason code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::Malformed => "malformed",
            Self::ForbiddenHeader => "forbidden_header",
            Self::WrongType => "wrong_type",
            Self::UnknownKey => "unknown_key",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::InvalidClaims => "invalid_claims",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
        }
    }
}

/// Why a key could not be generated, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The random generator or the crypto library failed.
    #[error("key generation failed")]
    Generation,
    /// The stored key is not a valid PKCS#8 key of the expected kind.
    #[error("key material is not a valid {0} private key")]
    InvalidKey(&'static str),
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    Signing,
    /// The validator configuration is unsafe (for example a leeway above the maximum).
    #[error("invalid validator configuration: {0}")]
    InvalidConfig(String),
}

//! The claims of a Tessera access token (RFC 9068 shape) and the issuer that signs them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};

use crate::{ACCESS_TOKEN_TYPE, KeyError, SigningKey};

/// The claim set of an access token. Unknown claims and claims of the wrong JSON type are
/// refused when a token is read, so every field here means what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessClaims {
    /// Issuer: Tessera's own URL.
    pub iss: String,
    /// Subject: the user id.
    pub sub: String,
    /// Audience.
    pub aud: Audience,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued-at, seconds since the Unix epoch.
    pub iat: i64,
    /// Not-before, seconds since the Unix epoch.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// The session (refresh family) this token belongs to.
    pub sid: String,
    /// Space-separated scopes, when any were granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The user's roles, when they have any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences; the token is for each of them.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is exactly one of the token's audiences.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

/// A freshly signed access token.
#[derive(Clone)]
pub struct IssuedToken {
    /// The compact JWS.
    pub token: String,
    /// Its claims.
    pub claims: AccessClaims,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Signs access tokens with one key for one issuer and audience.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    audience: String,
}

impl TokenIssuer {
    /// An issuer that signs with `key` and names `issuer` and `audience` in its tokens.
    pub fn new(key: SigningKey, issuer: &str, audience: &str) -> Self {
        Self {
            key,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Signs a token for `subject` in `session`, valid from `now` for `ttl_secs`.
    pub fn issue(
        &self,
        subject: &str,
        session: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<IssuedToken, KeyError> {
        self.issue_with_roles(subject, session, &[], now, ttl_secs)
    }

    /// Like [`TokenIssuer::issue`], with the user's roles in the `roles` claim.
    pub fn issue_with_roles(
        &self,
        subject: &str,
        session: &str,
        roles: &[String],
        now: i64,
        ttl_secs: i64,
    ) -> Result<IssuedToken, KeyError> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: Audience::One(self.audience.clone()),
            exp: now.saturating_add(ttl_secs),
            iat: now,
            nbf: now,
            jti: random_token_id()?,
            sid: session.to_owned(),
            scope: None,
            roles: roles.to_vec(),
        };
        let mut header = Header::new(self.key.algorithm().jsonwebtoken());
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(self.key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, self.key.encoding_key())
            .map_err(|_| KeyError::Signing)?;
        Ok(IssuedToken { token, claims })
    }

    /// The key currently signing.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }
}

/// 128 random bits, base64url: unique per token without coordination.
fn random_token_id() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Generation)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

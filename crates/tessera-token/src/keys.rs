//! Signing keys and their public halves. A key always carries its own algorithm and `kid`,
//! so a token never gets to choose either: validation looks the key up by `kid` among
//! Tessera's own keys and then requires the token's `alg` to equal the key's.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{KeyError, Secret};

/// The algorithms Tessera signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// Ed25519 signatures (RFC 8037), Tessera's default.
    EdDSA,
}

impl KeyAlgorithm {
    /// The JOSE `alg` name, compared byte for byte with a token's header.
    pub fn jose_name(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
        }
    }

    pub(crate) fn jsonwebtoken(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// A private signing key with its `kid`. `Debug` never shows key material.
#[derive(Clone)]
pub struct SigningKey {
    pkcs8: Secret<Vec<u8>>,
    encoding: EncodingKey,
    public: VerifyingKey,
}

impl SigningKey {
    /// Generates a fresh Ed25519 key from the system's secure random source.
    pub fn generate() -> Result<Self, KeyError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| KeyError::Generation)?;
        Self::from_pkcs8_der(document.as_ref())
    }

    /// Loads an Ed25519 key from PKCS#8 DER bytes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| KeyError::InvalidKey("Ed25519"))?;
        let public = VerifyingKey::ed25519(pair.public_key().as_ref());
        Ok(Self {
            pkcs8: Secret::new(der.to_vec()),
            encoding: EncodingKey::from_ed_der(der),
            public,
        })
    }

    /// Loads a key from the PEM text written by [`SigningKey::to_pkcs8_pem`].
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, KeyError> {
        let parsed = pem::parse(text).map_err(|_| KeyError::InvalidKey("PEM"))?;
        if parsed.tag() != "PRIVATE KEY" {
            return Err(KeyError::InvalidKey("PKCS#8"));
        }
        Self::from_pkcs8_der(parsed.contents())
    }

    /// The key as PKCS#8 PEM text, for storage with owner-only permissions.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let block = pem::Pem::new("PRIVATE KEY", self.pkcs8.expose().clone());
        Zeroizing::new(pem::encode(&block))
    }

    /// The key id, an RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm
    }

    /// The public half, for validation and the JWKS.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public.clone()
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("algorithm", &self.public.algorithm)
            .finish_non_exhaustive()
    }
}

/// A public key Tessera trusts, with the one algorithm it may be used with.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    algorithm: KeyAlgorithm,
    decoding: DecodingKey,
    /// The public key bytes, base64url, as the JWK `x` member.
    x: String,
}

impl VerifyingKey {
    fn ed25519(public_key: &[u8]) -> Self {
        let x = URL_SAFE_NO_PAD.encode(public_key);
        Self {
            kid: ed25519_thumbprint(&x),
            algorithm: KeyAlgorithm::EdDSA,
            decoding: DecodingKey::from_ed_der(public_key),
            x,
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The only algorithm tokens signed by this key may name.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key as an RFC 7517 JWK.
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: self.x.clone(),
            kid: self.kid.clone(),
            key_use: "sig".to_owned(),
            alg: self.algorithm.jose_name().to_owned(),
        }
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order, no spaces.
fn ed25519_thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// One public key in JWKS form (RFC 7517 §4, RFC 8037 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type, `OKP` for Ed25519.
    pub kty: String,
    /// Curve name.
    pub crv: String,
    /// Public key, base64url.
    pub x: String,
    /// Key id.
    pub kid: String,
    /// Intended use: always `sig`.
    #[serde(rename = "use")]
    pub key_use: String,
    /// The one algorithm this key is used with.
    pub alg: String,
}

/// A JWK Set document (RFC 7517 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The published keys.
    pub keys: Vec<Jwk>,
}

/// The public keys a validator trusts, looked up by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// A key set of the given keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        Self { keys }
    }

    /// The key with this `kid`, if Tessera holds one.
    pub fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// The public JWKS document for these keys.
    pub fn to_jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(VerifyingKey::to_jwk).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_same_kid() {
        let key = SigningKey::generate().unwrap();

        let reloaded = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem()).unwrap();

        assert_eq!(reloaded.kid(), key.kid());
        assert_eq!(reloaded.kid().len(), 43);
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pkcs8_pem();
        let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();

        let printed = format!("{key:?}");

        assert!(printed.contains(key.kid()));
        assert!(!printed.contains(&body));
    }

    #[test]
    fn a_public_key_pem_is_not_accepted_as_a_signing_key() {
        let text = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";

        assert!(SigningKey::from_pkcs8_pem(text).is_err());
    }

    #[test]
    fn jwks_lists_kid_use_and_alg() {
        let key = SigningKey::generate().unwrap();
        let set = KeySet::new(vec![key.verifying_key()]);

        let jwks = serde_json::to_value(set.to_jwks()).unwrap();

        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kid"], key.kid());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert!(jwk.get("d").is_none());
    }
}

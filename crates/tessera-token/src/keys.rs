//! Signing keys and their public halves. A key always carries its own algorithm and `kid`,
//! so a token never gets to choose either: validation looks the key up by `kid` among
//! Tessera's own keys and then requires the token's `alg` to equal the key's.
//!
//! Asymmetric keys (EdDSA, ES256, RS256) are kept as PKCS#8 and published as JWKs. An
//! HS256 key is a shared secret of at least 32 bytes; it is never published.

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{KeyError, Secret};

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Smallest RSA modulus accepted, in bytes (2048 bits, RFC 7518 §3.3).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// The algorithms Tessera signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// Ed25519 signatures (RFC 8037), Tessera's default.
    EdDSA,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 bits or more (RFC 7518 §3.3).
    RS256,
    /// HMAC with SHA-256 and a shared secret (RFC 7518 §3.2). Never published.
    HS256,
}

impl KeyAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [Self; 4] = [Self::EdDSA, Self::ES256, Self::RS256, Self::HS256];

    /// The JOSE `alg` name, compared byte for byte with a token's header.
    pub fn jose_name(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::HS256 => "HS256",
        }
    }

    /// The algorithm named exactly `name` (case-sensitive, as RFC 7515 §4.1.1 says).
    pub fn from_jose_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.jose_name() == name)
    }

    /// Whether keys of this algorithm have a public half that can be published.
    pub fn is_asymmetric(self) -> bool {
        self != Self::HS256
    }

    pub(crate) fn jsonwebtoken(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
            Self::HS256 => Algorithm::HS256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jose_name())
    }
}

/// A private signing key with its `kid`. `Debug` never shows key material.
#[derive(Clone)]
pub struct SigningKey {
    /// PKCS#8 DER for asymmetric keys; the shared secret for HS256.
    material: Secret<Vec<u8>>,
    encoding: EncodingKey,
    public: VerifyingKey,
}

impl SigningKey {
    /// Generates a fresh asymmetric key from the system's secure random source.
    /// HS256 secrets are never generated here: see [`SigningKey::hmac`].
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let der: Vec<u8> = match algorithm {
            KeyAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec(),
            KeyAlgorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Generation)?
                    .as_ref()
                    .to_vec()
            }
            KeyAlgorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|pair| pair.as_der())
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec(),
            KeyAlgorithm::HS256 => return Err(KeyError::InvalidKey("asymmetric")),
        };
        Self::from_pkcs8_der(&der)
    }

    /// An HS256 key from a shared secret of at least 32 bytes.
    pub fn hmac(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::InvalidKey("HS256 (at least 32 bytes)"));
        }
        let encoding =
            EncodingKey::from_secret(secret).map_err(|_| KeyError::InvalidKey("HS256"))?;
        let decoding =
            DecodingKey::from_secret(secret).map_err(|_| KeyError::InvalidKey("HS256"))?;
        let k = URL_SAFE_NO_PAD.encode(secret);
        let kid = thumbprint(&format!(r#"{{"k":"{k}","kty":"oct"}}"#));
        Ok(Self {
            material: Secret::new(secret.to_vec()),
            encoding,
            public: VerifyingKey {
                kid,
                algorithm: KeyAlgorithm::HS256,
                decoding,
                jwk: None,
            },
        })
    }

    /// Loads a private key from PKCS#8 DER; its algorithm follows from the key type.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let pem = Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec())));
        let (public, encoding) = if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der) {
            let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
            let encoding = EncodingKey::from_ed_pem(pem.as_bytes());
            (VerifyingKey::okp(&x)?, encoding)
        } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            // An uncompressed SEC1 point: 0x04, then x and y, 32 bytes each.
            let point = pair.public_key().as_ref();
            let (x, y) = match (point.get(1..33), point.get(33..65)) {
                (Some(x), Some(y)) if point.len() == 65 => (x, y),
                _ => return Err(KeyError::InvalidKey("P-256")),
            };
            let encoding = EncodingKey::from_ec_pem(pem.as_bytes());
            (
                VerifyingKey::ec(&URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))?,
                encoding,
            )
        } else if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
            if pair.public_modulus_len() < MIN_RSA_MODULUS_BYTES {
                return Err(KeyError::InvalidKey("RSA (at least 2048 bits)"));
            }
            let public = pair.public_key();
            let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
            let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
            let encoding = EncodingKey::from_rsa_pem(pem.as_bytes());
            (VerifyingKey::rsa(&n, &e)?, encoding)
        } else {
            return Err(KeyError::InvalidKey("PKCS#8 Ed25519, P-256 or RSA"));
        };
        let encoding = encoding.map_err(|_| KeyError::InvalidKey("PKCS#8"))?;
        Ok(Self {
            material: Secret::new(der.to_vec()),
            encoding,
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

    /// The key as PKCS#8 PEM text, for storage with owner-only permissions. HS256 keys
    /// have no PKCS#8 form and give `None`: their secret stays where it was configured.
    pub fn to_pkcs8_pem(&self) -> Option<Zeroizing<String>> {
        self.algorithm().is_asymmetric().then(|| {
            let block = pem::Pem::new("PRIVATE KEY", self.material.expose().clone());
            Zeroizing::new(pem::encode(&block))
        })
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

    /// Signs a JWS signing input (`header.claims`, RFC 7515 §5.1) and returns the
    /// base64url signature. [`crate::TokenIssuer`] is the usual way to sign; this one
    /// exists for test vectors and tools that build headers themselves.
    pub fn sign_jws_input(&self, signing_input: &str) -> Result<String, KeyError> {
        jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &self.encoding,
            self.algorithm().jsonwebtoken(),
        )
        .map_err(|_| KeyError::Signing)
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

/// A key Tessera trusts, with the one algorithm it may be used with.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    algorithm: KeyAlgorithm,
    decoding: DecodingKey,
    /// The public JWK; `None` for HS256, whose key is secret.
    jwk: Option<Jwk>,
}

impl VerifyingKey {
    fn okp(x: &str) -> Result<Self, KeyError> {
        let kid = thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
        let decoding =
            DecodingKey::from_ed_components(x).map_err(|_| KeyError::InvalidKey("Ed25519"))?;
        Ok(Self::asymmetric(
            kid,
            KeyAlgorithm::EdDSA,
            decoding,
            |jwk| {
                jwk.kty = "OKP".to_owned();
                jwk.crv = Some("Ed25519".to_owned());
                jwk.x = Some(x.to_owned());
            },
        ))
    }

    fn ec(x: &str, y: &str) -> Result<Self, KeyError> {
        let kid = thumbprint(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
        ));
        let decoding =
            DecodingKey::from_ec_components(x, y).map_err(|_| KeyError::InvalidKey("P-256"))?;
        Ok(Self::asymmetric(
            kid,
            KeyAlgorithm::ES256,
            decoding,
            |jwk| {
                jwk.kty = "EC".to_owned();
                jwk.crv = Some("P-256".to_owned());
                jwk.x = Some(x.to_owned());
                jwk.y = Some(y.to_owned());
            },
        ))
    }

    fn rsa(n: &str, e: &str) -> Result<Self, KeyError> {
        let kid = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        let decoding =
            DecodingKey::from_rsa_components(n, e).map_err(|_| KeyError::InvalidKey("RSA"))?;
        Ok(Self::asymmetric(
            kid,
            KeyAlgorithm::RS256,
            decoding,
            |jwk| {
                jwk.kty = "RSA".to_owned();
                jwk.n = Some(n.to_owned());
                jwk.e = Some(e.to_owned());
            },
        ))
    }

    fn asymmetric(
        kid: String,
        algorithm: KeyAlgorithm,
        decoding: DecodingKey,
        members: impl FnOnce(&mut Jwk),
    ) -> Self {
        let mut jwk = Jwk {
            kty: String::new(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid: kid.clone(),
            key_use: "sig".to_owned(),
            alg: algorithm.jose_name().to_owned(),
        };
        members(&mut jwk);
        Self {
            kid,
            algorithm,
            decoding,
            jwk: Some(jwk),
        }
    }

    /// A public key from a JWK (RFC 7517), for keys published by another party. Its
    /// `alg` must name the algorithm of its key type; `kid` is kept as given.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        fn member(value: &Option<String>) -> Result<&str, KeyError> {
            value
                .as_deref()
                .ok_or(KeyError::InvalidKey("JWK with all members of its kty"))
        }
        let algorithm = KeyAlgorithm::from_jose_name(&jwk.alg)
            .ok_or(KeyError::InvalidKey("JWK with a supported alg"))?;
        let mut key = match (jwk.kty.as_str(), algorithm, jwk.crv.as_deref()) {
            ("OKP", KeyAlgorithm::EdDSA, Some("Ed25519")) => Self::okp(member(&jwk.x)?)?,
            ("EC", KeyAlgorithm::ES256, Some("P-256")) => {
                Self::ec(member(&jwk.x)?, member(&jwk.y)?)?
            }
            ("RSA", KeyAlgorithm::RS256, _) => {
                let n = member(&jwk.n)?;
                let modulus = URL_SAFE_NO_PAD
                    .decode(n)
                    .map_err(|_| KeyError::InvalidKey("RSA"))?;
                if modulus.len() < MIN_RSA_MODULUS_BYTES {
                    return Err(KeyError::InvalidKey("RSA (at least 2048 bits)"));
                }
                Self::rsa(n, member(&jwk.e)?)?
            }
            _ => return Err(KeyError::InvalidKey("JWK whose kty, crv and alg agree")),
        };
        key.kid.clone_from(&jwk.kid);
        if let Some(published) = key.jwk.as_mut() {
            published.kid.clone_from(&jwk.kid);
        }
        Ok(key)
    }

    /// Whether `signature` (base64url) is this key's signature of `signing_input`
    /// under its own algorithm. Only the cryptography: no header or claims checks.
    pub fn verify_signature(&self, signing_input: &str, signature: &str) -> bool {
        jsonwebtoken::crypto::verify(
            signature,
            signing_input.as_bytes(),
            &self.decoding,
            self.algorithm.jsonwebtoken(),
        )
        .unwrap_or(false)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The only algorithm tokens signed by this key may name.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key as an RFC 7517 JWK; `None` for a secret HS256 key.
    pub fn to_jwk(&self) -> Option<Jwk> {
        self.jwk.clone()
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
fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// One public key in JWKS form (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP`, `EC` or `RSA`.
    pub kty: String,
    /// Curve name, for `OKP` and `EC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public key (`OKP`) or x coordinate (`EC`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// y coordinate (`EC`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Modulus (`RSA`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Public exponent (`RSA`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
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

/// The keys a validator trusts, looked up by `kid`.
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

    /// The keys, in the order given.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The public JWKS document: every asymmetric key, never an HS256 secret.
    pub fn to_jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().filter_map(VerifyingKey::to_jwk).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASYMMETRIC: [KeyAlgorithm; 3] = [
        KeyAlgorithm::EdDSA,
        KeyAlgorithm::ES256,
        KeyAlgorithm::RS256,
    ];

    #[test]
    fn pem_round_trip_keeps_the_same_kid_and_algorithm() {
        for algorithm in ASYMMETRIC {
            let key = SigningKey::generate(algorithm).unwrap();

            let reloaded = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem().unwrap()).unwrap();

            assert_eq!(reloaded.kid(), key.kid());
            assert_eq!(reloaded.algorithm(), algorithm);
            assert_eq!(reloaded.kid().len(), 43);
        }
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = SigningKey::generate(KeyAlgorithm::EdDSA).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
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
    fn hmac_secrets_shorter_than_32_bytes_are_refused() {
        assert!(SigningKey::hmac(&[7; 31]).is_err());
        assert!(SigningKey::hmac(&[7; 32]).is_ok());
        assert!(SigningKey::generate(KeyAlgorithm::HS256).is_err());
    }

    #[test]
    fn jwks_lists_public_keys_with_kid_use_and_alg_and_never_a_secret() {
        let ed = SigningKey::generate(KeyAlgorithm::EdDSA).unwrap();
        let ec = SigningKey::generate(KeyAlgorithm::ES256).unwrap();
        let rsa = SigningKey::generate(KeyAlgorithm::RS256).unwrap();
        let hmac = SigningKey::hmac(&[9; 32]).unwrap();
        let set = KeySet::new(vec![
            ed.verifying_key(),
            ec.verifying_key(),
            rsa.verifying_key(),
            hmac.verifying_key(),
        ]);

        let jwks = serde_json::to_value(set.to_jwks()).unwrap();

        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        for (jwk, key) in keys.iter().zip([&ed, &ec, &rsa]) {
            assert_eq!(jwk["kid"], key.kid());
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], key.algorithm().jose_name());
            assert!(jwk.get("d").is_none() && jwk.get("k").is_none());
        }
        assert_eq!(keys[0]["kty"], "OKP");
        assert_eq!(keys[1]["crv"], "P-256");
        assert_eq!(keys[2]["e"], "AQAB");
    }

    #[test]
    fn algorithm_names_are_matched_exactly() {
        assert_eq!(
            KeyAlgorithm::from_jose_name("ES256"),
            Some(KeyAlgorithm::ES256)
        );
        assert_eq!(KeyAlgorithm::from_jose_name("es256"), None);
        assert_eq!(KeyAlgorithm::from_jose_name("none"), None);
    }
}

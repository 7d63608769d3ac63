//! Cost of signing and validating access tokens, per algorithm, beside the two
//! baselines measured in the same run: a bare aws-lc-rs signature check of the same
//! bytes, and a plain `jsonwebtoken::decode` of the same token. The ratios show what
//! Tessera's strict reader and claim checks add on top of the cryptography.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, Validation};
use tessera_token::{
    AccessClaims, KeyAlgorithm, KeySet, SigningKey, TokenIssuer, Validator, ValidatorConfig,
};

const ISS: &str = "https://auth.example";
const AUD: &str = "tessera";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn key(algorithm: KeyAlgorithm) -> SigningKey {
    match algorithm {
        KeyAlgorithm::HS256 => SigningKey::hmac(&[7; 32]).unwrap(),
        other => SigningKey::generate(other).unwrap(),
    }
}

/// The verification of the same signature with aws-lc-rs alone, or `None` for HS256
/// (whose baseline is the HMAC inside jsonwebtoken).
type RawVerify = Box<dyn Fn(&[u8], &[u8]) -> bool>;

fn raw_verifier(key: &SigningKey) -> Option<RawVerify> {
    let jwk = key.verifying_key().to_jwk()?;
    let decode = |value: &Option<String>| URL_SAFE_NO_PAD.decode(value.as_ref().unwrap()).unwrap();
    let (algorithm, public): (
        &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
        Vec<u8>,
    ) = match key.algorithm() {
        KeyAlgorithm::EdDSA => (&ED25519, decode(&jwk.x)),
        KeyAlgorithm::ES256 => {
            let mut point = vec![4u8];
            point.extend(decode(&jwk.x));
            point.extend(decode(&jwk.y));
            (&ECDSA_P256_SHA256_FIXED, point)
        }
        KeyAlgorithm::RS256 => {
            let components = aws_lc_rs::signature::RsaPublicKeyComponents {
                n: decode(&jwk.n),
                e: decode(&jwk.e),
            };
            let verify = move |message: &[u8], signature: &[u8]| {
                components
                    .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                    .is_ok()
            };
            return Some(Box::new(verify));
        }
        KeyAlgorithm::HS256 => return None,
    };
    let verify = move |message: &[u8], signature: &[u8]| {
        UnparsedPublicKey::new(algorithm, &public)
            .verify(message, signature)
            .is_ok()
    };
    Some(Box::new(verify))
}

fn tokens(c: &mut Criterion) {
    for algorithm in KeyAlgorithm::ALL {
        let name = algorithm.jose_name();
        let key = key(algorithm);
        let issuer = TokenIssuer::new(key.clone(), ISS, AUD);
        let token = issuer
            .issue("user-a", "session-a", now(), 900)
            .unwrap()
            .token;
        let validator = Validator::new(
            KeySet::new(vec![key.verifying_key()]),
            ValidatorConfig::new(ISS, AUD),
        )
        .unwrap();

        let mut group = c.benchmark_group(name);
        group.bench_function("sign", |b| {
            b.iter(|| {
                issuer
                    .issue(black_box("user-a"), "session-a", now(), 900)
                    .unwrap()
            })
        });
        group.bench_function("tessera_validate", |b| {
            b.iter(|| validator.validate(black_box(&token), now()).unwrap())
        });

        let jwk = key.verifying_key().to_jwk();
        let decoding = match &jwk {
            Some(jwk) => {
                let value = serde_json::to_value(jwk).unwrap();
                DecodingKey::from_jwk(&serde_json::from_value(value).unwrap()).unwrap()
            }
            None => DecodingKey::from_secret(&[7; 32]).unwrap(),
        };
        let mut plain = Validation::new(match algorithm {
            KeyAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            KeyAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            KeyAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            KeyAlgorithm::HS256 => jsonwebtoken::Algorithm::HS256,
        });
        plain.set_audience(&[AUD]);
        plain.set_issuer(&[ISS]);
        group.bench_function("jsonwebtoken_decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<AccessClaims>(black_box(&token), &decoding, &plain).unwrap()
            })
        });

        if let Some(verify) = raw_verifier(&key) {
            let (input, signature) = token.rsplit_once('.').unwrap();
            let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            group.bench_function("aws_lc_rs_verify", |b| {
                b.iter(|| assert!(verify(black_box(input.as_bytes()), &signature)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, tokens);
criterion_main!(benches);

//! Public JWT attacks, each one a test: forged headers, stripped or degenerate signatures,
//! key confusion, and every claim rule on its own (white-box: the harness signs with the
//! real key so that one rule at a time is exercised).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera_token::{
    KeyAlgorithm, KeySet, SigningKey, TokenError, TokenIssuer, Validator, ValidatorConfig,
};

const ISS: &str = "https://auth.example";
const AUD: &str = "tessera";
const NOW: i64 = 1_800_000_000;
const LEEWAY: i64 = 10;

struct Harness {
    key: SigningKey,
    validator: Validator,
}

impl Harness {
    fn new() -> Self {
        Self::with(KeyAlgorithm::EdDSA)
    }

    fn with(algorithm: KeyAlgorithm) -> Self {
        let key = match algorithm {
            KeyAlgorithm::HS256 => SigningKey::hmac(&random_secret()).unwrap(),
            asymmetric => SigningKey::generate(asymmetric).unwrap(),
        };
        let validator = Validator::new(
            KeySet::new(vec![key.verifying_key()]),
            ValidatorConfig::new(ISS, AUD),
        )
        .unwrap();
        Self { key, validator }
    }

    fn all() -> Vec<Self> {
        KeyAlgorithm::ALL.into_iter().map(Self::with).collect()
    }

    fn header(&self) -> Value {
        json!({
            "alg": self.key.algorithm().jose_name(),
            "typ": "at+jwt",
            "kid": self.key.kid(),
        })
    }

    fn claims(&self) -> Value {
        json!({
            "iss": ISS, "sub": "user-a", "aud": AUD, "exp": NOW + 300,
            "iat": NOW, "nbf": NOW, "jti": "j1", "sid": "s1",
        })
    }

    /// Signs any header and claims with the server's real key.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        self.sign_input(&input)
    }

    fn sign_input(&self, input: &str) -> String {
        format!("{input}.{}", self.key.sign_jws_input(input).unwrap())
    }

    fn with_claim(&self, name: &str, value: Option<Value>) -> String {
        let mut claims = self.claims();
        match value {
            Some(value) => claims[name] = value,
            None => {
                claims.as_object_mut().unwrap().remove(name);
            }
        }
        self.sign(&self.header(), &claims)
    }

    fn check(&self, token: &str) -> Result<(), TokenError> {
        self.validator.validate(token, NOW).map(|_| ())
    }
}

fn random_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).unwrap();
    secret
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn forged_claims(harness: &Harness) -> Value {
    let mut claims = harness.claims();
    claims["sub"] = json!("admin");
    claims
}

#[test]
fn a_token_issued_by_tessera_is_accepted_for_every_algorithm() {
    for harness in Harness::all() {
        let issuer = TokenIssuer::new(harness.key.clone(), ISS, AUD);
        let issued = issuer.issue("user-a", "s1", NOW, 900).unwrap();

        let claims = harness.validator.validate(&issued.token, NOW + 60).unwrap();

        assert_eq!(claims.sub, "user-a");
        assert_eq!(claims.sid, "s1");
        let limit = if harness.key.algorithm() == KeyAlgorithm::RS256 {
            700
        } else {
            600
        };
        assert!(
            issued.token.len() < limit,
            "token is {} bytes",
            issued.token.len()
        );
    }
}

#[test]
fn a_token_naming_any_other_algorithm_is_refused_for_every_key() {
    for harness in Harness::all() {
        for other in KeyAlgorithm::ALL {
            if other == harness.key.algorithm() {
                continue;
            }
            let mut header = harness.header();
            header["alg"] = json!(other.jose_name());
            // Signed with the real key: only the algorithm name is wrong.
            let token = harness.sign(&header, &harness.claims());

            assert_eq!(
                harness.check(&token),
                Err(TokenError::AlgorithmMismatch),
                "{} key, {other} token",
                harness.key.algorithm()
            );
        }
    }
}

#[test]
fn unsigned_tokens_are_refused_in_every_spelling_of_none() {
    let harness = Harness::new();
    let claims = b64(&forged_claims(&harness));
    let real = harness.sign(&harness.header(), &harness.claims());
    let real_signature = real.rsplit('.').next().unwrap();

    for alg in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some(harness.key.kid())] {
            let mut header = json!({"alg": alg, "typ": "at+jwt"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let header = b64(&header);
            for token in [
                format!("{header}.{claims}."),
                format!("{header}.{claims}"),
                format!("{header}.{claims}.{real_signature}"),
            ] {
                assert!(harness.check(&token).is_err(), "{alg} accepted: {token}");
            }
        }
    }
    let padded = format!("eyJhbGciOiJOT05FIn0=.{claims}.");
    assert!(harness.check(&padded).is_err());
}

#[test]
fn stripped_or_truncated_signatures_are_refused() {
    let harness = Harness::new();
    let real = harness.sign(&harness.header(), &harness.claims());
    let (input, _) = real.rsplit_once('.').unwrap();
    let (header, _) = input.split_once('.').unwrap();
    let forged = format!("{header}.{}", b64(&forged_claims(&harness)));

    for token in [
        format!("{forged}."),
        forged.clone(),
        format!("{forged}.AA"),
        format!("{input}."),
    ] {
        assert!(harness.check(&token).is_err(), "accepted: {token}");
    }
}

#[test]
fn a_changed_payload_under_a_real_signature_is_refused() {
    for harness in Harness::all() {
        let real = harness.sign(&harness.header(), &harness.claims());
        let parts: Vec<&str> = real.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&forged_claims(&harness)),
            parts[2]
        );

        assert_eq!(harness.check(&forged), Err(TokenError::BadSignature));
    }
}

#[test]
fn hmac_tokens_keyed_with_public_key_material_are_refused() {
    let harness = Harness::new();
    let jwk = harness.key.verifying_key().to_jwk().unwrap();
    let x = jwk.x.clone().unwrap();
    let raw_public = URL_SAFE_NO_PAD.decode(&x).unwrap();
    let jwk_text = serde_json::to_string(&jwk).unwrap();
    let jwks_text = json!({"keys": [jwk]}).to_string();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": harness.key.kid()});
    let input = format!("{}.{}", b64(&header), b64(&forged_claims(&harness)));

    for secret in [
        raw_public.clone(),
        jwk_text.into_bytes(),
        jwks_text.into_bytes(),
        x.clone().into_bytes(),
        format!("ssh-ed25519 {x}").into_bytes(),
    ] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let tag = hmac::sign(&key, input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));

        assert_eq!(harness.check(&token), Err(TokenError::AlgorithmMismatch));
    }
}

#[test]
fn degenerate_signatures_are_refused() {
    let harness = Harness::new();
    let claims = b64(&forged_claims(&harness));
    let zeros = "A".repeat(86);
    let order =
        "_____wAAAAD__________7zm-q2nF56E87nKwvxjJVH_____AAAAAP__________vOb6racXnoTzucrC_GMlUQ";
    let es256 = b64(&json!({"alg": "ES256", "typ": "at+jwt", "kid": harness.key.kid()}));
    let eddsa = b64(&harness.header());

    for signature in [zeros.as_str(), order, "MAYCAQACAQA"] {
        let token = format!("{es256}.{claims}.{signature}");
        assert_eq!(harness.check(&token), Err(TokenError::AlgorithmMismatch));
    }
    let token = format!("{eddsa}.{claims}.{zeros}");
    assert_eq!(harness.check(&token), Err(TokenError::BadSignature));
}

#[test]
fn keys_named_or_carried_by_the_token_are_never_used() {
    let harness = Harness::new();
    let attacker = Harness::new();
    let attacker_x = attacker.key.verifying_key().to_jwk().unwrap().x;
    let embedded = json!({"kty": "OKP", "crv": "Ed25519", "x": attacker_x});
    let mut headers = Vec::new();
    for (member, value) in [
        ("jwk", embedded),
        ("jku", json!("http://127.0.0.1:9/jwks.json")),
        ("x5u", json!("http://127.0.0.1:9/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(["exp"])),
    ] {
        let mut header = harness.header();
        header[member] = value;
        headers.push(header);
    }

    for header in &headers {
        let token = attacker.sign(header, &forged_claims(&harness));
        assert_eq!(harness.check(&token), Err(TokenError::ForbiddenHeader));
    }
    let own_kid = attacker.sign(&harness.header(), &forged_claims(&harness));
    assert_eq!(harness.check(&own_kid), Err(TokenError::BadSignature));
    let attacker_kid = attacker.sign(&attacker.header(), &attacker.claims());
    assert_eq!(harness.check(&attacker_kid), Err(TokenError::UnknownKey));
}

#[test]
fn tokens_that_are_not_access_tokens_are_refused() {
    let harness = Harness::new();
    let mut no_typ = harness.header();
    no_typ.as_object_mut().unwrap().remove("typ");
    let mut jwt_typ = harness.header();
    jwt_typ["typ"] = json!("JWT");
    let mut no_kid = harness.header();
    no_kid.as_object_mut().unwrap().remove("kid");

    for (header, reason) in [
        (no_typ, TokenError::WrongType),
        (jwt_typ, TokenError::WrongType),
        (no_kid, TokenError::UnknownKey),
    ] {
        let token = harness.sign(&header, &harness.claims());
        assert_eq!(harness.check(&token), Err(reason));
    }
    let opaque = URL_SAFE_NO_PAD.encode([7u8; 32]);
    assert_eq!(harness.check(&opaque), Err(TokenError::Malformed));
}

#[test]
fn the_access_token_type_is_accepted_as_a_full_media_type_and_in_no_other_spelling() {
    let harness = Harness::new();
    let with_typ = |typ: &str| {
        let mut header = harness.header();
        header["typ"] = json!(typ);
        harness.sign(&header, &harness.claims())
    };

    // RFC 9068 §4: "at+jwt" or "application/at+jwt".
    assert!(harness.check(&with_typ("application/at+jwt")).is_ok());
    for typ in [
        "AT+JWT",
        "application/jwt",
        "application/at+jwt ",
        "x-at+jwt",
    ] {
        assert_eq!(
            harness.check(&with_typ(typ)),
            Err(TokenError::WrongType),
            "{typ}"
        );
    }
}

#[test]
fn expired_and_expiry_less_tokens_are_refused() {
    let harness = Harness::new();

    assert_eq!(
        harness.check(&harness.with_claim("exp", Some(json!(NOW - 3600)))),
        Err(TokenError::Expired)
    );
    assert_eq!(
        harness.check(&harness.with_claim("exp", Some(json!(NOW - LEEWAY)))),
        Err(TokenError::Expired)
    );
    assert!(harness.check(&harness.with_claim("exp", None)).is_err());
    assert!(
        harness
            .check(&harness.with_claim("exp", Some(json!(NOW as f64 + 300.5))))
            .is_err()
    );
    assert!(
        harness
            .check(&harness.with_claim("exp", Some(json!("9999999999"))))
            .is_err()
    );
}

#[test]
fn a_token_inside_the_leeway_is_still_accepted() {
    let harness = Harness::new();

    let token = harness.with_claim("exp", Some(json!(NOW - LEEWAY + 1)));

    assert_eq!(harness.check(&token), Ok(()));
}

#[test]
fn future_nbf_and_iat_beyond_the_leeway_are_refused() {
    let harness = Harness::new();

    assert_eq!(
        harness.check(&harness.with_claim("nbf", Some(json!(NOW + 3600)))),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        harness.check(&harness.with_claim("nbf", Some(json!(NOW + LEEWAY + 5)))),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        harness.check(&harness.with_claim("iat", Some(json!(NOW + 3600)))),
        Err(TokenError::IssuedInFuture)
    );
    assert!(harness.check(&harness.with_claim("nbf", None)).is_err());
    assert!(harness.check(&harness.with_claim("iat", None)).is_err());
    assert_eq!(
        harness.check(&harness.with_claim("nbf", Some(json!(NOW)))),
        Ok(())
    );
}

#[test]
fn only_an_audience_containing_tessera_is_accepted() {
    let harness = Harness::new();

    for accepted in [json!(AUD), json!([AUD]), json!(["other", AUD])] {
        let token = harness.with_claim("aud", Some(accepted.clone()));
        assert_eq!(harness.check(&token), Ok(()), "{accepted}");
    }
    for refused in [
        json!([]),
        json!(""),
        json!(["other"]),
        json!([[AUD]]),
        json!(format!("{AUD} ")),
        json!(format!("{AUD}x")),
        json!(123),
        Value::Null,
    ] {
        let token = harness.with_claim("aud", Some(refused.clone()));
        assert!(harness.check(&token).is_err(), "{refused}");
    }
    assert!(harness.check(&harness.with_claim("aud", None)).is_err());
}

#[test]
fn only_the_exact_issuer_is_accepted() {
    let harness = Harness::new();

    for refused in [
        json!("http"),
        json!(&ISS[..10]),
        json!("auth.example"),
        json!(format!("{ISS}/")),
        json!(format!("{ISS}.evil.example")),
        json!(ISS.to_uppercase()),
        json!([ISS]),
        Value::Null,
        json!(42),
    ] {
        let token = harness.with_claim("iss", Some(refused.clone()));
        assert!(harness.check(&token).is_err(), "{refused}");
    }
    assert!(harness.check(&harness.with_claim("iss", None)).is_err());
}

#[test]
fn unknown_and_duplicated_claims_are_refused() {
    let harness = Harness::new();
    let unknown = harness.with_claim("admin", Some(json!(true)));
    let header = b64(&harness.header());
    let duplicated = harness.claims().to_string().replacen(
        "\"sub\":\"user-a\"",
        "\"sub\":\"user-a\",\"sub\":\"admin\"",
        1,
    );
    assert!(duplicated.contains("admin"));
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(&duplicated));
    let duplicated = harness.sign_input(&input);

    assert_eq!(harness.check(&unknown), Err(TokenError::InvalidClaims));
    assert_eq!(harness.check(&duplicated), Err(TokenError::InvalidClaims));
}

#[test]
fn a_leeway_above_thirty_seconds_is_refused() {
    let mut config = ValidatorConfig::new(ISS, AUD);
    config.leeway_secs = 31;

    assert!(Validator::new(KeySet::default(), config).is_err());
}

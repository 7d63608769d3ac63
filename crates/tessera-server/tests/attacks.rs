//! Black-box attacks against a running server: only what an attacker holds (their own
//! tokens and the public JWKS). Each forged token must get 401 on every protected route
//! and `invalid_grant` on the refresh grant, and never a new token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, TestSetup, spawn_app};

impl TestApp {
    async fn log_in(&self, username: &str) -> (String, String) {
        let url = format!("{}/auth/signup", self.base);
        let body = json!({"username": username, "password": "correct horse"});
        self.http.post(url).json(&body).send().await.unwrap();
        let form = [
            ("grant_type", "password"),
            ("username", username),
            ("password", "correct horse"),
        ];
        let url = format!("{}/oauth/token", self.base);
        let tokens: Value = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            tokens["access_token"].as_str().unwrap().to_owned(),
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// Every protected route refuses `token` with the contract's 401, and the
    /// refresh grant refuses it without issuing anything.
    async fn assert_refused_everywhere(&self, token: &str) {
        self.assert_refused_as_access_token(token).await;
        self.assert_refused_as_refresh_token(token).await;
    }

    async fn assert_refused_as_access_token(&self, token: &str) {
        for path in ["/userinfo", "/api/notes"] {
            let response = self
                .http
                .get(format!("{}{path}", self.base))
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{path}: {token}"
            );
            assert_eq!(
                response.headers()["www-authenticate"],
                r#"Bearer error="invalid_token""#
            );
            let body = response.text().await.unwrap();
            assert!(!body.contains("admin"), "claims echoed: {body}");
        }
    }

    async fn assert_refused_as_refresh_token(&self, token: &str) {
        let refresh = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(refresh.status(), StatusCode::BAD_REQUEST, "{token}");
        let body: Value = refresh.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant");
        assert!(body.get("access_token").is_none());
    }
}

impl TestApp {
    /// The server's own signing key, read from its data dir: white-box cases sign
    /// with it so that one claim rule at a time is tested.
    fn signing_key(&self) -> tessera_token::SigningKey {
        let keys = self.config.data_dir.join("keys");
        let pem = std::fs::read_dir(keys)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|extension| extension == "pem"))
            .unwrap();
        tessera_token::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(pem).unwrap()).unwrap()
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn decode(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// The victim's claims with `sub` swapped for an admin id: what an attacker wants.
fn forged_claims(access: &str) -> Value {
    let mut claims = decode(access.split('.').nth(1).unwrap());
    claims["sub"] = json!("admin");
    claims
}

#[tokio::test]
async fn unsigned_and_stripped_tokens_are_refused() {
    let target = spawn_app().await;
    let (access, _) = target.log_in("alice").await;
    let parts: Vec<&str> = access.split('.').collect();
    let forged = b64(&forged_claims(&access));
    let mut tokens = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        tokens.push(format!("{header}.{forged}."));
        tokens.push(format!("{header}.{forged}"));
        tokens.push(format!("{header}.{forged}.{}", parts[2]));
    }
    tokens.push(format!("eyJhbGciOiJOT05FIn0=.{forged}."));
    tokens.push(format!("{}.{forged}.", parts[0]));
    tokens.push(format!("{}.{forged}", parts[0]));
    tokens.push(format!("{}.{forged}.AA", parts[0]));
    tokens.push(format!("{}.{}.", parts[0], parts[1]));
    tokens.push(format!("{}.{forged}.{}", parts[0], parts[2]));

    for token in tokens {
        target.assert_refused_everywhere(&token).await;
    }
}

#[tokio::test]
async fn hmac_tokens_made_from_the_public_key_are_refused() {
    let target = spawn_app().await;
    let (access, _) = target.log_in("bob").await;
    let jwks: Value = target
        .http
        .get(format!("{}/.well-known/jwks.json", target.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    let kid = jwk["kid"].as_str().unwrap();
    let x = jwk["x"].as_str().unwrap();
    let header = b64(&json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}));
    let input = format!("{header}.{}", b64(&forged_claims(&access)));

    for secret in [
        URL_SAFE_NO_PAD.decode(x).unwrap(),
        jwk.to_string().into_bytes(),
        jwks.to_string().into_bytes(),
        x.as_bytes().to_vec(),
    ] {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        target.assert_refused_everywhere(&token).await;
    }
}

#[tokio::test]
async fn degenerate_and_attacker_signed_tokens_are_refused() {
    let target = spawn_app().await;
    let (access, _) = target.log_in("carol").await;
    let header = decode(access.split('.').next().unwrap());
    let kid = header["kid"].as_str().unwrap();
    let claims = b64(&forged_claims(&access));
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let attacker = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let attacker_x = URL_SAFE_NO_PAD.encode(attacker.public_key().as_ref());
    let sign = |header: &Value| {
        let input = format!("{}.{claims}", b64(header));
        let signature = attacker.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    };
    let es256 = b64(&json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}));
    let eddsa = b64(&header);
    let mut tokens = vec![
        format!("{es256}.{claims}.{}", "A".repeat(86)),
        format!("{es256}.{claims}.MAYCAQACAQA"),
        format!("{eddsa}.{claims}.{}", "A".repeat(86)),
        sign(&header),
    ];
    for (member, value) in [
        (
            "jwk",
            json!({"kty": "OKP", "crv": "Ed25519", "x": attacker_x}),
        ),
        ("jku", json!("http://127.0.0.1:9/jwks.json")),
        ("x5u", json!("http://127.0.0.1:9/cert.pem")),
    ] {
        let mut with_member = header.clone();
        with_member[member] = value;
        tokens.push(sign(&with_member));
    }

    for token in tokens {
        target.assert_refused_everywhere(&token).await;
    }
}

#[tokio::test]
async fn a_refresh_token_is_not_an_access_token_and_the_reverse() {
    let target = spawn_app().await;
    let (access, refresh) = target.log_in("dave").await;

    target.assert_refused_as_access_token(&refresh).await;
    target.assert_refused_as_refresh_token(&access).await;
}

/// White-box: the real key signs claims that differ from a valid set in one member.
#[tokio::test]
async fn claims_breaking_one_rule_are_refused_by_the_running_server() {
    let target = TestSetup::new()
        .await
        .with_key_on_disk()
        .await
        .spawn()
        .await;
    let (access, _) = target.log_in("erin").await;
    let key = target.signing_key();
    let header = decode(access.split('.').next().unwrap());
    let valid = decode(access.split('.').nth(1).unwrap());
    let now = valid["iat"].as_i64().unwrap();
    let iss = valid["iss"].as_str().unwrap().to_owned();
    let sign = |claims: &Value| {
        let input = format!("{}.{}", b64(&header), b64(claims));
        format!("{input}.{}", key.sign_jws_input(&input).unwrap())
    };
    let with = |name: &str, value: Option<Value>| {
        let mut claims = valid.clone();
        match value {
            Some(value) => claims[name] = value,
            None => {
                claims.as_object_mut().unwrap().remove(name);
            }
        }
        claims
    };

    // Control: re-signed unchanged claims pass, so each refusal below is the rule's.
    let control = target
        .http
        .get(format!("{}/userinfo", target.base))
        .bearer_auth(sign(&valid))
        .send()
        .await
        .unwrap();
    assert_eq!(control.status(), StatusCode::OK);

    let mut cases = vec![
        with("exp", Some(json!(now - 3600))),
        with("exp", None),
        with("exp", Some(json!(format!("{}", now + 300)))),
        with("exp", Some(json!(now as f64 + 300.5))),
        with("nbf", Some(json!(now + 3600))),
        with("nbf", None),
        with("iat", Some(json!(now + 3600))),
        with("sub", None),
        with("sid", None),
        with("admin", Some(json!(true))),
    ];
    for aud in [
        json!([]),
        json!(""),
        json!(["other"]),
        json!([["tessera"]]),
        json!("tessera "),
        json!("tesserax"),
        json!(123),
        Value::Null,
    ] {
        cases.push(with("aud", Some(aud)));
    }
    cases.push(with("aud", None));
    for bad_iss in [
        json!("http"),
        json!(&iss[..iss.len() - 1]),
        json!(format!("{iss}/")),
        json!(format!("{iss}.evil.example")),
        json!(iss.to_uppercase()),
        json!([iss.clone()]),
        Value::Null,
        json!(42),
    ] {
        cases.push(with("iss", Some(bad_iss)));
    }
    cases.push(with("iss", None));

    for claims in cases {
        target.assert_refused_as_access_token(&sign(&claims)).await;
    }
}

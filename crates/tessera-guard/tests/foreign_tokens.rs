//! Access tokens minted by other ecosystems' JWT libraries, checked by the guard as a
//! resource server would check them. PyJWT (with `cryptography`) and Node's `jose` each
//! make an ES256 and an EdDSA key pair, publish them as a JWKS and sign tokens in
//! Tessera's shape (`interop/python/mint_tokens.py`, `interop/node/mint-tokens.mjs`).
//! The guard fetches that JWKS through [`RemoteKeys`] from a server on 127.0.0.1 and
//! must accept each token, and refuse a tampered one and one signed by a key the JWKS
//! does not hold.
//!
//! Ignored by default: the scripts need PyJWT and `interop/node`'s packages installed.
//! `interop/run` sets both up and runs these tests with `--ignored`;
//! `TESSERA_INTEROP_PYTHON` names the Python that has PyJWT (`python3` by default).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_guard::{Guard, Refusal, RemoteKeys};
use tessera_token::{KeySet, TokenError, Validator, ValidatorConfig};

const AUDIENCE: &str = "tessera";
/// The subject and session the minting scripts put in every token.
const SUBJECT: &str = "interop-user";
const SESSION: &str = "interop-session";

/// What a minting script prints.
#[derive(serde::Deserialize)]
struct Minted {
    jwks: serde_json::Value,
    /// One token per algorithm, keyed by its JOSE name.
    tokens: BTreeMap<String, String>,
    /// Names a published `kid` but is signed by another key.
    unpublished_key: String,
}

#[tokio::test]
#[ignore = "needs PyJWT: run through interop/run"]
async fn tokens_minted_by_pyjwt_are_accepted_and_forgeries_refused() {
    let python = std::env::var("TESSERA_INTEROP_PYTHON").unwrap_or_else(|_| "python3".into());

    check_foreign_issuer(&python, &interop_dir().join("python/mint_tokens.py")).await;
}

#[tokio::test]
#[ignore = "needs interop/node's packages: run through interop/run"]
async fn tokens_minted_by_node_jose_are_accepted_and_forgeries_refused() {
    check_foreign_issuer("node", &interop_dir().join("node/mint-tokens.mjs")).await;
}

/// Serves what `script` mints as an issuer's JWKS, points a guard at it, and checks
/// every token.
async fn check_foreign_issuer(program: &str, script: &Path) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let minted = mint(program, script, &issuer);
    let jwks = minted.jwks.clone();
    let router = Router::new().route(
        "/.well-known/jwks.json",
        get(move || std::future::ready(axum::Json(jwks.clone()))),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });

    let config = ValidatorConfig::new(&issuer, AUDIENCE);
    let guard = Guard::new(Validator::new(KeySet::default(), config).unwrap());
    let remote_keys = RemoteKeys::from_jwks_url(&format!("{issuer}/.well-known/jwks.json"))
        .unwrap()
        .with_http_client(loopback_client());
    remote_keys.attach(&guard);
    assert_eq!(remote_keys.refresh(&guard).await.unwrap(), 2);

    assert_eq!(minted.tokens.keys().collect::<Vec<_>>(), ["ES256", "EdDSA"]);
    for (alg, token) in &minted.tokens {
        let claims = guard
            .check_async(&bearer(token))
            .await
            .unwrap_or_else(|refusal| panic!("the {alg} token was refused: {refusal:?}"));
        assert_eq!(claims.iss, issuer);
        assert!(claims.aud.contains(AUDIENCE));
        assert_eq!(
            (claims.sub.as_str(), claims.sid.as_str()),
            (SUBJECT, SESSION)
        );
        if alg == "ES256" {
            assert_eq!(claims.scope.as_deref(), Some("notes:read"));
            assert_eq!(claims.roles, ["admin"]);
        }

        let tampered = with_claim(token, "sub", "someone-else");
        assert_eq!(
            guard.check_async(&bearer(&tampered)).await.unwrap_err(),
            Refusal::Invalid(TokenError::BadSignature),
            "the tampered {alg} token"
        );
    }
    assert_eq!(
        guard
            .check_async(&bearer(&minted.unpublished_key))
            .await
            .unwrap_err(),
        Refusal::Invalid(TokenError::BadSignature)
    );
}

/// Runs a minting script for `issuer` and reads what it prints.
fn mint(program: &str, script: &Path, issuer: &str) -> Minted {
    let output = Command::new(program)
        .arg(script)
        .args(["--issuer", issuer, "--audience", AUDIENCE])
        .current_dir(script.parent().unwrap())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

/// Talks to the local JWKS server directly, whatever proxy the environment names.
fn loopback_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    headers.insert(AUTHORIZATION, value);
    headers
}

/// `token` with one claim changed and the original signature kept.
fn with_claim(token: &str, name: &str, value: &str) -> String {
    let mut parts = token.split('.');
    let (header, claims, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    claims[name] = value.into();
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{header}.{claims}.{signature}")
}

//! Signing keys over a server's life: every algorithm end to end, rotation while clients
//! keep calling, and the refusals at start-up for unusable key settings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, TestSetup, spawn_app_in};
use tessera_server::{Server, key_admin};
use tessera_token::KeyAlgorithm;

impl TestApp {
    async fn log_in(&self, username: &str) -> (String, String) {
        let body = json!({"username": username, "password": "correct horse"});
        let signup = self
            .http
            .post(format!("{}/auth/signup", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status(), StatusCode::CREATED);
        let form = [
            ("grant_type", "password"),
            ("username", username),
            ("password", "correct horse"),
        ];
        let tokens: Value = self
            .http
            .post(format!("{}/oauth/token", self.base))
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

    async fn refresh(&self, refresh: &str) -> (String, String) {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
        let response = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let tokens: Value = response.json().await.unwrap();
        (
            tokens["access_token"].as_str().unwrap().to_owned(),
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn userinfo(&self, access: &str) -> StatusCode {
        self.http
            .get(format!("{}/userinfo", self.base))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn jwks_kids(&self) -> Vec<String> {
        let jwks: Value = self
            .http
            .get(format!("{}/.well-known/jwks.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn header(token: &str) -> Value {
    let segment = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

fn secret_file(dir: &std::path::Path, bytes: usize) -> std::path::PathBuf {
    let path = dir.join("hmac.secret");
    let mut secret = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut secret).unwrap();
    std::fs::write(&path, secret).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test]
async fn every_algorithm_signs_tokens_the_server_accepts() {
    for algorithm in KeyAlgorithm::ALL {
        let server = spawn_app_in(|config, dir| {
            config.alg = algorithm;
            if algorithm == KeyAlgorithm::HS256 {
                config.hmac_secret_file = Some(secret_file(dir, 32));
            }
        })
        .await;

        let (access, _) = server.log_in("alice").await;

        assert_eq!(header(&access)["alg"], algorithm.jose_name());
        assert_eq!(
            server.userinfo(&access).await,
            StatusCode::OK,
            "{algorithm}"
        );
        let published = server.jwks_kids().await;
        assert_eq!(published.is_empty(), algorithm == KeyAlgorithm::HS256);
    }
}

#[tokio::test]
async fn rotation_publishes_at_once_signs_later_and_keeps_old_tokens_valid() {
    // Keys are re-read every 2 s, so each step waits for the next check.
    let server = spawn_app_in(|config, _| {
        config.access_ttl = Duration::from_secs(5);
        config.leeway = Duration::ZERO;
    })
    .await;
    let (old_access, refresh) = server.log_in("bob").await;
    let old_kid = header(&old_access)["kid"].as_str().unwrap().to_owned();

    let rotated = key_admin::rotate(&server.config, Some(Duration::from_secs(3)), now())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // Published, not yet signing; the old token still works.
    assert_eq!(
        server.jwks_kids().await,
        vec![old_kid.clone(), rotated.kid.clone()]
    );
    let (during, refresh) = server.refresh(&refresh).await;
    assert_eq!(header(&during)["kid"], old_kid.as_str());
    assert_eq!(server.userinfo(&old_access).await, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (after, _) = server.refresh(&refresh).await;
    assert_eq!(header(&after)["kid"], rotated.kid.as_str());
    assert_eq!(server.userinfo(&during).await, StatusCode::OK);
    assert_eq!(server.userinfo(&after).await, StatusCode::OK);

    // Once every token of the old key has expired, the key leaves.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(server.jwks_kids().await, vec![rotated.kid.clone()]);
}

#[tokio::test]
async fn clients_see_no_failure_while_keys_rotate() {
    let server = spawn_app_in(|config, _| config.access_ttl = Duration::from_secs(60)).await;
    let (access, mut refresh) = server.log_in("carol").await;
    let mut access = access;
    let mut calls = 0;

    for round in 0..4 {
        key_admin::rotate(&server.config, Some(Duration::ZERO), now())
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
        while tokio::time::Instant::now() < deadline {
            assert_eq!(
                server.userinfo(&access).await,
                StatusCode::OK,
                "round {round}"
            );
            calls += 1;
        }
        (access, refresh) = server.refresh(&refresh).await;
    }

    assert!(calls > 20, "only {calls} calls were made");
    let kids = server.jwks_kids().await;
    assert_eq!(kids.len(), 5);
    assert_eq!(header(&access)["kid"], kids[4].as_str());
}

#[tokio::test]
async fn rotation_keeps_the_algorithm_that_is_signing() {
    let server = spawn_app_in(|config, _| config.alg = KeyAlgorithm::ES256).await;
    let mut default_config = server.config.clone();
    default_config.alg = KeyAlgorithm::EdDSA;

    let rotated = key_admin::rotate(&default_config, Some(Duration::ZERO), now())
        .await
        .unwrap();

    assert_eq!(rotated.alg, KeyAlgorithm::ES256);
}

#[tokio::test]
async fn unusable_key_settings_stop_start_up() {
    let setup = TestSetup::new().await;
    let short = secret_file(setup.dir(), 31);
    let mut config = setup.config.clone();
    config.alg = KeyAlgorithm::HS256;
    config.hmac_secret_file = Some(short.clone());

    let error = Server::bind(config.clone()).await.err().unwrap();
    assert!(format!("{error:#}").contains("at least 32"));

    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = Server::bind(config).await.err().unwrap();
    assert!(format!("{error:#}").contains("chmod 600"));
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_stops_at_start_up() {
    let first = spawn_app_in(|_, _| {}).await;

    let error = Server::bind(first.config.clone()).await.err().unwrap();

    assert!(format!("{error:#}").contains("another Tessera server"));
}

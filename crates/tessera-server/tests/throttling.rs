//! Brute-force defence over HTTP: throttling before any hash is computed, growing
//! delays that slow the guesser's address and not the real user's, `X-Forwarded-For`
//! believed only from configured proxies, and one hash per login whether or not the
//! user exists (proved by counting hashes, not by timing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::IpAddr;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use support::{TestApp, spawn_app_with};

/// A client whose connections come from `address` (any of 127.0.0.0/8 works on
/// loopback), standing for a distinct machine.
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

impl TestApp {
    async fn sign_up(&self, username: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/auth/signup", self.base))
            .json(&json!({"username": username, "password": "correct horse"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn log_in(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
        forwarded_for: Option<&str>,
    ) -> reqwest::Response {
        let mut request = client.post(format!("{}/oauth/token", self.base)).form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ]);
        if let Some(forwarded) = forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        request.send().await.unwrap()
    }
}

fn assert_throttled(response: &reqwest::Response) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
}

#[tokio::test]
async fn every_login_costs_one_verification_whether_or_not_the_user_exists() {
    let app = spawn_app_with(|_| {}).await;
    app.sign_up("alice").await;
    let client = reqwest::Client::new();

    let before = (app.verifications)();
    app.log_in(&client, "alice", "wrong password", None).await;
    let after_wrong = (app.verifications)();
    app.log_in(&client, "nobody", "wrong password", None).await;
    let after_unknown = (app.verifications)();
    app.log_in(&client, "", "wrong password", None).await;
    let after_empty = (app.verifications)();

    assert_eq!(after_wrong - before, 1);
    assert_eq!(after_unknown - after_wrong, 1);
    assert_eq!(after_empty - after_unknown, 1);
}

#[tokio::test]
async fn repeated_failures_are_throttled_before_any_hash_even_with_the_right_password() {
    let app = spawn_app_with(|_| {}).await;
    app.sign_up("bob").await;
    let attacker = client_from("127.0.0.2");

    for _ in 0..4 {
        let response = app.log_in(&attacker, "bob", "wrong guess", None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let before = (app.verifications)();
    let right = app.log_in(&attacker, "bob", "correct horse", None).await;

    assert_throttled(&right);
    assert_eq!(
        (app.verifications)(),
        before,
        "a throttled attempt computed a hash"
    );
}

#[tokio::test]
async fn the_guessers_address_is_slowed_and_the_real_user_is_not() {
    let app = spawn_app_with(|_| {}).await;
    app.sign_up("carol").await;
    let attacker = client_from("127.0.0.2");
    let user = client_from("127.0.0.3");

    for _ in 0..8 {
        app.log_in(&attacker, "carol", "wrong guess", None).await;
    }
    let attacker_again = app.log_in(&attacker, "carol", "correct horse", None).await;
    let real_user = app.log_in(&user, "carol", "correct horse", None).await;

    assert_throttled(&attacker_again);
    assert_eq!(real_user.status(), StatusCode::OK);
}

#[tokio::test]
async fn concurrent_guesses_are_evaluated_only_up_to_the_free_allowance() {
    let app = spawn_app_with(|_| {}).await;
    app.sign_up("dave").await;
    let attacker = client_from("127.0.0.2");
    let before = (app.verifications)();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut guesses = Vec::new();
    for _ in 0..50 {
        let client = attacker.clone();
        let url = format!("{}/oauth/token", app.base);
        let barrier = barrier.clone();
        guesses.push(tokio::spawn(async move {
            barrier.wait().await;
            let form = [
                ("grant_type", "password"),
                ("username", "dave"),
                ("password", "wrong guess"),
            ];
            client.post(url).form(&form).send().await.unwrap().status()
        }));
    }
    let mut statuses = Vec::new();
    for guess in guesses {
        statuses.push(guess.await.unwrap());
    }

    let evaluated = statuses
        .iter()
        .filter(|status| **status == StatusCode::BAD_REQUEST)
        .count();
    assert!(evaluated <= 4, "{evaluated} guesses were evaluated");
    assert!(statuses.iter().all(|status| {
        *status == StatusCode::BAD_REQUEST || *status == StatusCode::TOO_MANY_REQUESTS
    }));
    assert!((app.verifications)() - before <= 4);
    assert_throttled(&app.log_in(&attacker, "dave", "correct horse", None).await);
}

#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = spawn_app_with(|_| {}).await;
    app.sign_up("erin").await;
    let attacker = client_from("127.0.0.2");

    for i in 0..6 {
        let spoofed = format!("203.0.113.{i}");
        app.log_in(&attacker, "erin", "wrong guess", Some(&spoofed))
            .await;
    }
    let fresh_spoof = app
        .log_in(&attacker, "erin", "correct horse", Some("198.51.100.99"))
        .await;

    assert_throttled(&fresh_spoof);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_what_counts() {
    let app =
        spawn_app_with(|config| config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])
            .await;
    app.sign_up("frank").await;
    let proxy = client_from("127.0.0.1");

    for _ in 0..6 {
        app.log_in(&proxy, "frank", "wrong guess", Some("203.0.113.7"))
            .await;
    }
    let attacker = app
        .log_in(&proxy, "frank", "correct horse", Some("203.0.113.7"))
        .await;
    let user = app
        .log_in(&proxy, "frank", "correct horse", Some("198.51.100.8"))
        .await;

    assert_throttled(&attacker);
    assert_eq!(user.status(), StatusCode::OK);
}

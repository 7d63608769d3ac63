//! The server's request log as an operator reads it: with `--log-format json` each
//! request ends with one JSON line naming method, matched route, status, latency, the
//! user and the request id (the client's, echoed), and never the token; by default
//! the same line is plain text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Server;

const PASSWORD: &str = "correct horse battery staple";

/// Signs up and logs in `username`; the access token and the user id.
async fn user_with_token(http: &reqwest::Client, base: &str, username: &str) -> (String, String) {
    let signed_up: Value = http
        .post(format!("{base}/auth/signup"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grant: Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        grant["access_token"].as_str().unwrap().to_owned(),
        signed_up["id"].as_str().unwrap().to_owned(),
    )
}

/// Waits (a few seconds at most) for a log line containing `needle`.
fn line_with(server: &Server, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = server.log().lines().find(|line| line.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_json_request_line_names_route_status_latency_user_and_request_id() {
    let server = Server::start_with(&["--log-format", "json"]);
    let http = reqwest::Client::new();
    let (access, user_id) = user_with_token(&http, &server.url, "alice").await;
    let note = uuid::Uuid::new_v4();

    let response = http
        .get(format!("{}/api/notes/{note}", server.url))
        .bearer_auth(&access)
        .header("x-request-id", "lb-7f3a-0001")
        .send()
        .await
        .unwrap();
    let line = line_with(&server, "lb-7f3a-0001");

    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "lb-7f3a-0001");
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["message"], "request", "{line}");
    assert_eq!(entry["method"], "GET", "{line}");
    assert_eq!(entry["route"], "/api/notes/{id}", "{line}");
    assert_eq!(entry["status"], 404, "{line}");
    assert!(entry["latency_ms"].as_f64().unwrap() >= 0.0, "{line}");
    assert_eq!(entry["user_id"], user_id.as_str(), "{line}");
    assert_eq!(entry["request_id"], "lb-7f3a-0001", "{line}");
    assert_eq!(entry["level"], "INFO", "{line}");
    let log = server.log();
    assert!(!log.contains(&access), "the access token was logged");
    assert!(!log.contains(&note.to_string()), "a raw path was logged");
    assert!(!log.contains(PASSWORD), "a password was logged");
}

#[tokio::test]
async fn lines_inside_a_request_carry_its_request_id() {
    let server = Server::start_with(&["--log-format", "json"]);
    let http = reqwest::Client::new();

    user_with_token(&http, &server.url, "bob").await;
    let line = line_with(&server, "\"login_succeeded\"");

    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["target"], "audit", "{line}");
    assert_eq!(entry["span"]["route"], "/oauth/token", "{line}");
    assert!(entry["span"]["request_id"].as_str().is_some(), "{line}");
}

#[tokio::test]
async fn the_default_request_line_is_text() {
    let server = Server::start("15m");
    let http = reqwest::Client::new();

    http.get(format!("{}/.well-known/jwks.json", server.url))
        .header("x-request-id", "text-line-0002")
        .send()
        .await
        .unwrap();
    let line = line_with(&server, "text-line-0002");

    assert!(serde_json::from_str::<Value>(&line).is_err(), "{line}");
    assert!(line.contains("route=/.well-known/jwks.json"), "{line}");
    assert!(line.contains("status=200"), "{line}");
}

//! What operators rely on: `/metrics` counts logins, refreshes, reuse and throttling,
//! labels requests by route template (never by raw path), and asks for its token when
//! one is configured; every answer carries a request id, the client's when it is sane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, spawn_app, spawn_app_in, spawn_app_with};

const PASSWORD: &str = "correct horse";

impl TestApp {
    async fn sign_up(&self, username: &str) {
        let response = self
            .http
            .post(self.url("/auth/signup"))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn log_in(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn renew(&self, refresh_token: &str) -> reqwest::Response {
        self.http
            .post(self.url("/oauth/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap()
    }

    /// The metrics page, scraped without a token.
    async fn scrape(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }
}

/// The value of the series `series` (name and labels exactly as rendered).
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

const SUCCEEDED: &str = "tessera_logins_total{outcome=\"succeeded\"}";
const FAILED: &str = "tessera_logins_total{outcome=\"failed\"}";

#[tokio::test]
async fn login_counters_move_when_logins_succeed_and_fail() {
    let app = spawn_app().await;
    app.sign_up("alice").await;
    let before = app.scrape().await;

    assert_eq!(app.log_in("alice", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(app.log_in("alice", PASSWORD).await.status(), StatusCode::OK);
    let wrong = app.log_in("alice", "wrong password").await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let unknown = app.log_in("nobody", PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let after = app.scrape().await;

    assert_eq!(value(&before, SUCCEEDED), 0.0);
    assert_eq!(value(&before, FAILED), 0.0);
    assert_eq!(value(&after, SUCCEEDED), 2.0);
    assert_eq!(value(&after, FAILED), 2.0);
    assert_eq!(
        value(&after, "tessera_password_hashes_total{kind=\"verify\"}"),
        4.0
    );
    let answered =
        "tessera_http_requests_total{method=\"POST\",route=\"/oauth/token\",status=\"400\"}";
    assert_eq!(value(&after, answered), 2.0);
}

#[tokio::test]
async fn refreshes_and_reuse_detections_are_counted() {
    let app = spawn_app_with(|config| config.refresh_grace = std::time::Duration::ZERO).await;
    app.sign_up("bob").await;
    let grant: Value = app.log_in("bob", PASSWORD).await.json().await.unwrap();
    let first = grant["refresh_token"].as_str().unwrap();

    let renewed = app.renew(first).await;
    assert_eq!(renewed.status(), StatusCode::OK);
    let reused = app.renew(first).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let metrics = app.scrape().await;

    assert_eq!(value(&metrics, "tessera_refreshes_total"), 1.0);
    assert_eq!(value(&metrics, "tessera_refresh_reuse_detected_total"), 1.0);
}

#[tokio::test]
async fn throttled_logins_are_counted_by_route() {
    let app = spawn_app().await;
    app.sign_up("carol").await;

    let mut throttled = false;
    for _ in 0..10 {
        if app.log_in("carol", "wrong password").await.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled = true;
            break;
        }
    }
    let metrics = app.scrape().await;

    assert!(throttled, "ten failures in a row were never throttled");
    let series = "tessera_throttled_requests_total{route=\"/oauth/token\"}";
    assert_eq!(value(&metrics, series), 1.0);
}

#[tokio::test]
async fn requests_are_labelled_by_route_template_never_by_raw_path() {
    let app = spawn_app().await;
    app.sign_up("dave").await;
    let grant: Value = app.log_in("dave", PASSWORD).await.json().await.unwrap();
    let access = grant["access_token"].as_str().unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = uuid::Uuid::new_v4().to_string();
        let response = app
            .http
            .get(app.url(&format!("/api/notes/{id}")))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        ids.push(id);
    }
    let stray = app.http.get(app.url("/no/such/path/12345")).send().await;
    assert_eq!(stray.unwrap().status(), StatusCode::NOT_FOUND);

    let metrics = app.scrape().await;

    let series =
        "tessera_http_requests_total{method=\"GET\",route=\"/api/notes/{id}\",status=\"404\"}";
    assert_eq!(value(&metrics, series), 3.0);
    assert!(metrics.contains("route=\"unmatched\""), "{metrics}");
    for id in &ids {
        assert!(!metrics.contains(id.as_str()), "{id} became a label");
    }
    assert!(!metrics.contains("12345"));
    assert!(!metrics.contains(access));
    assert!(metrics.contains(
        "tessera_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/notes/{id}\""
    ));
}

#[tokio::test]
async fn gauges_show_the_signing_key_age_the_hashing_queue_and_open_sessions() {
    let app = spawn_app().await;

    let metrics = app.scrape().await;

    let key_age = value(&metrics, "tessera_signing_key_age_seconds");
    assert!((0.0..120.0).contains(&key_age), "{key_age}");
    assert_eq!(value(&metrics, "tessera_password_hashing_queue_depth"), 0.0);
    // Counted when the server starts, then every 30 s.
    assert_eq!(value(&metrics, "tessera_open_sessions"), 0.0);
}

#[tokio::test]
async fn metrics_with_a_token_file_refuse_scrapers_without_that_token() {
    let token = "f3NOXjvZpYbK6mSsk2r0dQ8a1LwHcE9uTgRiV4yJ";
    let app = spawn_app_in(|config, dir| {
        use std::os::unix::fs::PermissionsExt as _;
        let file = dir.join("metrics.token");
        std::fs::write(&file, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        config.metrics_token_file = Some(file);
    })
    .await;
    let scrape = |bearer: Option<&'static str>| {
        let request = app.http.get(app.url("/metrics"));
        let request = match bearer {
            Some(bearer) => request.bearer_auth(bearer),
            None => request,
        };
        request.send()
    };

    let without = scrape(None).await.unwrap();
    let wrong = scrape(Some("not-the-metrics-token-at-all-but-long"))
        .await
        .unwrap();
    let right = scrape(Some(token)).await.unwrap();

    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    assert!(without.headers().contains_key("www-authenticate"));
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(right.status(), StatusCode::OK);
    assert!(
        right.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(right.text().await.unwrap().contains(SUCCEEDED));
}

#[tokio::test]
async fn a_metrics_token_file_others_can_read_stops_start_up() {
    let mut setup = support::TestSetup::new().await;
    let file = setup.dir().join("metrics.token");
    std::fs::write(&file, "x".repeat(40)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    setup.config.metrics_token_file = Some(file);

    let error = tessera_server::Server::bind(setup.config.clone())
        .await
        .err()
        .unwrap();

    assert!(error.to_string().contains("chmod 600"), "{error:#}");
}

#[tokio::test]
async fn a_sane_client_request_id_is_echoed() {
    let app = spawn_app().await;

    let response = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "edge-7f3a:42")
        .send()
        .await
        .unwrap();

    assert_eq!(response.headers()["x-request-id"], "edge-7f3a:42");
}

#[tokio::test]
async fn an_overlong_or_control_character_request_id_is_replaced() {
    let app = spawn_app().await;
    let overlong = "a".repeat(129);
    let mut seen = Vec::new();

    for bad in [
        overlong.as_bytes(),
        b"has\tcontrol",
        b"caf\xc3\xa9",
        b"two words",
    ] {
        let response = app
            .http
            .get(app.url("/healthz"))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(bad).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();

        assert_ne!(id.as_bytes(), bad);
        assert!(!id.is_empty() && id.len() <= 128, "{id}");
        assert!(id.bytes().all(|byte| byte.is_ascii_graphic()), "{id}");
        seen.push(id);
    }
    let unasked = app.http.get(app.url("/healthz")).send().await.unwrap();
    seen.push(
        unasked.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned(),
    );

    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "every request gets an id of its own");
}

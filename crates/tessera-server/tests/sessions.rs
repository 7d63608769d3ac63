//! Sessions done right, end to end: refresh races and the grace window, reuse
//! detection that ends one session only, the ways to end sessions (logout scopes, the
//! device list, RFC 7009 revocation, password change, disabling a user), and that every
//! ended session's access tokens are refused at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, spawn_app, spawn_app_with};
use tessera_server::admin::Admin;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pair {
    access: String,
    refresh: String,
}

impl TestApp {
    async fn sign_up(&self, username: &str) {
        let response = self
            .http
            .post(self.url("/auth/signup"))
            .json(&json!({"username": username, "password": "correct horse"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn log_in(&self, username: &str) -> Pair {
        let form = [
            ("grant_type", "password"),
            ("username", username),
            ("password", "correct horse"),
        ];
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        pair(response).await
    }

    async fn refresh(&self, refresh: &str) -> reqwest::Response {
        self.http
            .post(self.url("/oauth/token"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .send()
            .await
            .unwrap()
    }

    async fn status(&self, access: &str) -> StatusCode {
        self.http
            .get(self.url("/userinfo"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn post(&self, path: &str, access: &str) -> StatusCode {
        self.http
            .post(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .status()
    }
}

async fn pair(response: reqwest::Response) -> Pair {
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    Pair {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

async fn refused(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    body["error_description"].as_str().unwrap().to_owned()
}

/// Fires `count` refreshes of one token at once and returns every answer.
async fn race(app: &TestApp, refresh: &str, count: usize) -> Vec<(StatusCode, Option<Pair>)> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(count));
    let mut tasks = Vec::new();
    for _ in 0..count {
        let http = app.http.clone();
        let url = app.url("/oauth/token");
        let refresh = refresh.to_owned();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let form = [("grant_type", "refresh_token"), ("refresh_token", &refresh)];
            let response = http.post(url).form(&form).send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            let pair = body["refresh_token"].as_str().map(|refresh| Pair {
                access: body["access_token"].as_str().unwrap().to_owned(),
                refresh: refresh.to_owned(),
            });
            (status, pair)
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn fifty_concurrent_refreshes_share_one_successor_pair_twenty_times_over() {
    let app = spawn_app().await;
    app.sign_up("alice").await;
    let mut current = app.log_in("alice").await;

    for round in 0..20 {
        let answers = race(&app, &current.refresh, 50).await;

        let successors: HashSet<Pair> = answers
            .iter()
            .map(|(status, pair)| {
                assert_eq!(*status, StatusCode::OK, "round {round}");
                pair.clone().unwrap()
            })
            .collect();
        assert_eq!(successors.len(), 1, "round {round}: {successors:?}");
        current = successors.into_iter().next().unwrap();
        assert_eq!(app.status(&current.access).await, StatusCode::OK);
    }
    // The last successor is the one live refresh token of the session.
    pair(app.refresh(&current.refresh).await).await;
}

#[tokio::test]
async fn a_retry_inside_the_grace_window_gets_the_same_pair() {
    let app = spawn_app().await;
    app.sign_up("bob").await;
    let first = app.log_in("bob").await;

    let second = pair(app.refresh(&first.refresh).await).await;
    let retried = pair(app.refresh(&first.refresh).await).await;

    assert_eq!(retried, second);
    pair(app.refresh(&second.refresh).await).await;
}

#[tokio::test]
async fn reuse_after_the_window_ends_that_session_only_and_is_audited() {
    let app = spawn_app_with(|config| config.refresh_grace = Duration::from_secs(1)).await;
    app.sign_up("carol").await;
    let laptop = app.log_in("carol").await;
    let phone = app.log_in("carol").await;
    let next = pair(app.refresh(&laptop.refresh).await).await;

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let description = refused(app.refresh(&laptop.refresh).await).await;

    assert!(description.contains("session was ended"), "{description}");
    refused(app.refresh(&next.refresh).await).await;
    assert_eq!(app.status(&next.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.status(&phone.access).await, StatusCode::OK);
    pair(app.refresh(&phone.refresh).await).await;
    let admin = Admin::open(&app.config).await.unwrap();
    let events = admin.audit_events(50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.kind == "refresh_reuse_detected")
    );
}

#[tokio::test]
async fn a_grandparent_replayed_inside_the_window_still_ends_the_session() {
    let app = spawn_app().await;
    app.sign_up("dave").await;
    let first = app.log_in("dave").await;
    let second = pair(app.refresh(&first.refresh).await).await;
    let third = pair(app.refresh(&second.refresh).await).await;

    refused(app.refresh(&first.refresh).await).await;

    refused(app.refresh(&third.refresh).await).await;
    assert_eq!(app.status(&third.access).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_the_window_off_a_replay_ends_the_session() {
    let app = spawn_app_with(|config| config.refresh_grace = Duration::ZERO).await;
    app.sign_up("erin").await;
    let first = app.log_in("erin").await;
    let second = pair(app.refresh(&first.refresh).await).await;

    refused(app.refresh(&first.refresh).await).await;

    refused(app.refresh(&second.refresh).await).await;
}

#[tokio::test]
async fn the_device_list_shows_open_sessions_and_ends_one() {
    let app = spawn_app().await;
    app.sign_up("frank").await;
    let laptop = app.log_in("frank").await;
    let phone = app.log_in("frank").await;

    let listed: Value = app
        .http
        .get(app.url("/auth/sessions"))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = listed.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let other = sessions
        .iter()
        .find(|session| session["current"] == false)
        .unwrap();
    assert_eq!(other["ip"], "127.0.0.1");
    let path = format!("/auth/sessions/{}", other["id"].as_str().unwrap());

    let ended = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();

    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.status(&phone.access).await, StatusCode::UNAUTHORIZED);
    refused(app.refresh(&phone.refresh).await).await;
    assert_eq!(app.status(&laptop.access).await, StatusCode::OK);
    let again = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_users_session_cannot_be_ended_from_the_device_list() {
    let app = spawn_app().await;
    app.sign_up("grace").await;
    app.sign_up("mallory").await;
    let victim = app.log_in("grace").await;
    let attacker = app.log_in("mallory").await;
    let listed: Value = app
        .http
        .get(app.url("/auth/sessions"))
        .bearer_auth(&victim.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("/auth/sessions/{}", listed[0]["id"].as_str().unwrap());

    let attempt = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&attacker.access)
        .send()
        .await
        .unwrap();

    assert_eq!(attempt.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.status(&victim.access).await, StatusCode::OK);
}

#[tokio::test]
async fn logout_others_keeps_only_the_callers_session() {
    let app = spawn_app().await;
    app.sign_up("heidi").await;
    let laptop = app.log_in("heidi").await;
    let phone = app.log_in("heidi").await;
    let tablet = app.log_in("heidi").await;

    let status = app.post("/auth/logout?scope=others", &laptop.access).await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.status(&laptop.access).await, StatusCode::OK);
    for other in [&phone, &tablet] {
        assert_eq!(app.status(&other.access).await, StatusCode::UNAUTHORIZED);
        refused(app.refresh(&other.refresh).await).await;
    }
}

#[tokio::test]
async fn revoking_a_refresh_or_access_token_ends_its_session_and_always_answers_200() {
    let app = spawn_app().await;
    app.sign_up("ivan").await;
    let by_refresh = app.log_in("ivan").await;
    let by_access = app.log_in("ivan").await;
    let revoke = |token: String| {
        app.http
            .post(app.url("/oauth/revoke"))
            .form(&[("token", token)])
            .send()
    };

    assert_eq!(
        revoke(by_refresh.refresh.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        revoke(by_access.access.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        revoke("garbage".to_owned()).await.unwrap().status(),
        StatusCode::OK
    );

    for ended in [&by_refresh, &by_access] {
        assert_eq!(app.status(&ended.access).await, StatusCode::UNAUTHORIZED);
        refused(app.refresh(&ended.refresh).await).await;
    }
    let missing = app
        .http
        .post(app.url("/oauth/revoke"))
        .form(&[("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_password_change_ends_every_other_session() {
    let app = spawn_app().await;
    app.sign_up("judy").await;
    let device_a = app.log_in("judy").await;
    let device_b = app.log_in("judy").await;

    let wrong = app
        .http
        .post(app.url("/auth/password"))
        .bearer_auth(&device_a.access)
        .json(&json!({"current_password": "wrong guess", "new_password": "a new secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.status(&device_b.access).await, StatusCode::OK);

    let changed = app
        .http
        .post(app.url("/auth/password"))
        .bearer_auth(&device_a.access)
        .json(&json!({"current_password": "correct horse", "new_password": "a new secret"}))
        .send()
        .await
        .unwrap();

    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.status(&device_b.access).await, StatusCode::UNAUTHORIZED);
    refused(app.refresh(&device_b.refresh).await).await;
    assert_eq!(app.status(&device_a.access).await, StatusCode::OK);
    pair(app.refresh(&device_a.refresh).await).await;
    let old_password = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "judy"),
            ("password", "correct horse"),
        ])
        .send()
        .await
        .unwrap();
    refused(old_password).await;
}

#[tokio::test]
async fn a_refresh_racing_a_password_change_leaves_no_live_token_behind() {
    let app = spawn_app().await;
    app.sign_up("kate").await;
    let device_a = app.log_in("kate").await;
    let device_b = app.log_in("kate").await;

    let change = app
        .http
        .post(app.url("/auth/password"))
        .bearer_auth(&device_a.access)
        .json(&json!({"current_password": "correct horse", "new_password": "a new secret"}))
        .send();
    let refresh = app.refresh(&device_b.refresh);
    let (change, refresh) = tokio::join!(change, refresh);

    assert_eq!(change.unwrap().status(), StatusCode::NO_CONTENT);
    if refresh.status() == StatusCode::OK {
        let raced = pair(refresh).await;
        assert_eq!(app.status(&raced.access).await, StatusCode::UNAUTHORIZED);
        refused(app.refresh(&raced.refresh).await).await;
    }
    refused(app.refresh(&device_b.refresh).await).await;
}

#[tokio::test]
async fn disabling_a_user_refuses_their_tokens_within_a_second() {
    let app = spawn_app().await;
    app.sign_up("liam").await;
    let tokens = app.log_in("liam").await;
    let admin = Admin::open(&app.config).await.unwrap();

    admin.set_disabled("liam", true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;

    assert_eq!(app.status(&tokens.access).await, StatusCode::UNAUTHORIZED);
    refused(app.refresh(&tokens.refresh).await).await;
    let login = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "liam"),
            ("password", "correct horse"),
        ])
        .send()
        .await
        .unwrap();
    refused(login).await;
}

#[tokio::test]
async fn roles_set_by_the_admin_reach_tokens_at_the_next_renewal() {
    let app = spawn_app().await;
    app.sign_up("mia").await;
    let first = app.log_in("mia").await;
    let admin = Admin::open(&app.config).await.unwrap();

    admin.set_roles("mia", &["admin".to_owned()]).await.unwrap();
    let renewed = pair(app.refresh(&first.refresh).await).await;

    let claims = renewed.access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["roles"], json!(["admin"]));
}

#[tokio::test]
async fn introspection_answers_resource_servers_holding_the_credential() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("introspection.secret");
    let credential = "cmVzb3VyY2Utc2VydmVyLWNyZWRlbnRpYWwtMzItYnl0ZXM=";
    std::fs::write(&secret_file, format!("{credential}\n")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let app = spawn_app_with(|config| config.introspection_secret_file = Some(secret_file)).await;
    app.sign_up("nina").await;
    let tokens = app.log_in("nina").await;
    let introspect = |token: String, credential: &'static str| {
        app.http
            .post(app.url("/oauth/introspect"))
            .bearer_auth(credential)
            .form(&[("token", token)])
            .send()
    };

    let access: Value = introspect(tokens.access.clone(), credential)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh: Value = introspect(tokens.refresh.clone(), credential)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wrong_credential = introspect(tokens.access.clone(), "not the credential")
        .await
        .unwrap();
    app.post("/auth/logout", &tokens.access).await;
    let after_logout: Value = introspect(tokens.access.clone(), credential)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let discovery: Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["introspection_endpoint"],
        app.url("/oauth/introspect")
    );
    assert_eq!(access["active"], true);
    assert_eq!(access["token_type"], "access_token");
    assert_eq!(refresh["active"], true);
    assert_eq!(refresh["sub"], access["sub"]);
    assert_eq!(wrong_credential.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(after_logout, json!({"active": false}));
}

#[tokio::test]
async fn without_a_configured_credential_there_is_no_introspection() {
    let app = spawn_app().await;

    let response = app
        .http
        .post(app.url("/oauth/introspect"))
        .bearer_auth("anything")
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// Logs in again and again with `password` from 8 client addresses for `for_how_long`;
/// every pair obtained.
async fn login_storm(
    app: &TestApp,
    username: &str,
    password: &str,
    for_how_long: Duration,
) -> Vec<Pair> {
    let deadline = tokio::time::Instant::now() + for_how_long;
    let mut tasks = Vec::new();
    for client in 1..=8 {
        let http = reqwest::Client::builder()
            .local_address(
                format!("127.0.5.{client}")
                    .parse::<std::net::IpAddr>()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let url = app.url("/oauth/token");
        let (username, password) = (username.to_owned(), password.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut pairs = Vec::new();
            for _ in 0..15 {
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                let form = [
                    ("grant_type", "password"),
                    ("username", username.as_str()),
                    ("password", password.as_str()),
                ];
                let response = http.post(&url).form(&form).send().await.unwrap();
                if response.status() == StatusCode::OK {
                    pairs.push(pair(response).await);
                }
            }
            pairs
        }));
    }
    let mut pairs = Vec::new();
    for task in tasks {
        pairs.extend(task.await.unwrap());
    }
    pairs
}

#[tokio::test]
async fn logins_racing_a_password_change_leave_no_live_session() {
    let app = spawn_app().await;
    app.sign_up("oscar").await;
    let owner = app.log_in("oscar").await;

    let storm = login_storm(&app, "oscar", "correct horse", Duration::from_millis(2500));
    let change = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        app.http
            .post(app.url("/auth/password"))
            .bearer_auth(&owner.access)
            .json(&json!({"current_password": "correct horse", "new_password": "a new secret"}))
            .send()
            .await
            .unwrap()
            .status()
    };
    let (stolen, changed) = tokio::join!(storm, change);

    assert_eq!(changed, StatusCode::NO_CONTENT);
    assert!(!stolen.is_empty(), "the storm never logged in");
    for pair in &stolen {
        assert_eq!(app.status(&pair.access).await, StatusCode::UNAUTHORIZED);
        refused(app.refresh(&pair.refresh).await).await;
    }
    assert_eq!(app.status(&owner.access).await, StatusCode::OK);
}

#[tokio::test]
async fn logins_racing_a_disable_leave_no_live_session_even_after_enabling() {
    let app = spawn_app().await;
    app.sign_up("petra").await;
    let admin = Admin::open(&app.config).await.unwrap();

    let storm = login_storm(&app, "petra", "correct horse", Duration::from_millis(2500));
    let disable = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        admin.set_disabled("petra", true).await.unwrap();
    };
    let (stolen, ()) = tokio::join!(storm, disable);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    admin.set_disabled("petra", false).await.unwrap();

    assert!(!stolen.is_empty(), "the storm never logged in");
    for pair in &stolen {
        assert_eq!(app.status(&pair.access).await, StatusCode::UNAUTHORIZED);
        refused(app.refresh(&pair.refresh).await).await;
    }
}

#[tokio::test]
async fn forward_auth_names_the_user_for_a_valid_token_and_refuses_others() {
    let app = spawn_app().await;
    app.sign_up("quinn").await;
    let tokens = app.log_in("quinn").await;
    let admin = Admin::open(&app.config).await.unwrap();
    admin
        .set_roles("quinn", &["admin".to_owned(), "ops".to_owned()])
        .await
        .unwrap();
    let tokens = pair(app.refresh(&tokens.refresh).await).await;
    let verify = |token: Option<String>| {
        let mut request = app.http.get(app.url("/auth/verify"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let valid = verify(Some(tokens.access.clone())).await.unwrap();
    let missing = verify(None).await.unwrap();
    let garbage = verify(Some("not.a.token".to_owned())).await.unwrap();
    app.post("/auth/logout", &tokens.access).await;
    let after_logout = verify(Some(tokens.access.clone())).await.unwrap();

    assert_eq!(valid.status(), StatusCode::OK);
    let me: Value = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(&app.log_in("quinn").await.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        valid.headers()["x-tessera-user"],
        me["sub"].as_str().unwrap()
    );
    assert_eq!(valid.headers()["x-tessera-roles"], "admin,ops");
    for refused in [missing, garbage, after_logout] {
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
    }
}

#[tokio::test]
async fn the_revocation_feed_lists_ended_sessions_for_resource_servers_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("resource.secret");
    let credential = "cmVzb3VyY2Utc2VydmVyLWZlZWQtY3JlZGVudGlhbC0zMg";
    std::fs::write(&secret_file, credential).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let app = spawn_app_with(|config| config.introspection_secret_file = Some(secret_file)).await;
    app.sign_up("rosa").await;
    let ended = app.log_in("rosa").await;
    let kept = app.log_in("rosa").await;
    let claims = |token: &str| -> Value {
        let segment = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, segment)
                .unwrap(),
        )
        .unwrap()
    };
    let before = claims(&ended.access)["iat"].as_i64().unwrap();
    app.post("/auth/logout", &ended.access).await;

    let feed: Value = app
        .http
        .get(app.url(&format!("/auth/revocations?since={before}")))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let anonymous = app
        .http
        .get(app.url("/auth/revocations"))
        .send()
        .await
        .unwrap();

    let sids: Vec<&str> = feed["ended"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["sid"].as_str().unwrap())
        .collect();
    assert!(sids.contains(&claims(&ended.access)["sid"].as_str().unwrap()));
    assert!(!sids.contains(&claims(&kept.access)["sid"].as_str().unwrap()));
    assert!(feed["cursor"].as_i64().unwrap() >= before);
    assert!(feed["horizon"].as_i64().unwrap() > 0);
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_live_feed_streams_an_end_as_it_happens() {
    use std::os::unix::fs::PermissionsExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("resource.secret");
    let credential = "cmVzb3VyY2Utc2VydmVyLXN0cmVhbS1jcmVkZW50aWFs";
    std::fs::write(&secret_file, credential).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let app = spawn_app_with(|config| config.introspection_secret_file = Some(secret_file)).await;
    app.sign_up("sven").await;
    let tokens = app.log_in("sven").await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET /auth/revocations/stream HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {credential}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The answer's head arrives before anything ends.
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the stream closed");
        received.extend_from_slice(&buffer[..read]);
    }
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));

    app.post("/auth/logout", &tokens.access).await;
    let sid = {
        let segment = tokens.access.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, segment)
                .unwrap(),
        )
        .unwrap();
        claims["sid"].as_str().unwrap().to_owned()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !String::from_utf8_lossy(&received).contains(&sid) {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .expect("no event within 2 s")
            .unwrap();
        assert!(read > 0, "the stream closed");
        received.extend_from_slice(&buffer[..read]);
    }

    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("event: ended"));
}

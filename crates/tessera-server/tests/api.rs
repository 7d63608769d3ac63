//! The HTTP contract end to end: each test starts the service on port 0 with a fresh
//! data dir (and database) and talks to it over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, spawn_app, spawn_app_with};

struct Tokens {
    access: String,
    refresh: String,
}

impl TestApp {
    async fn sign_up(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/auth/signup"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap()
    }

    async fn password_grant(&self, username: &str, password: &str) -> reqwest::Response {
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

    async fn refresh_grant(&self, refresh: &str) -> reqwest::Response {
        self.http
            .post(self.url("/oauth/token"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .send()
            .await
            .unwrap()
    }

    async fn user_with_tokens(&self, username: &str) -> Tokens {
        assert_eq!(
            self.sign_up(username, "correct horse").await.status(),
            StatusCode::CREATED
        );
        tokens(self.password_grant(username, "correct horse").await).await
    }

    async fn get(&self, path: &str, access: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }
}

async fn tokens(response: reqwest::Response) -> Tokens {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    Tokens {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

async fn assert_invalid_token(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert!(response.headers().get("set-cookie").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn the_whole_loop_works_from_signup_to_logout() {
    let app = spawn_app().await;
    let first = app.user_with_tokens("alice").await;

    let created = app
        .http
        .post(app.url("/api/notes"))
        .bearer_auth(&first.access)
        .json(&json!({"title": "groceries", "body": "milk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let note: Value = created.json().await.unwrap();
    let listed: Value = app
        .get("/api/notes", &first.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], note["id"]);

    let second = tokens(app.refresh_grant(&first.refresh).await).await;
    assert_ne!(second.refresh, first.refresh);
    let me: Value = app
        .get("/userinfo", &second.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "alice");

    let logout = app
        .http
        .post(app.url("/auth/logout"))
        .bearer_auth(&second.access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        error_code(app.refresh_grant(&second.refresh).await).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".to_owned())
    );
    assert_invalid_token(app.get("/api/notes", &second.access).await).await;
    assert_invalid_token(app.get("/userinfo", &first.access).await).await;
}

#[tokio::test]
async fn an_expired_access_token_is_refused_and_renewal_restores_access() {
    // Times are whole seconds, so a token lives between ttl - 1 and ttl seconds: two
    // leave the renewed token a full second to be used in, however slow the machine.
    let app = spawn_app_with(|config| {
        config.access_ttl = Duration::from_secs(2);
        config.leeway = Duration::ZERO;
    })
    .await;
    let first = app.user_with_tokens("bob").await;
    assert_eq!(
        app.get("/userinfo", &first.access).await.status(),
        StatusCode::OK
    );

    tokio::time::sleep(Duration::from_millis(3100)).await;

    assert_invalid_token(app.get("/userinfo", &first.access).await).await;
    let renewed = tokens(app.refresh_grant(&first.refresh).await).await;
    assert_eq!(
        app.get("/userinfo", &renewed.access).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_spent_refresh_token_is_refused_and_ends_its_session_without_a_grace_window() {
    // Without a grace window a spent token is refused at once.
    let app = spawn_app_with(|config| config.refresh_grace = Duration::ZERO).await;
    let first = app.user_with_tokens("carol").await;
    let second = tokens(app.refresh_grant(&first.refresh).await).await;

    let replay = app.refresh_grant(&first.refresh).await;

    assert_eq!(
        error_code(replay).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".to_owned())
    );
    // Reuse ends the session: the successor dies too.
    assert_eq!(
        error_code(app.refresh_grant(&second.refresh).await).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".to_owned())
    );
}

#[tokio::test]
async fn tampered_foreign_and_misused_tokens_are_all_refused() {
    let app = spawn_app().await;
    let other = spawn_app().await;
    let mine = app.user_with_tokens("erin").await;
    let foreign = other.user_with_tokens("erin").await;

    let (head, rest) = mine.access.split_once('.').unwrap();
    let (claims, signature) = rest.split_once('.').unwrap();
    let mut flipped = claims.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{head}.{}.{signature}", String::from_utf8(flipped).unwrap());

    for token in [
        tampered.as_str(),
        foreign.access.as_str(),
        mine.refresh.as_str(),
        "",
        "not-a-token",
    ] {
        assert_invalid_token(app.get("/api/notes", token).await).await;
    }
    let no_header = app.http.get(app.url("/userinfo")).send().await.unwrap();
    assert_invalid_token(no_header).await;
}

#[tokio::test]
async fn an_access_token_is_not_accepted_as_a_refresh_token() {
    let app = spawn_app().await;
    let mine = app.user_with_tokens("frank").await;

    let response = app.refresh_grant(&mine.access).await;

    assert_eq!(
        error_code(response).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".to_owned())
    );
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    app.user_with_tokens("grace").await;

    let wrong = app.password_grant("grace", "wrong password").await;
    let unknown = app.password_grant("nobody", "wrong password").await;

    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(unknown.status(), wrong.status());
    let wrong = wrong.bytes().await.unwrap();
    assert_eq!(unknown.bytes().await.unwrap(), wrong);
    assert!(String::from_utf8_lossy(&wrong).contains("invalid_grant"));
}

#[tokio::test]
async fn usernames_are_trimmed_and_unique_regardless_of_case() {
    let app = spawn_app().await;
    let created = app.sign_up("  Heidi ", "correct horse").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["username"], "Heidi");

    let taken = app.sign_up("HEIDI", "another password").await;

    assert_eq!(taken.status(), StatusCode::CONFLICT);
    tokens(app.password_grant("heidi", "correct horse").await).await;
}

#[tokio::test]
async fn signup_refuses_short_passwords_and_malformed_bodies() {
    let app = spawn_app().await;

    let short = app.sign_up("ivan", "1234567").await;
    let wrong_type = app
        .http
        .post(app.url("/auth/signup"))
        .json(&json!({"username": 5, "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    let not_json = app
        .http
        .post(app.url("/auth/signup"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    let no_type = app
        .http
        .post(app.url("/auth/signup"))
        .body(r#"{"username":"ivan","password":"correct horse"}"#)
        .send()
        .await
        .unwrap();
    let huge = app
        .http
        .post(app.url("/auth/signup"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"username":"{}"}}"#, "x".repeat(200_000)))
        .send()
        .await
        .unwrap();

    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong_type.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(not_json).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_code(no_type).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(error_code(huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_token_endpoint_takes_json_and_answers_rfc_6749_errors() {
    let app = spawn_app().await;
    app.user_with_tokens("judy").await;
    let post = |body: Value| app.http.post(app.url("/oauth/token")).json(&body).send();

    let json_login = post(json!({
        "grant_type": "password", "username": "judy", "password": "correct horse",
    }))
    .await
    .unwrap();
    tokens(json_login).await;

    for (body, expected) in [
        (
            json!({"grant_type": "client_credentials"}),
            "unsupported_grant_type",
        ),
        (json!({"username": "judy"}), "invalid_request"),
        (
            json!({"grant_type": "password", "username": "judy"}),
            "invalid_request",
        ),
        (json!({"grant_type": "refresh_token"}), "invalid_request"),
        (
            json!({"grant_type": "password", "username": 1, "password": 2}),
            "invalid_request",
        ),
        (json!([1, 2]), "invalid_request"),
    ] {
        let response = post(body.clone()).await.unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, expected.to_owned()),
            "{body}"
        );
    }
    let duplicated = app
        .http
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=judy&username=eve&password=correct+horse")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(duplicated).await,
        (StatusCode::BAD_REQUEST, "invalid_request".to_owned())
    );
    let plain = app
        .http
        .post(app.url("/oauth/token"))
        .header("content-type", "text/plain")
        .body("grant_type=password")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn a_user_sees_only_their_own_notes() {
    let app = spawn_app().await;
    let alice = app.user_with_tokens("kate").await;
    let mallory = app.user_with_tokens("mallory").await;
    let note: Value = app
        .http
        .post(app.url("/api/notes"))
        .bearer_auth(&alice.access)
        .json(&json!({"title": "secret plans"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("/api/notes/{}", note["id"].as_str().unwrap());

    let read = app.get(&path, &mallory.access).await;
    let update = app
        .http
        .put(app.url(&path))
        .bearer_auth(&mallory.access)
        .json(&json!({"title": "mine now"}))
        .send()
        .await
        .unwrap();
    let delete = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&mallory.access)
        .send()
        .await
        .unwrap();
    let listed: Value = app
        .get("/api/notes", &mallory.access)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(read.status(), StatusCode::NOT_FOUND);
    assert_eq!(update.status(), StatusCode::NOT_FOUND);
    assert_eq!(delete.status(), StatusCode::NOT_FOUND);
    assert_eq!(listed, json!([]));
    let own: Value = app.get(&path, &alice.access).await.json().await.unwrap();
    assert_eq!(own["title"], "secret plans");
}

#[tokio::test]
async fn notes_can_be_updated_and_deleted_by_their_owner() {
    let app = spawn_app().await;
    let owner = app.user_with_tokens("liam").await;
    let note: Value = app
        .http
        .post(app.url("/api/notes"))
        .bearer_auth(&owner.access)
        .json(&json!({"title": "draft", "body": "v1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("/api/notes/{}", note["id"].as_str().unwrap());

    let updated: Value = app
        .http
        .put(app.url(&path))
        .bearer_auth(&owner.access)
        .json(&json!({"title": "final", "body": "v2"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let empty_title = app
        .http
        .put(app.url(&path))
        .bearer_auth(&owner.access)
        .json(&json!({"title": "  "}))
        .send()
        .await
        .unwrap();
    let deleted = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&owner.access)
        .send()
        .await
        .unwrap();

    assert_eq!(updated["title"], "final");
    assert_eq!(updated["body"], "v2");
    assert_eq!(empty_title.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&path, &owner.access).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn global_logout_ends_every_session_of_the_user() {
    let app = spawn_app().await;
    let laptop = app.user_with_tokens("mia").await;
    let phone = tokens(app.password_grant("mia", "correct horse").await).await;

    let logout = app
        .http
        .post(app.url("/auth/logout?scope=global"))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();

    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_invalid_token(app.get("/userinfo", &phone.access).await).await;
    assert_eq!(
        error_code(app.refresh_grant(&phone.refresh).await).await.1,
        "invalid_grant"
    );
}

#[tokio::test]
async fn logging_out_one_session_leaves_the_others_alone() {
    let app = spawn_app().await;
    let laptop = app.user_with_tokens("noah").await;
    let phone = tokens(app.password_grant("noah", "correct horse").await).await;

    app.http
        .post(app.url("/auth/logout"))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();

    assert_eq!(
        app.get("/userinfo", &phone.access).await.status(),
        StatusCode::OK
    );
    tokens(app.refresh_grant(&phone.refresh).await).await;
}

#[tokio::test]
async fn public_documents_describe_the_keys_and_endpoints() {
    let app = spawn_app().await;

    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
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
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();

    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert!(jwks["keys"][0].get("d").is_none());
    assert_eq!(discovery["issuer"], app.base);
    for (member, path) in [
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("userinfo_endpoint", "/userinfo"),
    ] {
        assert_eq!(discovery[member], format!("{}{path}", app.base), "{member}");
    }
    assert_eq!(
        discovery["grant_types_supported"],
        json!(["password", "refresh_token"])
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
    // Off unless a resource-server credential is configured.
    assert!(discovery.get("introspection_endpoint").is_none());
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}/.well-known/jwks.json", app.base)
    );
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let app = spawn_app().await;

    let missing = app.http.get(app.url("/no/such/path")).send().await.unwrap();
    let wrong_method = app.http.delete(app.url("/healthz")).send().await.unwrap();

    assert_eq!(error_code(missing).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        error_code(wrong_method).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn extractor_refusals_keep_the_json_error_shape() {
    let app = spawn_app().await;
    let mine = app.user_with_tokens("olivia").await;

    let huge_form = app
        .http
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username={}",
            "x".repeat(70_000)
        ))
        .send()
        .await
        .unwrap();
    let bad_path = app.get("/api/notes/%FF", &mine.access).await;

    assert_eq!(
        error_code(huge_form).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large".to_owned()
        )
    );
    assert_eq!(bad_path.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(bad_path).await.1, "invalid_request");
}

#[tokio::test]
async fn answers_about_a_user_are_not_cacheable() {
    let app = spawn_app().await;
    let mine = app.user_with_tokens("paul").await;

    let me = app.get("/userinfo", &mine.access).await;
    let notes = app.get("/api/notes", &mine.access).await;
    let jwks = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();

    assert_eq!(me.headers()["cache-control"], "no-store");
    assert_eq!(notes.headers()["cache-control"], "no-store");
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = spawn_app_with(|config| {
        config.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;

    assert!(read.is_ok(), "the connection was still open after 5 s");
    let healthy = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), StatusCode::OK);
}

//! `Session` against a small in-process mock of Tessera's token endpoint,
//! logout route and one protected route: login, bearer requests, renewal
//! before expiry and after a 401, one renewal for many waiters, and logout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{Value, json};
use tessera_client::{Error, MemoryStore, Method, ServerUrl, Session, StoredTokens, TokenStore};

/// What the mock server knows and counts.
#[derive(Default)]
struct Mock {
    live_access: HashSet<String>,
    live_refresh: HashSet<String>,
    issued: u64,
    login_expires_in: u64,
    refresh_expires_in: u64,
    refresh_delay: Duration,
    throttled: bool,
    refuse_every_access_token: bool,
    logout_status: Option<StatusCode>,
    refreshes: usize,
    api_calls: usize,
    logouts: usize,
    last_form: HashMap<String, String>,
    /// The mock's clock minus the real one; access tokens then carry an
    /// `exp` claim and answers a `Date` header on the mock's clock.
    clock_skew_secs: Option<i64>,
}

type Shared = Arc<Mutex<Mock>>;

fn invalid_token() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        Json(json!({"error": "invalid_token"})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

fn issue(mock: &mut Mock, expires_in: u64) -> Value {
    mock.issued += 1;
    let mut access = format!("access-{}", mock.issued);
    if let Some(skew) = mock.clock_skew_secs {
        use base64::Engine;
        let exp = skewed_now(skew) + expires_in as i64;
        let claims = json!({"exp": exp, "n": mock.issued}).to_string();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
        access = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
    }
    let refresh = format!("refresh-{}", mock.issued);
    mock.live_access.insert(access.clone());
    mock.live_refresh.insert(refresh.clone());
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": refresh,
    })
}

async fn token(State(mock): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let delay = mock.lock().unwrap().refresh_delay;
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        tokio::time::sleep(delay).await;
    }

    let mut mock = mock.lock().unwrap();
    mock.last_form = form.clone();
    if mock.throttled {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "7")],
            Json(json!({"error": "slow_down"})),
        )
            .into_response();
    }
    let bad_grant = || {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "invalid_grant",
                "error_description": "no such grant",
            })),
        )
            .into_response()
    };

    match form.get("grant_type").map(String::as_str) {
        Some("password") => {
            let good = form.get("username").map(String::as_str) == Some("alice")
                && form.get("password").map(String::as_str) == Some("pw");
            if !good {
                return bad_grant();
            }
            let expires_in = mock.login_expires_in;
            let answer = Json(issue(&mut mock, expires_in)).into_response();
            with_date(&mock, answer)
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned();
            // Single use: a spent refresh token is refused.
            if !presented.is_some_and(|t| mock.live_refresh.remove(&t)) {
                return bad_grant();
            }
            mock.refreshes += 1;
            let expires_in = mock.refresh_expires_in;
            let answer = Json(issue(&mut mock, expires_in)).into_response();
            with_date(&mock, answer)
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response(),
    }
}

fn skewed_now(skew: i64) -> i64 {
    unix_now() as i64 + skew
}

/// Sets the `Date` header to the mock's (skewed) clock.
fn with_date(mock: &Mock, mut response: Response) -> Response {
    if let Some(skew) = mock.clock_skew_secs {
        let date = UNIX_EPOCH + Duration::from_secs(skewed_now(skew) as u64);
        let value = httpdate::fmt_http_date(date).parse().unwrap();
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

async fn notes(State(mock): State<Shared>, headers: HeaderMap) -> Response {
    let mut mock = mock.lock().unwrap();
    mock.api_calls += 1;
    match bearer(&headers) {
        Some(token) if mock.live_access.contains(&token) && !mock.refuse_every_access_token => {
            Json(json!([{"title": "t", "seen_with": token}])).into_response()
        }
        _ => invalid_token(),
    }
}

async fn logout(State(mock): State<Shared>, headers: HeaderMap) -> Response {
    let mut mock = mock.lock().unwrap();
    mock.logouts += 1;
    if let Some(status) = mock.logout_status {
        return status.into_response();
    }
    match bearer(&headers) {
        Some(token) if mock.live_access.remove(&token) => {
            mock.live_refresh.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        _ => invalid_token(),
    }
}

struct Harness {
    mock: Shared,
    store: Arc<MemoryStore>,
    session: Arc<Session>,
}

async fn start(configure: impl FnOnce(&mut Mock)) -> Harness {
    let mut state = Mock {
        login_expires_in: 900,
        refresh_expires_in: 900,
        ..Mock::default()
    };
    configure(&mut state);
    let mock = Arc::new(Mutex::new(state));

    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/api/notes", get(notes))
        .route("/auth/logout", post(logout))
        .with_state(Arc::clone(&mock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let server = ServerUrl::parse(&format!("http://{address}")).unwrap();
    let store = Arc::new(MemoryStore::new());
    let session = Session::new(server, store.clone() as Arc<dyn TokenStore>)
        .unwrap()
        .with_client_id("tests");
    Harness {
        mock,
        store,
        session: Arc::new(session),
    }
}

impl Harness {
    fn stored(&self) -> Option<StoredTokens> {
        self.store.load(self.session.server()).unwrap()
    }

    fn count(&self, read: impl FnOnce(&Mock) -> usize) -> usize {
        read(&self.mock.lock().unwrap())
    }

    async fn notes(&self) -> Value {
        self.session
            .request_json(Method::GET, "/api/notes", None)
            .await
            .unwrap()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn login_stores_tokens_and_requests_carry_the_access_token() {
    let harness = start(|_| {}).await;

    let tokens = harness.session.login("alice", "pw").await.unwrap();
    let notes = harness.notes().await;

    assert_eq!(tokens.username, "alice");
    assert_eq!(harness.stored(), Some(tokens.clone()));
    assert_eq!(notes[0]["seen_with"], tokens.access_token);
    let form = harness.mock.lock().unwrap().last_form.clone();
    assert_eq!(form["grant_type"], "password");
    assert_eq!(form["client_id"], "tests");
}

#[tokio::test]
async fn expiry_is_counted_from_expires_in_not_the_local_clock() {
    let harness = start(|mock| mock.login_expires_in = 3_600).await;

    let before = unix_now();
    let tokens = harness.session.login("alice", "pw").await.unwrap();
    let after = unix_now();

    assert!(tokens.expires_at >= before + 3_600);
    assert!(tokens.expires_at <= after + 3_600);
    assert_eq!(tokens.lifetime_secs, 3_600);
}

#[tokio::test]
async fn wrong_password_reports_the_servers_error_code() {
    let harness = start(|_| {}).await;

    let error = harness.session.login("alice", "nope").await.unwrap_err();

    assert_eq!(error.server_code(), Some("invalid_grant"));
    assert!(error.to_string().contains("no such grant"), "{error}");
    assert!(!error.to_string().contains("nope"));
    assert_eq!(harness.stored(), None);
}

#[tokio::test]
async fn throttled_login_reports_when_to_retry() {
    let harness = start(|mock| mock.throttled = true).await;

    let error = harness.session.login("alice", "pw").await.unwrap_err();

    match error {
        Error::Status {
            status,
            retry_after,
            ..
        } => {
            assert_eq!(status.as_u16(), 429);
            assert_eq!(retry_after, Some(7));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn expired_access_token_is_renewed_before_the_request() {
    let harness = start(|mock| mock.login_expires_in = 0).await;
    let first = harness.session.login("alice", "pw").await.unwrap();

    let notes = harness.notes().await;

    let renewed = harness.stored().unwrap();
    assert_eq!(harness.count(|m| m.refreshes), 1);
    assert_eq!(harness.count(|m| m.api_calls), 1);
    assert_ne!(renewed.access_token, first.access_token);
    assert_eq!(notes[0]["seen_with"], renewed.access_token);
}

#[tokio::test]
async fn renewal_replaces_the_spent_refresh_token() {
    let harness = start(|_| {}).await;
    let first = harness.session.login("alice", "pw").await.unwrap();

    let second = harness.session.refresh().await.unwrap();
    let third = harness.session.refresh().await.unwrap();

    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(third.refresh_token, second.refresh_token);
    assert_eq!(harness.stored(), Some(third));
}

#[tokio::test]
async fn rejected_token_is_renewed_once_and_the_request_retried() {
    let harness = start(|_| {}).await;
    harness.session.login("alice", "pw").await.unwrap();
    // The server forgets the access token (say, after a key rotation).
    harness.mock.lock().unwrap().live_access.clear();

    let notes = harness.notes().await;

    assert_eq!(harness.count(|m| m.refreshes), 1);
    assert_eq!(harness.count(|m| m.api_calls), 2);
    assert_eq!(
        notes[0]["seen_with"],
        harness.stored().unwrap().access_token
    );
}

#[tokio::test]
async fn a_second_rejection_is_returned_not_retried_again() {
    let harness = start(|mock| mock.refuse_every_access_token = true).await;
    harness.session.login("alice", "pw").await.unwrap();

    let response = harness
        .session
        .send(Method::GET, "/api/notes", None)
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(harness.count(|m| m.refreshes), 1);
    assert_eq!(harness.count(|m| m.api_calls), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_renewal_before_expiry() {
    let harness = start(|mock| {
        mock.login_expires_in = 0;
        mock.refresh_delay = Duration::from_millis(100);
    })
    .await;
    harness.session.login("alice", "pw").await.unwrap();

    let requests: Vec<_> = (0..10)
        .map(|_| {
            let session = Arc::clone(&harness.session);
            tokio::spawn(async move {
                session
                    .request_json::<Value>(Method::GET, "/api/notes", None)
                    .await
            })
        })
        .collect();
    for request in requests {
        request.await.unwrap().unwrap();
    }

    assert_eq!(harness.count(|m| m.refreshes), 1);
    assert_eq!(harness.count(|m| m.api_calls), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rejections_share_one_renewal() {
    let harness = start(|mock| {
        mock.refresh_delay = Duration::from_millis(100);
    })
    .await;
    harness.session.login("alice", "pw").await.unwrap();
    harness.mock.lock().unwrap().live_access.clear();

    let requests: Vec<_> = (0..10)
        .map(|_| {
            let session = Arc::clone(&harness.session);
            tokio::spawn(async move {
                session
                    .request_json::<Value>(Method::GET, "/api/notes", None)
                    .await
            })
        })
        .collect();
    for request in requests {
        request.await.unwrap().unwrap();
    }

    assert_eq!(harness.count(|m| m.refreshes), 1);
}

#[tokio::test]
async fn refused_refresh_token_clears_the_store_and_asks_for_login() {
    let harness = start(|mock| mock.login_expires_in = 0).await;
    harness.session.login("alice", "pw").await.unwrap();
    harness.mock.lock().unwrap().live_refresh.clear();

    let error = harness
        .session
        .send(Method::GET, "/api/notes", None)
        .await
        .unwrap_err();

    assert!(matches!(error, Error::SessionEnded { .. }), "{error:?}");
    assert!(error.to_string().contains("log in again"));
    assert_eq!(harness.stored(), None);
    assert_eq!(harness.count(|m| m.api_calls), 0);
}

#[tokio::test]
async fn requests_without_login_say_so_without_calling_the_server() {
    let harness = start(|_| {}).await;

    let error = harness
        .session
        .send(Method::GET, "/api/notes", None)
        .await
        .unwrap_err();

    assert!(matches!(error, Error::LoggedOut { .. }), "{error:?}");
    assert_eq!(harness.count(|m| m.api_calls), 0);
}

#[tokio::test]
async fn paths_naming_another_host_are_refused_before_sending() {
    let harness = start(|_| {}).await;
    harness.session.login("alice", "pw").await.unwrap();

    // Even a path naming the mock itself as a host must be refused.
    let authority = harness.session.server().as_str().replace("http:", "");
    let path = format!("{authority}/api/notes");

    let error = harness
        .session
        .send(Method::GET, &path, None)
        .await
        .unwrap_err();

    assert!(matches!(error, Error::InvalidPath { .. }), "{error:?}");
}

#[tokio::test]
async fn logout_ends_the_session_and_forgets_the_tokens() {
    let harness = start(|_| {}).await;
    let tokens = harness.session.login("alice", "pw").await.unwrap();

    harness.session.logout().await.unwrap();

    assert_eq!(harness.count(|m| m.logouts), 1);
    assert_eq!(harness.stored(), None);
    assert!(
        !harness
            .mock
            .lock()
            .unwrap()
            .live_refresh
            .contains(&tokens.refresh_token)
    );
}

#[tokio::test]
async fn logout_forgets_the_tokens_when_the_server_answers_401() {
    let harness = start(|mock| {
        mock.logout_status = Some(StatusCode::UNAUTHORIZED);
    })
    .await;
    harness.session.login("alice", "pw").await.unwrap();

    harness.session.logout().await.unwrap();

    assert_eq!(harness.stored(), None);
}

#[tokio::test]
async fn logout_keeps_the_tokens_when_the_server_fails() {
    let harness = start(|mock| {
        mock.logout_status = Some(StatusCode::SERVICE_UNAVAILABLE);
    })
    .await;
    let tokens = harness.session.login("alice", "pw").await.unwrap();

    let error = harness.session.logout().await.unwrap_err();

    assert!(matches!(error, Error::Status { .. }), "{error:?}");
    assert_eq!(harness.stored(), Some(tokens));
}

#[tokio::test]
async fn logout_with_an_expired_token_renews_first() {
    let harness = start(|mock| mock.login_expires_in = 0).await;
    harness.session.login("alice", "pw").await.unwrap();

    harness.session.logout().await.unwrap();

    assert_eq!(harness.count(|m| m.refreshes), 1);
    assert_eq!(harness.count(|m| m.logouts), 1);
    assert_eq!(harness.stored(), None);
}

#[tokio::test]
async fn a_server_clock_two_hours_off_changes_neither_expiry_nor_renewal() {
    for skew in [2 * 3_600, -2 * 3_600] {
        let harness = start(|mock| mock.clock_skew_secs = Some(skew)).await;

        harness.session.login("alice", "pw").await.unwrap();
        harness.notes().await;

        let stored = harness.stored().unwrap();
        let expected = unix_now() + 900;
        assert!(stored.expires_at.abs_diff(expected) <= 2, "skew {skew}");
        assert!(stored.server_clock_offset_secs.abs_diff(skew) <= 2);
        assert_eq!(harness.count(|m| m.refreshes), 0, "skew {skew}");
    }
}

#[tokio::test]
async fn renewal_comes_on_time_when_the_server_clock_is_two_hours_behind() {
    let harness = start(|mock| {
        mock.clock_skew_secs = Some(-2 * 3_600);
        mock.login_expires_in = 2;
        mock.refresh_expires_in = 900;
    })
    .await;
    harness.session.login("alice", "pw").await.unwrap();

    harness.notes().await;
    let before = harness.count(|m| m.refreshes);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    harness.notes().await;
    harness.notes().await;

    assert_eq!(before, 0);
    assert_eq!(harness.count(|m| m.refreshes), 1);
    assert_eq!(harness.count(|m| m.api_calls), 3, "no request was refused");
}

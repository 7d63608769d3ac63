//! Tests of the parts that talk to an issuer: remote keys, roles and scopes over HTTP,
//! and the revocation feed, against small mock issuers on 127.0.0.1.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_token::{KeyAlgorithm, KeySet, SigningKey, TokenIssuer, Validator, ValidatorConfig};

use crate::remote_keys::Clock;
use crate::{
    Guard, Identity, InsufficientScope, MIN_REFETCH_INTERVAL, Refusal, RemoteError, RemoteKeys,
    RevocationFeed, unix_now,
};
use tessera_token::TokenError;

const AUDIENCE: &str = "tessera";

/// What the mock issuer serves and how often it was asked.
#[derive(Default)]
struct MockState {
    issuer: Mutex<String>,
    discovery_issuer: Mutex<Option<String>>,
    jwks_uri: Mutex<Option<String>>,
    jwks: Mutex<serde_json::Value>,
    cache_control: Mutex<Option<String>>,
    feed_page: Mutex<serde_json::Value>,
    feed_requests: Mutex<Vec<(Option<String>, Option<String>)>>,
    down: AtomicBool,
    /// Events (already formatted) sent to open revocation streams.
    stream: Mutex<Option<tokio::sync::broadcast::Sender<String>>>,
    /// When set, the stream route answers this status instead of streaming.
    stream_refusal: Mutex<Option<StatusCode>>,
    stream_requests: Mutex<Vec<Option<String>>>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

struct MockIssuer {
    url: String,
    state: Arc<MockState>,
}

impl MockIssuer {
    async fn start() -> Self {
        let state = Arc::new(MockState::default());
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/auth/revocations", get(revocations))
            .route("/auth/revocations/stream", get(revocation_stream))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        *state.issuer.lock().unwrap() = url.clone();
        *state.stream.lock().unwrap() = Some(tokio::sync::broadcast::channel(16).0);
        Self { url, state }
    }

    fn serve_keys(&self, keys: &[&SigningKey]) {
        let set = KeySet::new(keys.iter().map(|key| key.verifying_key()).collect());
        *self.state.jwks.lock().unwrap() = serde_json::to_value(set.to_jwks()).unwrap();
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    fn guard(&self) -> Guard {
        let config = ValidatorConfig::new(&self.url, AUDIENCE);
        Guard::new(Validator::new(KeySet::default(), config).unwrap())
    }

    fn remote_keys(&self, clock: &ManualClock) -> RemoteKeys {
        RemoteKeys::discover(&self.url)
            .unwrap()
            .with_http_client(test_client())
            .with_clock(clock.clock())
    }

    fn token(&self, key: &SigningKey, session: &str) -> String {
        TokenIssuer::new(key.clone(), &self.url, AUDIENCE)
            .issue("user-1", session, unix_now(), 900)
            .unwrap()
            .token
    }
}

fn unavailable(state: &MockState) -> Option<Response> {
    state
        .down
        .load(Ordering::SeqCst)
        .then(|| StatusCode::SERVICE_UNAVAILABLE.into_response())
}

async fn discovery(State(state): State<Arc<MockState>>) -> Response {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(down) = unavailable(&state) {
        return down;
    }
    let issuer = state.issuer.lock().unwrap().clone();
    let named = state.discovery_issuer.lock().unwrap().clone();
    let jwks_uri = state.jwks_uri.lock().unwrap().clone();
    axum::Json(serde_json::json!({
        "issuer": named.unwrap_or_else(|| issuer.clone()),
        "jwks_uri": jwks_uri.unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json")),
    }))
    .into_response()
}

async fn jwks(State(state): State<Arc<MockState>>) -> Response {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(down) = unavailable(&state) {
        return down;
    }
    let body = state.jwks.lock().unwrap().clone();
    let mut response = axum::Json(body).into_response();
    if let Some(value) = state.cache_control.lock().unwrap().clone() {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, value.parse().unwrap());
    }
    response
}

async fn revocations(
    State(state): State<Arc<MockState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let credential = headers
        .get(AUTHORIZATION)
        .map(|value| value.to_str().unwrap().to_owned());
    state
        .feed_requests
        .lock()
        .unwrap()
        .push((query, credential));
    if let Some(down) = unavailable(&state) {
        return down;
    }
    axum::Json(state.feed_page.lock().unwrap().clone()).into_response()
}

async fn revocation_stream(
    State(state): State<Arc<MockState>>,
    RawQuery(query): RawQuery,
) -> Response {
    state.stream_requests.lock().unwrap().push(query);
    if let Some(status) = *state.stream_refusal.lock().unwrap() {
        return status.into_response();
    }
    let events = state.stream.lock().unwrap().as_ref().unwrap().subscribe();
    let body = futures_util::stream::unfold(events, |mut events| async move {
        let event = events.recv().await.ok()?;
        Some((Ok::<_, std::convert::Infallible>(event), events))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// Talks to 127.0.0.1 directly, whatever proxy the environment names.
fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A clock that moves only when told to.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn clock(&self) -> Clock {
        let now = self.0.clone();
        Arc::new(move || *now.lock().unwrap())
    }
}

fn ed25519() -> SigningKey {
    SigningKey::generate(KeyAlgorithm::EdDSA).unwrap()
}

#[tokio::test]
async fn discovery_then_jwks_installs_the_issuers_keys() {
    let issuer = MockIssuer::start().await;
    let key = ed25519();
    issuer.serve_keys(&[&key]);
    let guard = issuer.guard();
    let token = issuer.token(&key, "session-1");
    assert!(guard.check_token(&token).is_err());

    let installed = issuer
        .remote_keys(&ManualClock::new())
        .refresh(&guard)
        .await;

    assert_eq!(installed.unwrap(), 1);
    assert_eq!(guard.check_token(&token).unwrap().sub, "user-1");
    assert_eq!(issuer.state.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let issuer = MockIssuer::start().await;
    issuer.serve_keys(&[&ed25519()]);
    *issuer.state.discovery_issuer.lock().unwrap() = Some(format!("{}/", issuer.url));

    let outcome = issuer
        .remote_keys(&ManualClock::new())
        .refresh(&issuer.guard())
        .await;

    assert!(matches!(outcome, Err(RemoteError::IssuerMismatch { .. })));
    assert_eq!(issuer.jwks_hits(), 0);
}

#[tokio::test]
async fn a_jwks_uri_on_another_origin_is_not_followed_unless_allowed() {
    let issuer = MockIssuer::start().await;
    let elsewhere = MockIssuer::start().await;
    let key = ed25519();
    elsewhere.serve_keys(&[&key]);
    *issuer.state.jwks_uri.lock().unwrap() =
        Some(format!("{}/.well-known/jwks.json", elsewhere.url));
    let guard = issuer.guard();

    let refused = issuer
        .remote_keys(&ManualClock::new())
        .refresh(&guard)
        .await;
    assert!(matches!(refused, Err(RemoteError::CrossOriginJwks(_))));
    assert_eq!(elsewhere.jwks_hits(), 0);

    let allowed = issuer
        .remote_keys(&ManualClock::new())
        .allow_cross_origin_jwks()
        .refresh(&guard)
        .await;
    assert_eq!(allowed.unwrap(), 1);
    assert_eq!(elsewhere.jwks_hits(), 1);
}

#[tokio::test]
async fn a_direct_jwks_url_needs_no_discovery() {
    let issuer = MockIssuer::start().await;
    let key = ed25519();
    issuer.serve_keys(&[&key]);
    let guard = issuer.guard();

    let remote = RemoteKeys::from_jwks_url(&format!("{}/.well-known/jwks.json", issuer.url))
        .unwrap()
        .with_http_client(test_client());

    assert_eq!(remote.refresh(&guard).await.unwrap(), 1);
    assert_eq!(issuer.state.discovery_hits.load(Ordering::SeqCst), 0);
    assert!(guard.check_token(&issuer.token(&key, "s")).is_ok());
}

#[tokio::test]
async fn max_age_decides_when_keys_are_fetched_again() {
    let issuer = MockIssuer::start().await;
    issuer.serve_keys(&[&ed25519()]);
    *issuer.state.cache_control.lock().unwrap() = Some("public, max-age=120".to_owned());
    let clock = ManualClock::new();
    let remote = issuer.remote_keys(&clock);
    let guard = issuer.guard();

    let wait = remote.refresh_if_due(&guard).await;
    assert_eq!(wait, Duration::from_secs(120));
    assert_eq!(issuer.jwks_hits(), 1);

    clock.advance(Duration::from_secs(119));
    let wait = remote.refresh_if_due(&guard).await;
    assert_eq!(wait, Duration::from_secs(1));
    assert_eq!(issuer.jwks_hits(), 1);

    clock.advance(Duration::from_secs(1));
    remote.refresh_if_due(&guard).await;
    assert_eq!(issuer.jwks_hits(), 2);
}

#[tokio::test]
async fn max_age_is_bounded_and_defaults_to_five_minutes() {
    let issuer = MockIssuer::start().await;
    issuer.serve_keys(&[&ed25519()]);
    let guard = issuer.guard();
    let cases = [
        (None, 300),
        (Some("max-age=5"), 30),
        (Some("max-age=86400"), 3600),
        (Some("no-store"), 30),
        (Some("max-age=oops"), 300),
    ];

    for (cache_control, expected) in cases {
        *issuer.state.cache_control.lock().unwrap() = cache_control.map(str::to_owned);
        let remote = issuer.remote_keys(&ManualClock::new());

        let wait = remote.refresh_if_due(&guard).await;

        assert_eq!(wait, Duration::from_secs(expected), "{cache_control:?}");
    }
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_refetch_for_twenty_concurrent_checks() {
    let issuer = MockIssuer::start().await;
    let (old, new) = (ed25519(), ed25519());
    issuer.serve_keys(&[&old]);
    let clock = ManualClock::new();
    let remote = issuer.remote_keys(&clock);
    let guard = issuer.guard();
    remote.attach(&guard);
    remote.refresh(&guard).await.unwrap();
    clock.advance(MIN_REFETCH_INTERVAL);
    issuer.serve_keys(&[&old, &new]);
    let token = issuer.token(&new, "session-1");

    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (guard, token) = (guard.clone(), token.clone());
        checks.spawn(async move { guard.check_token_async(&token).await });
    }
    let outcomes = checks.join_all().await;

    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(issuer.jwks_hits(), 2);
}

#[tokio::test]
async fn unknown_kid_refetches_are_rate_limited() {
    let issuer = MockIssuer::start().await;
    let (first, second) = (ed25519(), ed25519());
    issuer.serve_keys(&[&first]);
    let clock = ManualClock::new();
    let remote = issuer.remote_keys(&clock);
    let guard = issuer.guard();
    remote.attach(&guard);
    remote.refresh(&guard).await.unwrap();
    issuer.serve_keys(&[&first, &second]);
    let token = issuer.token(&second, "session-1");

    clock.advance(MIN_REFETCH_INTERVAL - Duration::from_secs(1));
    let early = guard.check_token_async(&token).await;
    assert_eq!(early, Err(Refusal::Invalid(TokenError::UnknownKey)));
    assert_eq!(issuer.jwks_hits(), 1);

    clock.advance(Duration::from_secs(1));
    let later = guard.check_token_async(&token).await;
    assert!(later.is_ok());
    assert_eq!(issuer.jwks_hits(), 2);
}

#[tokio::test]
async fn an_issuer_that_is_down_leaves_the_known_keys_trusted() {
    let issuer = MockIssuer::start().await;
    let key = ed25519();
    issuer.serve_keys(&[&key]);
    let clock = ManualClock::new();
    let remote = issuer.remote_keys(&clock);
    let guard = issuer.guard();
    remote.attach(&guard);
    remote.refresh(&guard).await.unwrap();
    issuer.state.down.store(true, Ordering::SeqCst);

    clock.advance(Duration::from_secs(3600));
    let wait = remote.refresh_if_due(&guard).await;
    let unknown = guard
        .check_token_async(&issuer.token(&ed25519(), "s"))
        .await;

    assert_eq!(wait, crate::MIN_KEYS_MAX_AGE);
    assert!(matches!(
        remote.refresh(&guard).await,
        Err(RemoteError::Status(503))
    ));
    assert_eq!(unknown, Err(Refusal::Invalid(TokenError::UnknownKey)));
    assert!(guard.check_token(&issuer.token(&key, "s")).is_ok());
}

#[tokio::test]
async fn a_jwks_key_whose_alg_does_not_match_its_kty_is_skipped() {
    let issuer = MockIssuer::start().await;
    let (good, odd) = (ed25519(), ed25519());
    let mut mislabelled = odd.verifying_key().to_jwk().unwrap();
    mislabelled.alg = "ES256".to_owned();
    let mut wrong_kty = odd.verifying_key().to_jwk().unwrap();
    wrong_kty.kty = "RSA".to_owned();
    let good_jwk = good.verifying_key().to_jwk().unwrap();
    *issuer.state.jwks.lock().unwrap() = serde_json::json!({
        "keys": [mislabelled, wrong_kty, {"kty": "oct", "k": "c2VjcmV0"}, good_jwk],
    });
    let guard = issuer.guard();
    let remote = issuer.remote_keys(&ManualClock::new());

    assert_eq!(remote.refresh(&guard).await.unwrap(), 1);
    assert!(guard.check_token(&issuer.token(&good, "s")).is_ok());
    assert_eq!(
        guard.check_token(&issuer.token(&odd, "s")),
        Err(Refusal::Invalid(TokenError::UnknownKey))
    );

    *issuer.state.jwks.lock().unwrap() = serde_json::json!({ "keys": [mislabelled] });
    assert!(matches!(
        remote.refresh(&guard).await,
        Err(RemoteError::NoUsableKey)
    ));
    assert!(guard.check_token(&issuer.token(&good, "s")).is_ok());
}

/// A token with a `scope` claim, signed by hand: `TokenIssuer` sets no scope.
fn token_with_scope(issuer: &str, key: &SigningKey, scope: &str) -> String {
    let now = unix_now();
    let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid()});
    let claims = serde_json::json!({
        "iss": issuer, "sub": "user-1", "aud": AUDIENCE, "exp": now + 900, "iat": now,
        "nbf": now, "jti": "jti-1", "sid": "session-1", "scope": scope,
    });
    let encode = |value: serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let input = format!("{}.{}", encode(header), encode(claims));
    let signature = key.sign_jws_input(&input).unwrap();
    format!("{input}.{signature}")
}

async fn admin_only(identity: Identity) -> Result<&'static str, InsufficientScope> {
    identity.require_role("admin")?;
    Ok("admin")
}

async fn notes_reader(identity: Identity) -> Result<&'static str, InsufficientScope> {
    identity.require_scope("notes:read")?;
    Ok("notes")
}

#[tokio::test]
async fn a_missing_role_or_scope_answers_403_and_a_bad_token_401() {
    let key = ed25519();
    let issuer = "https://auth.example";
    let config = ValidatorConfig::new(issuer, AUDIENCE);
    let guard = Guard::new(Validator::new(KeySet::new(vec![key.verifying_key()]), config).unwrap());
    let router = Router::new()
        .route("/admin", get(admin_only))
        .route("/notes", get(notes_reader))
        .with_state(guard);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let minter = TokenIssuer::new(key.clone(), issuer, AUDIENCE);
    let admin = minter
        .issue_with_roles("u", "s", &["admin".to_owned()], unix_now(), 900)
        .unwrap()
        .token;
    let plain = minter.issue("u", "s", unix_now(), 900).unwrap().token;
    let reader = token_with_scope(issuer, &key, "notes:write notes:read");
    let near_miss = token_with_scope(issuer, &key, "notes:reader");
    let http = test_client();
    let call = async |path: &str, token: &str| {
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|value| value.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        (status, challenge, body)
    };

    assert_eq!(call("/admin", &admin).await.0, 200);
    assert_eq!(call("/notes", &reader).await.0, 200);
    for (path, token) in [
        ("/admin", &plain),
        ("/notes", &plain),
        ("/notes", &near_miss),
    ] {
        let (status, challenge, body) = call(path, token).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(
            challenge.as_deref(),
            Some(crate::INSUFFICIENT_SCOPE_CHALLENGE)
        );
        assert_eq!(body["error"], "insufficient_scope");
        assert!(body["error_description"].is_string());
    }
    let (status, challenge, body) = call("/admin", "not.a.token").await;
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some(crate::INVALID_TOKEN_CHALLENGE));
    assert_eq!(body["error"], "invalid_token");
}

fn feed_page(cursor: i64, ended: &[(&str, i64)], horizon: i64) -> serde_json::Value {
    let ended: Vec<_> = ended
        .iter()
        .map(|(sid, ended_at)| serde_json::json!({"sid": sid, "ended_at": ended_at}))
        .collect();
    serde_json::json!({"cursor": cursor, "ended": ended, "horizon": horizon})
}

async fn guard_with_key(issuer: &MockIssuer, key: &SigningKey) -> Guard {
    let guard = issuer.guard();
    guard.replace_keys(KeySet::new(vec![key.verifying_key()]));
    guard
}

#[tokio::test]
async fn the_feed_ends_a_session_and_forgets_it_after_the_horizon() {
    let issuer = MockIssuer::start().await;
    let key = ed25519();
    let guard = guard_with_key(&issuer, &key).await;
    let token = issuer.token(&key, "session-1");
    let other = issuer.token(&key, "session-2");
    let mut feed = RevocationFeed::new(&issuer.url, "feed-credential")
        .unwrap()
        .with_http_client(test_client())
        .starting_at(1_000);
    *issuer.state.feed_page.lock().unwrap() = feed_page(1_010, &[("session-1", 1_005)], 900);

    assert_eq!(feed.poll_once(&guard).await.unwrap(), 1);
    assert_eq!(guard.check_token(&token), Err(Refusal::SessionEnded));
    assert!(guard.check_token(&other).is_ok());

    *issuer.state.feed_page.lock().unwrap() = feed_page(1_905, &[], 900);
    feed.poll_once(&guard).await.unwrap();
    assert_eq!(guard.check_token(&token), Err(Refusal::SessionEnded));

    *issuer.state.feed_page.lock().unwrap() = feed_page(1_906, &[], 900);
    feed.poll_once(&guard).await.unwrap();
    assert!(guard.check_token(&token).is_ok());

    let requests = issuer.state.feed_requests.lock().unwrap().clone();
    let queries: Vec<_> = requests.iter().map(|(query, _)| query.clone()).collect();
    assert_eq!(
        queries,
        [Some("since=1000"), Some("since=1010"), Some("since=1905")].map(|q| q.map(str::to_owned))
    );
    assert!(
        requests
            .iter()
            .all(|(_, credential)| credential.as_deref() == Some("Bearer feed-credential"))
    );
}

#[tokio::test]
async fn a_session_ended_is_refused_with_401_invalid_token() {
    let response = Refusal::SessionEnded.into_response();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        crate::INVALID_TOKEN_CHALLENGE
    );
}

/// Collects formatted log lines for assertions.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

#[tokio::test]
async fn a_feed_outage_is_logged_once_and_valid_tokens_stay_accepted() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let issuer = MockIssuer::start().await;
    let key = ed25519();
    let guard = guard_with_key(&issuer, &key).await;
    let token = issuer.token(&key, "session-1");
    let mut feed = RevocationFeed::new(&issuer.url, "feed-credential")
        .unwrap()
        .with_http_client(test_client());
    issuer.state.down.store(true, Ordering::SeqCst);

    for _ in 0..3 {
        assert!(feed.poll_once(&guard).await.is_err());
        assert!(guard.check_token(&token).is_ok());
    }
    issuer.state.down.store(false, Ordering::SeqCst);
    *issuer.state.feed_page.lock().unwrap() = feed_page(unix_now(), &[], 900);
    feed.poll_once(&guard).await.unwrap();

    assert_eq!(logs.count("revocation feed unreachable"), 1);
    assert_eq!(logs.count("revocation feed reachable again"), 1);
    assert_eq!(logs.count("feed-credential"), 0);
}

impl MockIssuer {
    /// Sends an `ended` event to every open stream; how many streams got it.
    fn stream_end(&self, sid: &str, ended_at: i64) -> usize {
        let event = format!(
            "event: ended\nid: {ended_at}\ndata: {{\"sid\":\"{sid}\",\"ended_at\":{ended_at}}}\n\n"
        );
        let stream = self.state.stream.lock().unwrap();
        stream.as_ref().unwrap().send(event).unwrap_or(0)
    }

    fn stream_requests(&self) -> Vec<Option<String>> {
        self.state.stream_requests.lock().unwrap().clone()
    }

    fn feed_requests(&self) -> usize {
        self.state.feed_requests.lock().unwrap().len()
    }
}

/// Waits up to `limit` for `condition`, checking every 10 ms.
async fn eventually(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

#[tokio::test]
async fn an_end_on_the_stream_is_refused_at_once_without_polling() {
    let issuer = MockIssuer::start().await;
    let key = ed25519();
    let guard = guard_with_key(&issuer, &key).await;
    let token = issuer.token(&key, "session-1");
    let other = issuer.token(&key, "session-2");
    let now = unix_now();
    *issuer.state.feed_page.lock().unwrap() = feed_page(now, &[], 900);
    // Polling once an hour: only the stream can deliver the end in time.
    let feed = RevocationFeed::new(&issuer.url, "feed-credential")
        .unwrap()
        .with_http_client(test_client())
        .with_poll_interval(Duration::from_secs(3600))
        .starting_at(now - 10)
        .spawn(guard.clone());
    assert!(
        eventually(Duration::from_secs(5), || issuer.stream_requests().len()
            == 1)
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || issuer.stream_end("warm-up", now)
            == 1)
        .await
    );

    assert_eq!(issuer.stream_end("session-1", now), 1);

    assert!(
        eventually(Duration::from_secs(2), || guard.check_token(&token)
            == Err(Refusal::SessionEnded))
        .await
    );
    assert!(guard.check_token(&other).is_ok());
    assert_eq!(
        issuer.feed_requests(),
        1,
        "one catch-up poll, then the stream only"
    );
    assert_eq!(
        issuer.stream_requests(),
        [Some(format!("since={now}"))],
        "the stream opens from the cursor of the catch-up poll"
    );
    feed.abort();
}

#[tokio::test]
async fn without_a_stream_the_follower_polls() {
    let issuer = MockIssuer::start().await;
    let key = ed25519();
    let guard = guard_with_key(&issuer, &key).await;
    let token = issuer.token(&key, "session-1");
    let now = unix_now();
    *issuer.state.stream_refusal.lock().unwrap() = Some(StatusCode::NOT_FOUND);
    *issuer.state.feed_page.lock().unwrap() = feed_page(now, &[], 900);
    let feed = RevocationFeed::new(&issuer.url, "feed-credential")
        .unwrap()
        .with_http_client(test_client())
        .with_poll_interval(Duration::from_millis(50))
        .spawn(guard.clone());
    assert!(eventually(Duration::from_secs(5), || issuer.feed_requests() >= 2).await);

    *issuer.state.feed_page.lock().unwrap() = feed_page(now, &[("session-1", now)], 900);

    assert!(
        eventually(Duration::from_secs(2), || guard.check_token(&token)
            == Err(Refusal::SessionEnded))
        .await
    );
    assert_eq!(
        issuer.stream_requests().len(),
        1,
        "retried only after a while"
    );
    feed.abort();
}

#[tokio::test]
async fn a_polling_only_follower_never_opens_the_stream() {
    let issuer = MockIssuer::start().await;
    let key = ed25519();
    let guard = guard_with_key(&issuer, &key).await;
    *issuer.state.feed_page.lock().unwrap() = feed_page(unix_now(), &[], 900);
    let feed = RevocationFeed::new(&issuer.url, "feed-credential")
        .unwrap()
        .with_http_client(test_client())
        .with_poll_interval(Duration::from_millis(20))
        .polling_only()
        .spawn(guard.clone());

    assert!(eventually(Duration::from_secs(5), || issuer.feed_requests() >= 3).await);
    assert!(issuer.stream_requests().is_empty());
    feed.abort();
}

//! Crash safety of refresh-token rotation: a real `tessera server` on SQLite is killed
//! with SIGKILL while hundreds of clients renew in a loop, then started again on the
//! same data dir.
//!
//! What must hold, precisely. The server answers a renewal only after its transaction
//! committed, so every token a client received is in the database. For each session,
//! with `n` the renewals its client saw answered:
//! - the database holds exactly one unspent token (none would be a lost session, two a
//!   forked family) and `n` or `n + 1` spent ones; `n + 1` only when the client had a
//!   renewal in flight at the kill (committed, its answer lost);
//! - after the restart the client's last received token is accepted: either it was
//!   never spent, or it was spent by the lost renewal and the grace window answers with
//!   that renewal's pair. So no client is told to log in again (`invalid_grant`).
//!
//! SQLite's `PRAGMA integrity_check` must pass right after the kill and at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use support::Server;
use tokio::sync::Mutex;

const SESSIONS: usize = 200;
/// The storm runs until this many renewals were answered, or for `STORM_LIMIT`.
const STORM_RENEWALS: u64 = 3000;
const STORM_LIMIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "crash-test-password";

/// What one client knows: the last pair it received and how many renewals it saw.
struct Client {
    session: String,
    refresh: String,
    answered: u64,
    /// The token it had sent when the server died, if any.
    in_flight: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_during_a_refresh_storm_loses_no_session_and_forks_no_family() {
    let data_dir = tempfile::tempdir().unwrap();
    // Logins come from distinct addresses behind a trusted proxy, so the per-address
    // login limit does not throttle the set-up; the grace window is the longest
    // allowed so that a slow restart still finds lost answers within it.
    let args = ["--trusted-proxies", "127.0.0.1", "--refresh-grace", "60s"];
    let mut server = Server::launch(&args, &[], Some(data_dir.path()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(SESSIONS)
        .build()
        .unwrap();
    let clients = log_in_everyone(&http, &server.url).await;

    // Storm: every client renews in a loop until the server dies under it.
    let stop = Arc::new(AtomicBool::new(false));
    let renewed = Arc::new(AtomicU64::new(0));
    let storm: Vec<_> = clients
        .iter()
        .map(|client| {
            let (http, url) = (http.clone(), server.url.clone());
            let (client, stop, renewed) =
                (Arc::clone(client), Arc::clone(&stop), Arc::clone(&renewed));
            tokio::spawn(
                async move { renew_until_refused(&http, &url, &client, &stop, &renewed).await },
            )
        })
        .collect();
    let started = Instant::now();
    while renewed.load(Ordering::Relaxed) < STORM_RENEWALS && started.elapsed() < STORM_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let storm_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut unexpected = Vec::new();
    for task in storm {
        unexpected.extend(task.await.unwrap());
    }
    assert!(
        unexpected.is_empty(),
        "answers other than 200 during the storm: {unexpected:?}"
    );

    // Right after the kill, before anything recovers the database.
    let database = data_dir.path().join("tessera.db");
    assert_eq!(integrity(&database).await, "ok");
    let tokens = tokens_per_session(&database).await;
    let mut in_flight = 0;
    let mut lost_answers = 0;
    for client in &clients {
        let client = client.lock().await;
        let (unspent, spent) = tokens[&client.session];
        assert_eq!(
            unspent, 1,
            "session {} has {unspent} unspent tokens",
            client.session
        );
        in_flight += usize::from(client.in_flight.is_some());
        if spent == client.answered + 1 {
            assert!(
                client.in_flight.is_some(),
                "a renewal committed that nobody sent"
            );
            lost_answers += 1;
        } else {
            assert_eq!(
                spent, client.answered,
                "session {}: a renewal was lost",
                client.session
            );
        }
    }

    // Restart on the same data dir: every client carries on with its last token.
    let restarted = Instant::now();
    let server = Server::launch(&args, &[], Some(data_dir.path()));
    let restart_ms = restarted.elapsed().as_secs_f64() * 1000.0;
    let mut refused = Vec::new();
    let after: Vec<_> = clients
        .iter()
        .map(|client| {
            let (http, url) = (http.clone(), server.url.clone());
            let client = Arc::clone(client);
            tokio::spawn(async move {
                let mut client = client.lock().await;
                let mut statuses = Vec::new();
                for _ in 0..3 {
                    let (status, body) = renew(&http, &url, &client.refresh).await.unwrap();
                    statuses.push(status);
                    if status == 200 {
                        client.refresh = text(&body, "refresh_token");
                    }
                }
                (client.session.clone(), statuses)
            })
        })
        .collect();
    for task in after {
        let (session, statuses) = task.await.unwrap();
        if statuses.iter().any(|status| *status != 200) {
            refused.push((session, statuses));
        }
    }
    assert!(
        refused.is_empty(),
        "clients refused after the restart: {refused:?}"
    );
    drop(server);

    assert_eq!(integrity(&database).await, "ok");
    let tokens = tokens_per_session(&database).await;
    assert_eq!(tokens.len(), SESSIONS);
    assert!(tokens.values().all(|(unspent, _)| *unspent == 1));
    eprintln!(
        "crash test: {SESSIONS} sessions, {} renewals in {storm_secs:.1} s before the kill, \
         {in_flight} in flight at the kill, {lost_answers} of them committed with their \
         answer lost (recovered through the grace window), restart in {restart_ms:.0} ms, \
         {} renewals after it, all accepted",
        renewed.load(Ordering::Relaxed),
        SESSIONS * 3
    );
}

/// One user with `SESSIONS` sessions, each from its own client address.
async fn log_in_everyone(http: &reqwest::Client, url: &str) -> Vec<Arc<Mutex<Client>>> {
    let signup = http
        .post(format!("{url}/auth/signup"))
        .json(&serde_json::json!({"username": "storm", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let logins = (0..SESSIONS).map(|index| {
        let http = http.clone();
        let url = url.to_owned();
        async move {
            let response = http
                .post(format!("{url}/oauth/token"))
                .header(
                    "x-forwarded-for",
                    format!("10.1.{}.{}", index / 250, index % 250 + 1),
                )
                .form(&[
                    ("grant_type", "password"),
                    ("username", "storm"),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            Arc::new(Mutex::new(Client {
                session: session_of(&text(&body, "access_token")),
                refresh: text(&body, "refresh_token"),
                answered: 0,
                in_flight: None,
            }))
        }
    });
    // A few at a time: each login is one password hash.
    let mut clients = Vec::new();
    let mut logins = logins.collect::<Vec<_>>().into_iter();
    loop {
        let batch: Vec<_> = logins.by_ref().take(8).collect();
        if batch.is_empty() {
            break;
        }
        clients.extend(futures_util::future::join_all(batch).await);
    }
    clients
}

/// Renews until the server stops answering; the answers other than 200, if any.
async fn renew_until_refused(
    http: &reqwest::Client,
    url: &str,
    client: &Mutex<Client>,
    stop: &AtomicBool,
    renewed: &AtomicU64,
) -> Vec<(u16, String)> {
    let mut client = client.lock().await;
    while !stop.load(Ordering::Relaxed) {
        match renew(http, url, &client.refresh).await {
            Ok((200, body)) => {
                client.refresh = text(&body, "refresh_token");
                client.answered += 1;
                renewed.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, body)) => return vec![(status, body.to_string())],
            Err(_) => {
                // The server died with this request sent; whether it committed is
                // for the database to say.
                client.in_flight = Some(client.refresh.clone());
                return Vec::new();
            }
        }
    }
    Vec::new()
}

async fn renew(http: &reqwest::Client, url: &str, refresh: &str) -> reqwest::Result<(u16, Value)> {
    let response = http
        .post(format!("{url}/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await?;
    let status = response.status().as_u16();
    // A body cut off by the kill is an answer lost, like no answer at all.
    let body = response.json().await?;
    Ok((status, body))
}

/// `PRAGMA integrity_check` of the database file.
async fn integrity(database: &std::path::Path) -> String {
    let mut connection = connect(database).await;
    let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    verdict
}

/// Per session: how many of its refresh tokens are unspent, and how many spent.
async fn tokens_per_session(database: &std::path::Path) -> HashMap<String, (i64, u64)> {
    let mut connection = connect(database).await;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT s.id, COUNT(r.token_hash) - COUNT(r.spent_at), COUNT(r.spent_at)
         FROM sessions s LEFT JOIN refresh_tokens r ON r.session_id = s.id
         GROUP BY s.id",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    connection.close().await.unwrap();
    rows.into_iter()
        .map(|(session, unspent, spent)| (session, (unspent, u64::try_from(spent).unwrap())))
        .collect()
}

async fn connect(database: &std::path::Path) -> SqliteConnection {
    let options = SqliteConnectOptions::new().filename(database);
    SqliteConnection::connect_with(&options).await.unwrap()
}

/// The `sid` claim of an access token.
fn session_of(access_token: &str) -> String {
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    text(&claims, "sid")
}

fn text(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .to_owned()
}

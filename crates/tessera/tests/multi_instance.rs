//! Three `tessera server` processes sharing one PostgreSQL database and one Redis, as
//! behind a load balancer: a session opened on one instance is renewed on another and
//! ended on a third, and the first refuses its access token within a second; failed
//! logins on one instance throttle the same account and client on the others; fifty
//! concurrent refreshes of one token spread over the three yield one successor; killing
//! one instance mid-traffic leaves the others serving.
//!
//! Needs PostgreSQL and Redis: run with
//! `TESSERA_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
//! TESSERA_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo test -p tessera --test
//! multi_instance -- --ignored` (CI does). Each run makes its own database and drops it
//! at the end, and uses its own account names, so Redis keys of runs never meet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection as _;
use support::Server;

const PASSWORD: &str = "correct horse battery staple";

/// A database made for this run, dropped when the test ends.
struct Database {
    admin_url: String,
    name: String,
}

impl Database {
    async fn create() -> Database {
        let admin_url = std::env::var("TESSERA_TEST_DATABASE_URL").expect(
            "set TESSERA_TEST_DATABASE_URL to a PostgreSQL server, \
             e.g. postgres://postgres@127.0.0.1:5432/test",
        );
        let name = format!("tessera_multi_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        Database { admin_url, name }
    }

    fn url(&self) -> String {
        let (server, _) = self.admin_url.rsplit_once('/').unwrap();
        format!("{server}/{}", self.name)
    }

    async fn drop_now(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// Three instances on one database and one master key, started one after another.
fn start_instances(database: &Database, scratch: &std::path::Path) -> Vec<Server> {
    start_instances_with(database, scratch, &[])
}

/// The shared arguments of every instance, and `extra`.
fn instance_args(database: &Database, scratch: &std::path::Path, extra: &[&str]) -> Vec<String> {
    // One master key per scratch folder, made on first use.
    let master_key = scratch.join("master.key");
    if !master_key.exists() {
        let secret = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()].map(uuid::Uuid::into_bytes);
        std::fs::write(&master_key, secret.concat()).unwrap();
        std::fs::set_permissions(&master_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let url = database.url();
    let redis = std::env::var("TESSERA_TEST_REDIS_URL")
        .expect("set TESSERA_TEST_REDIS_URL to a Redis server, e.g. redis://127.0.0.1:6379");
    let mut args: Vec<String> = [
        "--redis-url",
        redis.as_str(),
        "--database-url",
        url.as_str(),
        "--master-key-file",
        master_key.to_str().unwrap(),
        "--issuer",
        "http://tessera.test",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args
}

/// Three instances started one after another.
fn start_instances_with(
    database: &Database,
    scratch: &std::path::Path,
    extra: &[&str],
) -> Vec<Server> {
    let args = instance_args(database, scratch, extra);
    (0..3).map(|_| Server::start_with(&args)).collect()
}

/// The `kid` in the header of a compact JWS.
fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    text(&header, "kid")
}

async fn form(http: &reqwest::Client, server: &Server, fields: &[(&str, &str)]) -> (u16, Value) {
    let response = http
        .post(format!("{}/oauth/token", server.url))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn log_in(http: &reqwest::Client, server: &Server, username: &str) -> Value {
    let (status, body) = try_log_in(http, server, username, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn try_log_in(
    http: &reqwest::Client,
    server: &Server,
    username: &str,
    password: &str,
) -> (u16, Value) {
    form(
        http,
        server,
        &[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ],
    )
    .await
}

async fn refresh(http: &reqwest::Client, server: &Server, token: &str) -> (u16, Value) {
    form(
        http,
        server,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

async fn userinfo(http: &reqwest::Client, server: &Server, access: &str) -> u16 {
    http.get(format!("{}/userinfo", server.url))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn text(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap().to_owned()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TESSERA_TEST_DATABASE_URL and pass --ignored"]
async fn three_instances_share_sessions_keys_and_revocations() {
    let database = Database::create().await;
    let scratch = tempfile::tempdir().unwrap();
    let mut instances = start_instances(&database, scratch.path());
    let http = reqwest::Client::new();
    let (a, b, c) = (&instances[0], &instances[1], &instances[2]);
    let ada = format!("ada-{}", uuid::Uuid::new_v4().simple());
    let ada = ada.as_str();
    let signup = http
        .post(format!("{}/auth/signup", a.url))
        .json(&serde_json::json!({"username": ada, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status().as_u16(), 201);

    // Log in on A; every instance trusts the token, since all sign with the shared keys.
    let first = log_in(&http, a, ada).await;
    for server in [a, b, c] {
        assert_eq!(
            userinfo(&http, server, &text(&first, "access_token")).await,
            200
        );
    }

    // Renew on B, log out on C: A refuses the renewed access token within a second.
    let (status, renewed) = refresh(&http, b, &text(&first, "refresh_token")).await;
    assert_eq!(status, 200, "{renewed}");
    let access = text(&renewed, "access_token");
    assert_eq!(userinfo(&http, a, &access).await, 200);
    let logout = http
        .post(format!("{}/auth/logout", c.url))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status().as_u16(), 204);
    let ended = Instant::now();
    let mut refused_after = None;
    while ended.elapsed() < Duration::from_secs(3) {
        if userinfo(&http, a, &access).await == 401 {
            refused_after = Some(ended.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused_after = refused_after.expect("A still accepts a token of a session ended on C");
    eprintln!("A refused the token {refused_after:?} after the logout on C");
    assert!(
        refused_after < Duration::from_secs(1),
        "A refused the token only after {refused_after:?}"
    );
    assert_eq!(userinfo(&http, b, &access).await, 401);

    // Failed logins count on every instance: three free failures spread over A and B,
    // one more on C, and then C and A both make this client wait.
    for server in [a, b, a, c] {
        let (status, body) = try_log_in(&http, server, ada, "wrong password").await;
        assert_eq!(status, 400, "{body}");
    }
    for server in [c, a] {
        let (status, body) = try_log_in(&http, server, ada, PASSWORD).await;
        assert_eq!(status, 429, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Fifty concurrent refreshes of one token over the three instances: one successor.
    let session = log_in(&http, c, ada).await;
    let presented = text(&session, "refresh_token");
    let attempts = (0..50).map(|index| {
        let http = http.clone();
        let server = &instances[index % 3];
        let presented = presented.clone();
        async move { refresh(&http, server, &presented).await }
    });
    let outcomes = futures_util::future::join_all(attempts).await;
    let successors: HashSet<String> = outcomes
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| text(body, "refresh_token"))
        .collect();
    assert_eq!(successors.len(), 1, "{outcomes:?}");
    let successor = successors.into_iter().next().unwrap();
    for (status, body) in &outcomes {
        assert!(
            *status == 200 || *status == 503,
            "an attempt neither renewed nor was asked to retry: {status} {body}"
        );
    }

    // Kill C mid-traffic: A and B go on answering every request.
    let (status, renewed) = refresh(&http, a, &successor).await;
    assert_eq!(status, 200, "{renewed}");
    let access = text(&renewed, "access_token");
    let traffic = {
        let http = http.clone();
        let urls = [instances[0].url.clone(), instances[1].url.clone()];
        let access = access.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for round in 0..200 {
                let response = http
                    .get(format!("{}/userinfo", urls[round % 2]))
                    .bearer_auth(&access)
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status().as_u16());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    instances[2].kill();
    let statuses = traffic.await.unwrap();
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let (status, body) = refresh(&http, &instances[1], &text(&renewed, "refresh_token")).await;
    assert_eq!(status, 200, "{body}");

    drop(instances);
    database.drop_now().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TESSERA_TEST_DATABASE_URL and TESSERA_TEST_REDIS_URL and pass --ignored"]
async fn a_scheduled_rotation_is_made_once_however_many_instances_find_it_due() {
    let database = Database::create().await;
    let scratch = tempfile::tempdir().unwrap();
    // Every instance finds a rotation due every 3 s; together they must still add one
    // key per interval, not three.
    let extra = [
        "--key-rotation-interval",
        "3s",
        "--key-activation-delay",
        "1s",
    ];
    let instances = start_instances_with(&database, scratch.path(), &extra);
    let http = reqwest::Client::new();
    let user = format!("grace-{}", uuid::Uuid::new_v4().simple());
    let signup = http
        .post(format!("{}/auth/signup", instances[0].url))
        .json(&serde_json::json!({"username": user, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status().as_u16(), 201);

    tokio::time::sleep(Duration::from_secs(8)).await;

    let mut admin = sqlx::PgConnection::connect(&database.url()).await.unwrap();
    let mut created: Vec<i64> = sqlx::query_scalar("SELECT created_at FROM signing_keys")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    created.sort_unstable();
    assert!(
        created.len() >= 3,
        "no scheduled rotation happened: {created:?}"
    );
    for pair in created.windows(2) {
        assert!(
            pair[1] - pair[0] >= 3,
            "two keys made within one interval (a rotation made twice): {created:?}"
        );
    }

    drop(instances);
    database.drop_now().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TESSERA_TEST_DATABASE_URL and TESSERA_TEST_REDIS_URL and pass --ignored"]
async fn a_rotation_by_the_keys_command_reaches_every_instance() {
    let database = Database::create().await;
    let scratch = tempfile::tempdir().unwrap();
    let instances = start_instances(&database, scratch.path());
    let http = reqwest::Client::new();
    let user = format!("hopper-{}", uuid::Uuid::new_v4().simple());
    let signup = http
        .post(format!("{}/auth/signup", instances[0].url))
        .json(&serde_json::json!({"username": user, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status().as_u16(), 201);

    // `tessera keys rotate` on the database: within seconds every instance signs with
    // the new key, without a restart.
    let config_args = instance_args(&database, scratch.path(), &[]);
    let rotate = std::process::Command::new(support::BINARY)
        .args(["keys", "rotate", "--delay", "0s", "--data-dir"])
        .arg(scratch.path().join("admin-data"))
        .args(
            config_args
                .iter()
                .filter(|arg| !arg.starts_with("--redis") && !arg.starts_with("redis")),
        )
        .output()
        .unwrap();
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let stdout = String::from_utf8_lossy(&rotate.stdout).into_owned();
    let new_kid = stdout
        .split_whitespace()
        .skip_while(|word| *word != "key")
        .nth(1)
        .unwrap_or_else(|| panic!("no kid in {stdout:?}"))
        .to_owned();
    // Renewals, not logins, so the login throttle stays out of the way.
    let mut refresh_token = text(&log_in(&http, &instances[0], &user).await, "refresh_token");
    for server in &instances {
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            let (status, body) = refresh(&http, server, &refresh_token).await;
            assert_eq!(status, 200, "{body}");
            refresh_token = text(&body, "refresh_token");
            if kid_of(&text(&body, "access_token")) == new_kid {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still signs with an older key",
                server.url
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    drop(instances);
    database.drop_now().await;
}

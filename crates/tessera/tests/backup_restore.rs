//! `tessera admin backup` taken while a server is busy with sign-ups, logins and
//! renewals, then `tessera admin restore` into a new data dir: the restored server knows
//! every user that existed when the backup began, renews a refresh token issued before
//! the backup, and accepts an access token issued before it (the signing keys travel in
//! the backup). Also what the commands refuse: overwriting a file, restoring into a
//! data dir in use, a damaged backup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{BINARY, Server};

const PASSWORD: &str = "correct horse battery staple";
/// The same issuer for both servers, so that the restored one accepts the tokens of
/// the first (each listens on a port of its own).
const ISSUER: &str = "http://tessera.test";
/// How many clients keep the first server busy while the backup runs.
const CLIENTS: usize = 4;
/// The load never runs longer than this, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(60);

async fn sign_up(http: &reqwest::Client, base: &str, username: &str) {
    let response = http
        .post(format!("{base}/auth/signup"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "signing up {username}");
}

async fn log_in(http: &reqwest::Client, base: &str, username: &str) -> Value {
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "logging in as {username}");
    response.json().await.unwrap()
}

async fn renew(http: &reqwest::Client, base: &str, refresh_token: &str) -> reqwest::Response {
    http.post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
}

/// Runs `tessera admin ARGS`; its exit status, standard output and standard error.
async fn admin(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(BINARY)
        .arg("admin")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One client of the load: logs in, then signs up a new user and renews its session
/// twice, over and over, logging in again every fourth round (at most twice: logins
/// from one address are throttled past 20 a minute), until told to stop; the names of
/// the users it made, each with the time its sign-up was answered.
async fn keep_busy(base: String, client: usize, stop: Arc<AtomicBool>) -> Vec<(String, Instant)> {
    const MAX_LOGINS: usize = 3;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let own = format!("client-{client}");
    sign_up(&http, &base, &own).await;
    let mut logins = 1;
    let grant = log_in(&http, &base, &own).await;
    let mut refresh = grant["refresh_token"].as_str().unwrap().to_owned();
    let mut made = Vec::new();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_LIMIT {
        let username = format!("load-{client}-{}", made.len());
        sign_up(&http, &base, &username).await;
        made.push((username.clone(), Instant::now()));
        if made.len().is_multiple_of(4) && logins < MAX_LOGINS {
            logins += 1;
            let grant = log_in(&http, &base, &username).await;
            refresh = grant["refresh_token"].as_str().unwrap().to_owned();
        }
        for _ in 0..2 {
            let renewed = renew(&http, &base, &refresh).await;
            assert_eq!(renewed.status(), 200);
            let renewed: Value = renewed.json().await.unwrap();
            refresh = renewed["refresh_token"].as_str().unwrap().to_owned();
        }
    }
    made
}

/// `tessera server` on an existing data dir, killed when dropped.
struct RestoredServer {
    child: std::process::Child,
    url: String,
}

impl Drop for RestoredServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RestoredServer {
    /// Starts the binary on `data_dir` and a free loopback port, as an operator would
    /// after a restore, and waits (30 s at most) until it answers.
    async fn start(data_dir: &Path) -> RestoredServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(BINARY)
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--issuer", ISSUER, "--data-dir"])
            .arg(data_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = RestoredServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            let ready = http.get(format!("{}/readyz", server.url)).send().await;
            if ready.is_ok_and(|answer| answer.status() == 200) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "the restored server never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_users_and_sessions_into_a_new_data_dir() {
    let scratch = tempfile::tempdir().unwrap();
    let backup = scratch.path().join("tessera.backup");
    let restored_dir = scratch.path().join("restored");
    let http = reqwest::Client::new();
    let first = Server::start_with(&["--issuer", ISSUER]);
    let data_dir = first.data_dir().to_str().unwrap().to_owned();
    sign_up(&http, &first.url, "alice").await;
    let before = log_in(&http, &first.url, "alice").await;
    let old_access = before["access_token"].as_str().unwrap().to_owned();
    let old_refresh = before["refresh_token"].as_str().unwrap().to_owned();

    // The load runs before, during and after the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| tokio::spawn(keep_busy(first.url.clone(), client, Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let backup_started = Instant::now();
    let (backed_up, said, complaint) =
        admin(&["backup", backup.to_str().unwrap(), "--data-dir", &data_dir]).await;
    let backup_took = backup_started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut made_before_backup = Vec::new();
    let mut made_in_all = 0;
    for client in clients {
        let made = client.await.unwrap();
        made_in_all += made.len();
        made_before_backup.extend(
            made.into_iter()
                .filter(|(_, answered)| *answered < backup_started)
                .map(|(username, _)| username),
        );
    }
    let again = admin(&["backup", backup.to_str().unwrap(), "--data-dir", &data_dir]).await;
    drop(first);

    assert!(backed_up, "backup failed: {complaint}");
    assert!(said.contains("signing key files"), "{said}");
    assert_eq!(mode(&backup), 0o600);
    assert!(
        !made_before_backup.is_empty(),
        "no load ran before the backup"
    );
    assert!(
        made_in_all > made_before_backup.len(),
        "no load ran while or after the backup ran ({backup_took:?})"
    );
    assert!(!again.0, "a second backup overwrote the first");
    assert!(again.2.contains("exists already"), "{}", again.2);

    let (restored, said, complaint) = admin(&[
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ])
    .await;
    assert!(restored, "restore failed: {complaint}");
    assert!(said.contains("restored"), "{said}");
    assert_eq!(mode(&restored_dir), 0o700);
    assert_eq!(mode(&restored_dir.join("tessera.db")), 0o600);

    let (listed, users, _) = admin(&[
        "users",
        "list",
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ])
    .await;
    assert!(listed);
    for username in made_before_backup
        .iter()
        .map(String::as_str)
        .chain(["alice"])
    {
        assert!(
            users
                .lines()
                .any(|line| line.contains(&format!(" {username} "))),
            "{username} is missing after the restore:\n{users}"
        );
    }

    let second = RestoredServer::start(&restored_dir).await;
    let userinfo = http
        .get(format!("{}/userinfo", second.url))
        .bearer_auth(&old_access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        userinfo.status(),
        200,
        "an access token from before the backup"
    );
    let renewed = renew(&http, &second.url, &old_refresh).await;
    assert_eq!(
        renewed.status(),
        200,
        "a refresh token from before the backup"
    );
    let renewed: Value = renewed.json().await.unwrap();
    let notes = http
        .get(format!("{}/api/notes", second.url))
        .bearer_auth(renewed["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(notes.status(), 200);
    log_in(&http, &second.url, made_before_backup[0].as_str()).await;
}

#[tokio::test]
async fn restore_refuses_a_data_dir_in_use_and_a_damaged_backup() {
    let scratch = tempfile::tempdir().unwrap();
    let server = Server::start("15m");
    let data_dir = server.data_dir().to_str().unwrap().to_owned();
    let backup = scratch.path().join("good.backup");
    let (backed_up, _, complaint) =
        admin(&["backup", backup.to_str().unwrap(), "--data-dir", &data_dir]).await;
    assert!(backed_up, "{complaint}");
    let damaged = scratch.path().join("damaged.backup");
    let mut bytes = std::fs::read(&backup).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&damaged, &bytes).unwrap();
    let not_sqlite = scratch.path().join("notes.txt");
    std::fs::write(
        &not_sqlite,
        "not a database at all, just some text\n".repeat(200),
    )
    .unwrap();
    let fresh = scratch.path().join("fresh");

    let into_live = admin(&["restore", backup.to_str().unwrap(), "--data-dir", &data_dir]).await;
    let from_damaged = admin(&[
        "restore",
        damaged.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
    ])
    .await;
    let from_text = admin(&[
        "restore",
        not_sqlite.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
    ])
    .await;

    assert!(!into_live.0);
    assert!(into_live.2.contains("not empty"), "{}", into_live.2);
    assert!(!from_damaged.0);
    assert!(!from_text.0);
    assert!(!fresh.exists(), "a refused restore left a data dir behind");
}

#[tokio::test]
async fn with_postgresql_backup_points_to_pg_dump() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("tessera.backup");

    let (backed_up, _, complaint) = admin(&[
        "backup",
        file.to_str().unwrap(),
        "--database-url",
        "postgres://tessera@127.0.0.1:1/tessera",
    ])
    .await;

    assert!(!backed_up);
    assert!(complaint.contains("pg_dump"), "{complaint}");
    assert!(!file.exists());
}

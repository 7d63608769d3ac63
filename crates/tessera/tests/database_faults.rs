//! A real `tessera server` meets database faults: SQLite locked by another process past
//! the busy timeout, the disk under the data dir full, PostgreSQL restarted under
//! traffic. Each must end in `503` with `Retry-After` while it lasts (never a `500`),
//! nothing lost or half-written, and full service once the fault is gone.
//!
//! The full-disk and PostgreSQL tests need root (a tmpfs mount; a PostgreSQL of their
//! own run as the `postgres` user) and are ignored by default; CI runs them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use support::Server;

const PASSWORD: &str = "fault-test-password";
/// The SQLite store's busy timeout.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_write_lock_held_past_the_busy_timeout_is_answered_503_then_service_resumes() {
    let server = Server::start("15m");
    let http = reqwest::Client::new();
    let alice = sign_up_and_log_in(&http, &server.url, "alice").await;
    let database = server.data_dir().join("tessera.db");

    // Another process's write transaction, held longer than the busy timeout.
    let mut holder = connect(&database).await;
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let started = Instant::now();
    let (signup, renewal, read) = tokio::join!(
        timed(sign_up(&http, &server.url, "bob")),
        timed(renew(&http, &server.url, &alice.refresh)),
        timed(get(&http, &server.url, "/userinfo", &alice.access)),
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    holder.close().await.unwrap();
    let held = started.elapsed();

    for (what, (response, took)) in [("sign-up", &signup), ("renewal", &renewal)] {
        assert_eq!(response.status, 503, "{what}: {response:?}");
        assert_eq!(response.body["error"], "temporarily_unavailable");
        assert_eq!(response.retry_after.as_deref(), Some("1"), "{what}");
        // SQLite's busy handler kept retrying for the whole timeout first.
        assert!(
            *took >= BUSY_TIMEOUT - Duration::from_millis(500),
            "{what} after {took:?}"
        );
    }
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(read.0.status, 200);
    assert!(
        read.1 < Duration::from_secs(2),
        "a read waited {:?}",
        read.1
    );
    assert!(held >= BUSY_TIMEOUT);

    let signup = sign_up(&http, &server.url, "bob").await;
    let renewal = renew(&http, &server.url, &alice.refresh).await;
    assert_eq!(signup.status, 201, "{signup:?}");
    // The refused renewal spent nothing: the same token still renews.
    assert_eq!(renewal.status, 200, "{renewal:?}");
    assert!(!server.log().contains("request failed"), "{}", server.log());
}

#[tokio::test]
#[ignore = "mounts a 2 MB tmpfs, so needs root; CI runs it"]
async fn a_full_disk_under_the_data_dir_is_answered_503_and_logged_without_corruption() {
    let mount = Tmpfs::mount("2m");
    let data_dir = mount.path().join("data");
    create_private_dir(&data_dir);
    let mut server = Server::launch::<&str>(&[], &[], Some(&data_dir));
    let http = reqwest::Client::new();
    let alice = sign_up_and_log_in(&http, &server.url, "alice").await;

    let filler = mount.path().join("filler");
    fill(&filler);
    let signup = sign_up(&http, &server.url, "bob").await;
    let login = log_in(&http, &server.url, "alice").await;
    let renewal = renew(&http, &server.url, &alice.refresh).await;
    let read = get(&http, &server.url, "/userinfo", &alice.access).await;

    for (what, response) in [
        ("sign-up", &signup),
        ("login", &login),
        ("renewal", &renewal),
    ] {
        assert_eq!(response.status, 503, "{what}: {response:?}");
        assert_eq!(response.body["error"], "temporarily_unavailable");
        assert!(response.retry_after.is_some(), "{what}");
    }
    assert_eq!(read.status, 200, "a read needs no space: {read:?}");
    assert!(
        server.log().contains("its disk is full"),
        "no log line names the full disk:\n{}",
        server.log()
    );

    std::fs::remove_file(&filler).unwrap();
    let signup = sign_up(&http, &server.url, "bob").await;
    let renewal = renew(&http, &server.url, &alice.refresh).await;
    let login = log_in(&http, &server.url, "alice").await;
    assert_eq!(signup.status, 201, "{signup:?}");
    assert_eq!(
        renewal.status, 200,
        "the refused renewal spent its token: {renewal:?}"
    );
    assert_eq!(login.status, 200, "{login:?}");

    server.kill();
    assert_eq!(integrity(&data_dir.join("tessera.db")).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "runs a PostgreSQL of its own as the postgres user, so needs root; CI runs it"]
async fn a_postgresql_restart_mid_traffic_ends_in_reconnection_not_errors() {
    const CLIENTS: usize = 16;
    let postgres = PrivatePostgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let master_key = scratch.path().join("master.key");
    write_private(
        &master_key,
        &[uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
            .map(|id| id.into_bytes())
            .concat(),
    );
    let args = [
        "--database-url".to_owned(),
        postgres.url("tessera"),
        "--master-key-file".to_owned(),
        master_key.display().to_string(),
        "--trusted-proxies".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    let server = Server::launch(&args, &[], None);
    let http = reqwest::Client::new();
    assert_eq!(sign_up(&http, &server.url, "pat").await.status, 201);
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let address = format!("10.2.0.{}", index + 1);
        let response = log_in_from(&http, &server.url, "pat", &address).await;
        assert_eq!(response.status, 200, "{response:?}");
        clients.push(Tokens::from(&response.body));
    }

    // Traffic from every client until a few seconds after the restart is over.
    let started = Instant::now();
    let until = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let traffic: Vec<_> = clients
        .into_iter()
        .map(|tokens| {
            let (http, url, until) = (http.clone(), server.url.clone(), Arc::clone(&until));
            tokio::spawn(async move { browse(&http, &url, tokens, &until, started).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restart_began = started.elapsed();
    let restart = tokio::task::spawn_blocking(move || {
        postgres.restart();
        postgres
    });
    let postgres = restart.await.unwrap();
    let restart_ended = started.elapsed();
    *until.lock().unwrap() = Some(Instant::now() + Duration::from_secs(6));
    let mut answers = Vec::new();
    for task in traffic {
        answers.extend(task.await.unwrap());
    }

    let unexpected: Vec<_> = answers
        .iter()
        .filter(|answer| !matches!(answer.status, 200 | 201 | 503))
        .collect();
    let unavailable: Vec<_> = answers
        .iter()
        .filter(|answer| answer.status == 503)
        .collect();
    let settled = restart_ended + Duration::from_secs(3);
    let late_failures: Vec<_> = answers
        .iter()
        .filter(|answer| answer.at > settled && answer.status >= 300)
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers besides 200, 201 and 503: {unexpected:?}"
    );
    assert!(
        unavailable.iter().all(|answer| answer.retry_after),
        "a 503 without Retry-After"
    );
    assert!(
        late_failures.is_empty(),
        "still failing after the restart: {late_failures:?}"
    );
    assert!(answers.iter().filter(|answer| answer.at > settled).count() > CLIENTS);
    let unavailable_of = |what| {
        unavailable
            .iter()
            .filter(|answer| answer.what == what)
            .count()
    };
    eprintln!(
        "PostgreSQL restart from {restart_began:.1?} to {restart_ended:.1?}: {} answers, \
         {} of them 503 ({} renewals, {} reads, {} note writes; from {:.1?} to {:.1?}), \
         none other than 200, 201 or 503",
        answers.len(),
        unavailable.len(),
        unavailable_of("renewal"),
        unavailable_of("read"),
        unavailable_of("note"),
        unavailable
            .iter()
            .map(|answer| answer.at)
            .min()
            .unwrap_or_default(),
        unavailable
            .iter()
            .map(|answer| answer.at)
            .max()
            .unwrap_or_default(),
    );
    drop(server);
    drop(postgres);
}

/// One answer seen during the PostgreSQL restart.
#[derive(Debug)]
struct Answer {
    at: Duration,
    what: &'static str,
    status: u16,
    retry_after: bool,
}

/// Renews, reads and writes in a loop until `until` has passed; every answer seen.
async fn browse(
    http: &reqwest::Client,
    url: &str,
    mut tokens: Tokens,
    until: &std::sync::Mutex<Option<Instant>>,
    started: Instant,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    while until
        .lock()
        .unwrap()
        .is_none_or(|until| Instant::now() < until)
    {
        let renewal = renew(http, url, &tokens.refresh).await;
        if renewal.status == 200 {
            tokens = Tokens::from(&renewal.body);
        }
        // After a 503 the client keeps its token and tries again: if the renewal had
        // committed, the grace window answers with the same pair.
        let read = get(http, url, "/userinfo", &tokens.access).await;
        let note = http
            .post(format!("{url}/api/notes"))
            .bearer_auth(&tokens.access)
            .json(&json!({"title": "t", "body": "b"}))
            .send()
            .await;
        let note = Reply::from(note.unwrap()).await;
        for (what, reply) in [("renewal", renewal), ("read", read), ("note", note)] {
            answers.push(Answer {
                at: started.elapsed(),
                what,
                status: reply.status,
                retry_after: reply.retry_after.is_some(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answers
}

/// A client's pair of tokens.
#[derive(Debug, Clone)]
struct Tokens {
    access: String,
    refresh: String,
}

impl Tokens {
    fn from(body: &Value) -> Self {
        Self {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// An answer: status, `Retry-After` and JSON body.
#[derive(Debug)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.json().await.unwrap_or(Value::Null);
        Self {
            status,
            retry_after,
            body,
        }
    }
}

async fn sign_up(http: &reqwest::Client, url: &str, username: &str) -> Reply {
    let response = http
        .post(format!("{url}/auth/signup"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

async fn log_in(http: &reqwest::Client, url: &str, username: &str) -> Reply {
    log_in_from(http, url, username, "127.0.0.1").await
}

async fn log_in_from(http: &reqwest::Client, url: &str, username: &str, address: &str) -> Reply {
    let response = http
        .post(format!("{url}/oauth/token"))
        .header("x-forwarded-for", address)
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

async fn sign_up_and_log_in(http: &reqwest::Client, url: &str, username: &str) -> Tokens {
    assert_eq!(sign_up(http, url, username).await.status, 201);
    let login = log_in(http, url, username).await;
    assert_eq!(login.status, 200, "{login:?}");
    Tokens::from(&login.body)
}

async fn renew(http: &reqwest::Client, url: &str, refresh: &str) -> Reply {
    let response = http
        .post(format!("{url}/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

async fn get(http: &reqwest::Client, url: &str, path: &str, access: &str) -> Reply {
    let response = http
        .get(format!("{url}{path}"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

/// `future`'s output and how long it took.
async fn timed<T>(future: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let output = future.await;
    (output, started.elapsed())
}

async fn connect(database: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(database))
        .await
        .unwrap()
}

/// `PRAGMA integrity_check` of a database file no server has open.
async fn integrity(database: &Path) -> String {
    let mut connection = connect(database).await;
    let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    verdict
}

/// Writes to `path` until the file system refuses for want of space.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    for chunk in [64 * 1024, 4096, 1] {
        let bytes = vec![0u8; chunk];
        loop {
            match file.write_all(&bytes).and_then(|()| file.sync_all()) {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(28) => break,
                Err(error) => panic!("cannot fill {}: {error}", path.display()),
            }
        }
    }
}

fn create_private_dir(path: &Path) {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o700).create(path).unwrap();
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A small tmpfs mounted on a fresh folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(dir.path()));
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A PostgreSQL cluster of this test's own: initialised in a fresh folder, listening
/// on a free loopback port, run as the `postgres` user, stopped when dropped.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> Self {
        let bin = PathBuf::from(
            String::from_utf8(
                Command::new("pg_config")
                    .arg("--bindir")
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
            .trim(),
        );
        let dir = tempfile::tempdir().unwrap();
        let owner = |what: &str| {
            let output = Command::new("id")
                .arg(what)
                .arg("postgres")
                .output()
                .unwrap();
            String::from_utf8(output.stdout)
                .unwrap()
                .trim()
                .parse::<u32>()
                .unwrap()
        };
        std::os::unix::fs::chown(dir.path(), Some(owner("-u")), Some(owner("-g"))).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let postgres = Self { dir, bin, port };
        postgres.as_postgres(
            &["initdb", "-A", "trust", "-U", "postgres", "--no-sync"],
            &["-D", "data"],
        );
        postgres.pg_ctl("start");
        let admin = postgres.url("postgres");
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let mut connection = sqlx::postgres::PgConnection::connect(&admin).await.unwrap();
                sqlx::raw_sql("CREATE DATABASE tessera")
                    .execute(&mut connection)
                    .await
                    .unwrap();
                connection.close().await.unwrap();
            });
        });
        postgres
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops it (fast: sessions are cut) and starts it again, waiting for both.
    fn restart(&self) {
        self.pg_ctl("restart");
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.as_postgres(
            &["pg_ctl", action, "-w", "-m", "fast", "-D", "data"],
            &["-o", &options, "-l", &log],
        );
    }

    /// Runs `program` from PostgreSQL's binaries as the `postgres` user, in its folder.
    fn as_postgres(&self, program_and_args: &[&str], more: &[&str]) {
        let (program, args) = program_and_args.split_first().unwrap();
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .args(more)
            .current_dir(self.dir.path()));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D", "data"])
            .current_dir(self.dir.path())
            .output();
    }
}

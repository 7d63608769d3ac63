//! No secret reaches the logs, even at trace level: a real `tessera server` runs the
//! whole flow with `RUST_LOG=trace` (sign-up, login in both modes, renewal, protected
//! calls, password change, introspection, revocation, logout, a failed login), and
//! its whole output must hold none of the passwords, access or refresh tokens (nor
//! their signatures), the anti-CSRF token, the password hashes, the signing key (PEM
//! or its base64 lines), the master key or the introspection credential.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sqlx::Connection as _;
use support::Server;

const PASSWORD: &str = "Pass-Word-Alpha-7731";
const NEW_PASSWORD: &str = "Pass-Word-Bravo-2209";
const WRONG_PASSWORD: &str = "Pass-Word-Wrong-5512";

#[tokio::test]
async fn no_password_token_hash_or_key_appears_in_trace_logs() {
    let data_dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let master_key: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .map(|id| id.into_bytes())
        .concat();
    let introspection = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
    let master_key_file = scratch.path().join("master.key");
    let introspection_file = scratch.path().join("introspection.secret");
    write_private(&master_key_file, &master_key);
    write_private(&introspection_file, introspection.as_bytes());
    let trace = [("RUST_LOG", "trace"), ("NO_COLOR", "1")];
    let mut secrets = Secrets::default();
    secrets.add("master key (raw)", String::from_utf8_lossy(&master_key));
    secrets.add("master key (base64)", STANDARD.encode(&master_key));
    secrets.add("master key (hex)", hex(&master_key));
    secrets.add("introspection credential", &introspection);
    for password in [PASSWORD, NEW_PASSWORD, WRONG_PASSWORD] {
        secrets.add("password", password);
    }

    // First start: the signing key is made as a file, whose text we can read.
    let first = Server::launch::<&str>(&[], &trace, Some(data_dir.path()));
    let http = reqwest::Client::new();
    let signup = post_json(
        &http,
        &first.url,
        "/auth/signup",
        json!({"username": "sam", "password": PASSWORD}),
    )
    .await;
    assert_eq!(signup.0, 201);
    let mut log = first.log();
    drop(first);
    for pem in std::fs::read_dir(data_dir.path().join("keys")).unwrap() {
        let pem = pem.unwrap().path();
        if pem.extension().is_some_and(|extension| extension == "pem") {
            secrets.add_key(&std::fs::read_to_string(&pem).unwrap());
        }
    }

    // Second start: the same key, now sealed in the database under the master key,
    // and every step of the flow.
    let args = [
        "--master-key-file".to_owned(),
        master_key_file.display().to_string(),
        "--introspection-secret-file".to_owned(),
        introspection_file.display().to_string(),
    ];
    let server = Server::launch(&args, &trace, Some(data_dir.path()));
    let url = &server.url;
    let login = form(
        &http,
        url,
        &[
            ("grant_type", "password"),
            ("username", "sam"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(login.0, 200, "{login:?}");
    secrets.add_pair(&login.1);
    let renewal = form(
        &http,
        url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", text(&login.1, "refresh_token")),
        ],
    )
    .await;
    assert_eq!(renewal.0, 200, "{renewal:?}");
    secrets.add_pair(&renewal.1);
    let access = text(&renewal.1, "access_token");
    let refresh = text(&renewal.1, "refresh_token");

    let me = http
        .get(format!("{url}/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let note = http
        .post(format!("{url}/api/notes"))
        .bearer_auth(access)
        .json(&json!({"title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(note.status(), 201);
    for token in [access, refresh] {
        let answer = http
            .post(format!("{url}/oauth/introspect"))
            .bearer_auth(&introspection)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.json::<Value>().await.unwrap()["active"], true);
    }
    let failed = form(
        &http,
        url,
        &[
            ("grant_type", "password"),
            ("username", "sam"),
            ("password", WRONG_PASSWORD),
        ],
    )
    .await;
    assert_eq!(failed.0, 400);

    // The browser's cookie login: tokens and the anti-CSRF token in Set-Cookie.
    let browser = http
        .post(format!("{url}/auth/browser/login"))
        .json(&json!({"username": "sam", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 200);
    for cookie in browser.headers().get_all("set-cookie") {
        let cookie = cookie.to_str().unwrap();
        let value = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
        secrets.add("cookie value", value);
    }

    let hash_before = password_hash(&data_dir.path().join("tessera.db")).await;
    let change = http
        .post(format!("{url}/auth/password"))
        .bearer_auth(access)
        .json(&json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(change.status(), 204);
    let hash_after = password_hash(&data_dir.path().join("tessera.db")).await;
    for hash in [hash_before, hash_after] {
        // The PHC string, and its salt and digest alone.
        secrets.add("password hash", &hash);
        for part in hash.rsplit('$').take(2) {
            secrets.add("password hash part", part);
        }
    }
    let revoke = http
        .post(format!("{url}/oauth/revoke"))
        .form(&[("token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    let relogin = form(
        &http,
        url,
        &[
            ("grant_type", "password"),
            ("username", "sam"),
            ("password", NEW_PASSWORD),
        ],
    )
    .await;
    assert_eq!(relogin.0, 200);
    secrets.add_pair(&relogin.1);
    let logout = http
        .post(format!("{url}/auth/logout"))
        .bearer_auth(text(&relogin.1, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);

    // The log is read from the server's pipe by a thread: let it catch up.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    log.push_str(&server.log());
    drop(server);
    // The filter really was opened (the defaults keep sqlx's statements out; nothing
    // this flow runs logs below debug), and the log holds the flow.
    assert!(
        log.contains("DEBUG sqlx::query"),
        "the log is not at trace level"
    );
    assert!(
        log.contains("/oauth/introspect"),
        "the flow is not in the log"
    );
    let found = secrets.found_in(&log);
    assert!(found.is_empty(), "secrets in the log: {found:?}");
}

/// Everything that must not be logged, with what it is.
#[derive(Default)]
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    fn add(&mut self, what: &'static str, secret: impl AsRef<str>) {
        let secret = secret.as_ref();
        // Shorter pieces could appear by chance.
        if secret.len() >= 12 {
            self.0.push((what, secret.to_owned()));
        }
    }

    /// A token answer's access token (whole, and its signature alone) and refresh token.
    fn add_pair(&mut self, answer: &Value) {
        let access = text(answer, "access_token");
        self.add("access token", access);
        self.add("access token signature", access.rsplit('.').next().unwrap());
        self.add("refresh token", text(answer, "refresh_token"));
    }

    /// A PEM private key: the whole text, each base64 line, and the DER in one line.
    fn add_key(&mut self, pem: &str) {
        self.add("signing key PEM", pem.trim());
        let body: Vec<&str> = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        for line in &body {
            self.add("signing key PEM line", line);
        }
        self.add("signing key base64", body.concat());
        let der = STANDARD.decode(body.concat()).unwrap();
        self.add("signing key DER (url-safe)", URL_SAFE_NO_PAD.encode(&der));
        self.add("signing key DER (hex)", hex(&der));
    }

    fn found_in(&self, log: &str) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|(_, secret)| log.contains(secret.as_str()))
            .map(|(what, _)| *what)
            .collect()
    }
}

async fn form(http: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let response = http
        .post(format!("{url}/oauth/token"))
        .form(fields)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn post_json(http: &reqwest::Client, url: &str, path: &str, body: Value) -> (u16, Value) {
    let response = http
        .post(format!("{url}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn password_hash(database: &Path) -> String {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(database);
    let mut connection = sqlx::sqlite::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let (hash,): (String,) = sqlx::query_as("SELECT password_hash FROM users")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    hash
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
}

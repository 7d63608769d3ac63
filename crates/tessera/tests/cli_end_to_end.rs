//! The command-line client against a real `tessera server`: sign up, log
//! in, create and list notes, survive an access token expiring (silent
//! renewal), show status, log out, and be refused afterwards. Also checks
//! that the credentials file is owner-only.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{BINARY, Server};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const USERNAME: &str = "alice";
const PASSWORD: &str = "a long enough passphrase for tests";

/// What one CLI run printed and how it ended.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "{}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A user's machine: its own config folder, so the CLI finds its
/// credentials there and nowhere else.
struct Machine {
    config: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        Machine {
            config: tempfile::tempdir().unwrap(),
        }
    }

    fn credentials(&self) -> PathBuf {
        self.config.path().join("tessera").join("credentials.json")
    }

    fn stored(&self, server: &str) -> Value {
        let file = std::fs::read(self.credentials()).unwrap();
        let file: Value = serde_json::from_slice(&file).unwrap();
        file["servers"][server].clone()
    }

    fn tessera(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(BINARY)
            .args(args)
            .env("XDG_CONFIG_HOME", self.config.path())
            .env("HOME", self.config.path())
            .env_remove("TESSERA_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());

        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`tessera {}` did not finish", args.join(" "));
            }
            thread::sleep(Duration::from_millis(20));
        };
        Run {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }

    /// Runs a command that must succeed.
    fn ok(&self, args: &[&str], stdin: &str) -> Run {
        let run = self.tessera(args, stdin);
        assert!(
            run.status.success(),
            "`tessera {}` failed: {}",
            args.join(" "),
            run.describe()
        );
        run
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Whether a listing (a bare array, or an object holding one) contains
/// `note`.
fn has_note(listing: &Run, note: &Value) -> bool {
    let listing: Value = serde_json::from_str(&listing.stdout).unwrap();
    let notes = match &listing {
        Value::Array(notes) => notes.clone(),
        Value::Object(fields) => fields
            .values()
            .filter_map(Value::as_array)
            .flatten()
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    notes
        .iter()
        .any(|listed| listed["id"] == note["id"] && listed["title"] == "t" && listed["body"] == "b")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn sign_up(server: &Server) {
    let response = reqwest::Client::new()
        .post(format!("{}/auth/signup", server.url))
        .json(&json!({"username": USERNAME, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        201,
        "signup failed: {}\nserver log:\n{}",
        response.text().await.unwrap_or_default(),
        server.log()
    );
}

/// Whether the server still accepts `refresh_token`, without printing it.
async fn refresh_is_accepted(server: &Server, refresh_token: &str) -> bool {
    reqwest::Client::new()
        .post(format!("{}/oauth/token", server.url))
        .json(&json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }))
        .send()
        .await
        .unwrap()
        .status()
        .is_success()
}

#[tokio::test]
async fn cli_logs_in_renews_silently_and_logs_out() {
    let server = Server::start("2s");
    sign_up(&server).await;
    let machine = Machine::new();
    let url = server.url.as_str();

    // Log in, with the password on stdin as a script would.
    let login = machine.ok(
        &[
            "login",
            "--server",
            url,
            "--username",
            USERNAME,
            "--password-stdin",
            // The file, so the test can inspect it and never touches the
            // keyring of whoever runs it.
            "--insecure-storage",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        login
            .stdout
            .contains(&format!("Logged in to {url} as {USERNAME}")),
        "{}",
        login.describe()
    );
    assert!(!login.stdout.contains(PASSWORD) && !login.stderr.contains(PASSWORD));
    assert_eq!(mode(&machine.credentials()), 0o600);
    assert_eq!(mode(machine.credentials().parent().unwrap()), 0o700);

    // Create a note, then find it in the list.
    let created = machine.ok(
        &[
            "request",
            "POST",
            "/api/notes",
            "-d",
            r#"{"title":"t","body":"b"}"#,
        ],
        "",
    );
    let note: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(note["title"], "t");
    let listed = machine.ok(&["request", "/api/notes"], "");
    assert!(has_note(&listed, &note), "{}", listed.describe());

    // Let the 2 s access token expire. The next requests renew by
    // themselves; several at once must share one renewal rather than
    // spend the single-use refresh token twice and end the session.
    let before = machine.stored(url);
    thread::sleep(Duration::from_secs(3));
    let runs: Vec<Run> = thread::scope(|scope| {
        let requests: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| machine.tessera(&["request", "/api/notes"], "")))
            .collect();
        requests.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for listed in &runs {
        assert!(listed.status.success(), "{}", listed.describe());
        assert!(has_note(listed, &note), "{}", listed.describe());
    }
    let after = machine.stored(url);
    assert_ne!(after["access_token"], before["access_token"]);
    assert_ne!(after["refresh_token"], before["refresh_token"]);

    let status = machine.ok(&["status"], "");
    assert!(status.stdout.contains(url), "{}", status.describe());
    assert!(status.stdout.contains(USERNAME), "{}", status.describe());
    assert!(
        !status
            .stdout
            .contains(after["access_token"].as_str().unwrap())
    );

    // Log out: the session ends on the server and the tokens are gone.
    machine.ok(&["logout"], "");
    let last_refresh = after["refresh_token"].as_str().unwrap();
    assert!(
        !refresh_is_accepted(&server, last_refresh).await,
        "the server still renews a session that was logged out"
    );
    assert!(machine.stored(url).is_null());

    let refused = machine.tessera(&["request", "/api/notes"], "");
    assert!(!refused.status.success(), "{}", refused.describe());
    assert!(
        refused.stderr.contains("not logged in"),
        "{}",
        refused.describe()
    );
    let status = machine.tessera(&["status"], "");
    assert_eq!(status.status.code(), Some(1), "{}", status.describe());
    assert!(
        status.stderr.contains("not logged in"),
        "{}",
        status.describe()
    );
}

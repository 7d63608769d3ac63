//! Fifty `tessera request` processes sharing one profile whose access
//! token is about to expire, against a real `tessera server`: all succeed,
//! the server sees exactly one refresh (the others find it already done
//! under the renewal lock), and no reuse of a refresh token is detected.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_tessera");
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const USERNAME: &str = "alice";
const PASSWORD: &str = "a long enough passphrase for tests";
const RUNS: usize = 50;

/// A `tessera server` child process, killed when dropped so that a failing
/// assertion does not leave it running.
struct Server {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
    _data_dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let data_dir = tempfile::tempdir().unwrap();
        let child = Command::new(BINARY)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(["--access-ttl", "10s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start `tessera server`");
        // The guard exists before anything can fail, so the child is
        // always killed.
        let mut server = Server {
            child,
            url: String::new(),
            log: Arc::default(),
            _data_dir: data_dir,
        };

        let (lines, address) = mpsc::channel();
        let stderr = server.child.stderr.take().unwrap();
        let log = Arc::clone(&server.log);
        // Keeps draining stderr for the server's whole life: a full pipe
        // would block its logging.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = without_ansi(&line);
                if let Some(url) = listening_url(&line) {
                    let _ = lines.send(url);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });

        match address.recv_timeout(STARTUP_TIMEOUT) {
            Ok(url) => server.url = url,
            Err(_) => panic!(
                "no `listening on http://…` line from the server; its log:\n{}",
                server.log.lock().unwrap()
            ),
        }
        server
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }
}

/// `http://127.0.0.1:PORT` from the start-up line, if this is it.
fn listening_url(line: &str) -> Option<String> {
    let start = line.find("listening on http://")? + "listening on ".len();
    let url: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ":/.[]".contains(*c))
        .collect();
    let url = url.trim_end_matches(['/', '.']).to_owned();
    url.rsplit(':')
        .next()
        .is_some_and(|port| port.parse::<u16>().is_ok_and(|p| p != 0))
        .then_some(url)
}

/// The line without terminal colour codes, which log formatters may add
/// even when writing to a pipe.
fn without_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter, as in `ESC [ 2 m`.
            for inner in chars.by_ref() {
                if inner.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

fn tessera(config: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("HOME", config)
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
    child.wait_with_output().unwrap()
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The audit events of `kind` in the server's data dir.
fn audit_count(server: &Server, kind: &str) -> usize {
    let output = Command::new(BINARY)
        .args(["admin", "audit", "--limit", "1000", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.split_whitespace().any(|word| word == kind))
        .count()
}

fn sign_up(url: &str) -> bool {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("{url}/auth/signup"))
            .json(&serde_json::json!({"username": USERNAME, "password": PASSWORD}))
            .send()
            .await
            .is_ok_and(|response| response.status().as_u16() == 201)
    })
}

#[test]
fn fifty_parallel_requests_renew_once_and_all_succeed() {
    let server = Server::start();
    let config = tempfile::tempdir().unwrap();
    let signup = sign_up(&server.url);
    assert!(signup, "signup failed; server log:\n{}", server.log());
    let login = tessera(
        config.path(),
        &[
            "login",
            "--server",
            &server.url,
            "--username",
            USERNAME,
            "--password-stdin",
            "--insecure-storage",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(login.status.success(), "{}", describe(&login));

    // 10 s tokens renew in their last 2 s: wait until then, so every run
    // finds the token about to expire.
    thread::sleep(Duration::from_millis(8_600));
    let runs: Vec<Output> = thread::scope(|scope| {
        let handles: Vec<_> = (0..RUNS)
            .map(|_| scope.spawn(|| tessera(config.path(), &["request", "/api/notes"], "")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    for run in &runs {
        assert!(run.status.success(), "{}", describe(run));
    }
    assert_eq!(audit_count(&server, "refresh"), 1, "{}", server.log());
    assert_eq!(audit_count(&server, "refresh_reuse_detected"), 0);
}

//! Fifty `tessera request` processes sharing one profile whose access
//! token is about to expire, against a real `tessera server`: all succeed,
//! the server sees exactly one refresh (the others find it already done
//! under the renewal lock), and no reuse of a refresh token is detected.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use support::{BINARY, Server};

const USERNAME: &str = "alice";
const PASSWORD: &str = "a long enough passphrase for tests";
const RUNS: usize = 50;

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
    let server = Server::start("10s");
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

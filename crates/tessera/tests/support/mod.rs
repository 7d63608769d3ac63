//! The harness the command-line tests share: a real `tessera server` child process on
//! a free loopback port, its start-up line read for the URL, killed when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_tessera");
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A `tessera server` child process, killed when dropped so that a failing
/// assertion does not leave it running.
pub struct Server {
    child: Child,
    pub url: String,
    log: Arc<Mutex<String>>,
    data_dir: PathBuf,
    /// The data dir, when the server made its own: removed when dropped.
    _owned_data_dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `tessera server` on a free loopback port with a fresh data dir and
    /// the given access-token lifetime.
    pub fn start(access_ttl: &str) -> Server {
        Self::start_with(&["--access-ttl", access_ttl])
    }

    /// Starts `tessera server` on a free loopback port with a fresh data dir and
    /// further command-line arguments.
    pub fn start_with<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Server {
        Self::launch(args, &[], None)
    }

    /// Starts `tessera server` on a free loopback port with further arguments and
    /// environment variables, in `data_dir` if given (which then outlives the process,
    /// so that another server can start on it), else in a fresh one.
    pub fn launch<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        envs: &[(&str, &str)],
        data_dir: Option<&Path>,
    ) -> Server {
        let owned_data_dir = match data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().unwrap()),
        };
        let data_dir = data_dir
            .or(owned_data_dir.as_ref().map(tempfile::TempDir::path))
            .unwrap()
            .to_owned();
        let child = Command::new(BINARY)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(args)
            .envs(envs.iter().copied())
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
            data_dir,
            _owned_data_dir: owned_data_dir,
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

    /// Everything the server logged so far.
    /// Ends the process at once (SIGKILL), as a crash or a lost machine would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The server's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

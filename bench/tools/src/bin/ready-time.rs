//! Start-to-ready time for bench/run: starts a server command and asks its `/readyz`
//! every millisecond until it answers 200, then prints `<milliseconds> <pid>` and
//! leaves the server running for the script to use and stop (its standard output
//! discarded, its standard error inherited). A poll loop in the shell
//! would add a process start (several milliseconds) to every attempt.
//!
//! ```text
//! ready-time HOST:PORT TIMEOUT_SECS -- COMMAND [ARGS...]
//! ```

use std::error::Error;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the server at `address` answers `GET /readyz` with 200.
fn is_ready(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status_line = [0u8; 12];
    stream.read_exact(&mut status_line).is_ok() && status_line.ends_with(b" 200")
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ready-time HOST:PORT TIMEOUT_SECS -- COMMAND [ARGS...]";
    let [address, timeout, separator, program, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    if separator != "--" {
        return Err(usage.into());
    }
    let timeout = Duration::from_secs_f64(timeout.parse()?);

    let started = Instant::now();
    // Its standard output would otherwise be this program's, a pipe nobody reads once
    // the time is printed; its log goes to standard error, as inherited.
    let mut child = Command::new(program)
        .args(rest)
        .stdout(Stdio::null())
        .spawn()?;
    while !is_ready(address) {
        if let Some(status) = child.try_wait()? {
            return Err(format!("the server exited before it was ready: {status}").into());
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            return Err(format!("the server was not ready within {timeout:?}").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();
    println!("{:.1} {}", elapsed.as_secs_f64() * 1000.0, child.id());
    Ok(())
}

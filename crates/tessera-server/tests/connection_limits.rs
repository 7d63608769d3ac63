//! The limits that keep one client from holding the server: request heads too large
//! or with too many fields, a body that never finishes (request timeout), more open
//! connections than the cap, and the graceful drain on shutdown that lets requests in
//! flight finish while refusing new connections. (The body size limit and the header
//! read timeout are tested in `api.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::{TestSetup, spawn_app, spawn_app_with};
use tessera_server::Server;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The connection cap in `connections.rs`.
const MAX_CONNECTIONS: usize = 4096;
/// The request timeout in `routes`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_request_head_too_large_or_with_too_many_fields_is_refused_with_431() {
    let app = spawn_app().await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let many: String = (0..200)
        .map(|index| format!("X-Field-{index}: v\r\n"))
        .collect();
    let many = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n");

    for request in [huge, many] {
        let answer = exchange(&address, request.as_bytes()).await;

        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "answered {:?}",
            answer.lines().next()
        );
    }
    let healthy = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
}

#[tokio::test]
async fn a_body_that_never_finishes_is_answered_408_after_the_request_timeout() {
    let app = spawn_app().await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n\
          grant_type=",
    )
    .await
    .unwrap();
    let started = Instant::now();

    let answer = tokio::time::timeout(REQUEST_TIMEOUT * 2, read_whole_answer(&mut slow)).await;

    let waited = started.elapsed();
    let answer = answer.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "answered {answer:?}");
    assert!(
        waited >= REQUEST_TIMEOUT - Duration::from_secs(1),
        "after {waited:?}"
    );
    assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    // Idle connections are closed after the header read timeout: longer than opening
    // them all takes, so that every one still holds its slot at the end.
    let app = spawn_app_with(|config| config.header_read_timeout = Duration::from_secs(300)).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    // Each connection is served once and kept open, so it holds its slot.
    let mut held = Vec::with_capacity(MAX_CONNECTIONS);
    for _ in 0..MAX_CONNECTIONS {
        let mut connection = TcpStream::connect(&address).await.unwrap();
        connection.write_all(HEALTH_CHECK).await.unwrap();
        held.push(connection);
    }
    for connection in &mut held {
        assert!(read_answer(connection).await.starts_with("HTTP/1.1 200"));
    }

    // The kernel completes the handshake, but the server does not take the
    // connection: no answer while every slot is held.
    let mut waiting = TcpStream::connect(&address).await.unwrap();
    waiting.write_all(HEALTH_CHECK).await.unwrap();
    let mut buffer = [0; 256];
    let early = tokio::time::timeout(Duration::from_secs(1), waiting.read(&mut buffer)).await;
    assert!(early.is_err(), "a connection past the cap was served");

    drop(held.pop());
    let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut waiting)).await;
    assert!(answer.unwrap().starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let setup = TestSetup::new().await;
    let server = Server::bind(setup.config.clone()).await.unwrap();
    let address = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    // A request half sent when the shutdown begins.
    let body = br#"{"username": "drain", "password": "drain-password"}"#;
    let mut in_flight = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = TcpStream::connect(address).await;
    in_flight.write_all(&body[10..]).await.unwrap();
    let answer = read_answer(&mut in_flight).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), serving).await;

    assert!(answer.starts_with("HTTP/1.1 201"), "answered {answer:?}");
    assert!(
        refused.is_err(),
        "a new connection was accepted while draining"
    );
    assert!(stopped.unwrap().unwrap().is_ok());
}

const HEALTH_CHECK: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// Sends `request` on a new connection and reads until the server closes it.
async fn exchange(address: &str, request: &[u8]) -> String {
    let mut connection = TcpStream::connect(address).await.unwrap();
    // The server may answer and close before reading everything.
    let _ = connection.write_all(request).await;
    let mut answer = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(10), connection.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads until the end of a JSON answer's body (`}`) or of the connection.
async fn read_whole_answer(connection: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0; 1024];
    while !answer.ends_with(b"}") {
        match connection.read(&mut buffer).await.unwrap() {
            0 => break,
            read => answer.extend_from_slice(&buffer[..read]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads one answer's head (and what came with it) from a kept-alive connection.
async fn read_answer(connection: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0; 1024];
    while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = connection.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the connection closed before an answer");
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

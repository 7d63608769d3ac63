//! Forward-auth with a real nginx (Debian's package, installed by CI, which runs this
//! test with `--ignored`; `cargo test -p tessera-server --test forward_auth_nginx --
//! --ignored` runs it by hand where nginx is installed): nginx asks
//! `/auth/verify` about every request to a small upstream, which therefore answers only
//! requests with a valid token, and learns the user from `X-Tessera-User`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const NGINX: &str = "/usr/sbin/nginx";

/// The nginx process, stopped when the test ends, however it ends.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An upstream that answers every request with the user nginx forwarded.
async fn upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let user = text
                    .lines()
                    .find_map(|line| line.strip_prefix("x-tessera-user:"))
                    .map(str::trim)
                    .unwrap_or("nobody")
                    .to_owned();
                let body = format!("upstream saw {user}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_nginx(dir: &std::path::Path, port: u16, tessera: &str, upstream: u16) -> Nginx {
    let config = format!(
        "daemon off;\nmaster_process off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
         events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  \
         proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n  \
         uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n  server {{\n    \
         listen 127.0.0.1:{port};\n    location = /_tessera {{\n      internal;\n      \
         proxy_pass {tessera}/auth/verify;\n      proxy_pass_request_body off;\n      \
         proxy_set_header Content-Length \"\";\n      \
         proxy_set_header X-Original-Method $request_method;\n    }}\n    \
         location /app/ {{\n      auth_request /_tessera;\n      \
         auth_request_set $tessera_user $upstream_http_x_tessera_user;\n      \
         proxy_set_header X-Tessera-User $tessera_user;\n      \
         proxy_pass http://127.0.0.1:{upstream};\n    }}\n  }}\n}}\n",
        dir = dir.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {NGINX} (apt-get install nginx): {error}"));
    Nginx(child)
}

#[tokio::test]
#[ignore = "needs Debian's nginx: CI installs it and runs this with --ignored"]
async fn nginx_lets_only_requests_with_a_valid_token_reach_the_upstream() {
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.path().join("data"),
        ..ServerConfig::default()
    };
    let server = Server::bind(config).await.unwrap();
    let tessera = server.base_url().to_owned();
    tokio::spawn(server.serve(std::future::pending()));
    let upstream = upstream().await;
    let port = free_port();
    let nginx_dir = tempfile::tempdir().unwrap();
    let _nginx = start_nginx(nginx_dir.path(), port, &tessera, upstream);
    let http = reqwest::Client::new();
    let app = format!("http://127.0.0.1:{port}/app/");
    let mut ready = false;
    for _ in 0..50 {
        if http.get(&app).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "nginx did not start");
    http.post(format!("{tessera}/auth/signup"))
        .json(&json!({"username": "nina", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    let tokens: Value = http
        .post(format!("{tessera}/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "nina"),
            ("password", "correct horse"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let me: Value = http
        .get(format!("{tessera}/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let anonymous = http.get(&app).send().await.unwrap();
    let forged = http.get(&app).bearer_auth("a.b.c").send().await.unwrap();
    let valid = http.get(&app).bearer_auth(access).send().await.unwrap();
    let valid_status = valid.status();
    let valid_body = valid.text().await.unwrap();
    http.post(format!("{tessera}/auth/logout"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let after_logout = http.get(&app).bearer_auth(access).send().await.unwrap();

    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(valid_status, StatusCode::OK);
    assert_eq!(
        valid_body,
        format!("upstream saw {}", me["sub"].as_str().unwrap())
    );
    assert_eq!(after_logout.status(), StatusCode::UNAUTHORIZED);
}

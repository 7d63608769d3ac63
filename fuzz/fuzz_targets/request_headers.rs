//! Fuzzes what the server and the guard read from request headers before any
//! credential is checked: cookies and the anti-CSRF check (`Cookie`, `X-CSRF-Token`,
//! `Origin`, `Host`), the bearer token (`Authorization`), and the client address
//! (`X-Forwarded-For` behind trusted proxies). None may panic, and each answer must be
//! one the headers actually justify.
//!
//! Input: lines. The first byte of the first line picks the peer; every further line
//! is a header whose first byte picks its name and whose rest is its value.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use tessera_server::fuzzing::{
    CSRF_COOKIE_AND_HEADER, HeaderMap, HeaderName, HeaderValue, Method, client_ip, cookie,
    csrf_allows,
};

const NAMES: &[&str] = &[
    "cookie",
    "authorization",
    "x-forwarded-for",
    "x-csrf-token",
    "origin",
    "host",
];

const COOKIES: &[&str] = &[
    "__Host-tessera-access",
    "__Secure-tessera-refresh",
    "__Host-tessera-csrf",
    "a",
];

const TRUSTED: &str = "10.0.0.0/8, fd00::/8, 192.0.2.7";

const PEERS: &[&str] = &["10.0.0.1", "198.51.100.7", "::ffff:10.0.0.2", "fd00::1"];

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&byte| byte == b'\n');
    let peer_choice = lines
        .next()
        .and_then(|line| line.first())
        .copied()
        .unwrap_or(0);
    let peer: IpAddr = match PEERS[usize::from(peer_choice) % PEERS.len()].parse() {
        Ok(peer) => peer,
        Err(_) => return,
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((&which, value)) = line.split_first() else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(which) % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }

    check_cookies(&headers);
    check_csrf(&headers);
    check_bearer(&headers);
    check_client_ip(peer, &headers);
});

/// A cookie found was sent as `name=value` in one of the `Cookie` headers, exactly once.
fn check_cookies(headers: &HeaderMap) {
    for name in COOKIES {
        let Some(value) = cookie(headers, name) else {
            continue;
        };
        assert!(!value.is_empty() && !value.contains(';'));
        let pair = format!("{name}={value}");
        let sent = headers
            .get_all("cookie")
            .iter()
            .filter_map(|header| header.to_str().ok())
            .flat_map(|text| text.split(';'))
            .filter(|sent| sent.trim().split_once('=').map(|(key, _)| key) == Some(*name))
            .collect::<Vec<_>>();
        assert_eq!(sent.len(), 1, "a cookie sent {} times was read", sent.len());
        assert_eq!(sent[0].trim(), pair);
    }
}

/// Safe methods always pass; an unsafe one only with the cookie echoed and an Origin.
fn check_csrf(headers: &HeaderMap) {
    assert!(csrf_allows(&Method::GET, headers));
    if csrf_allows(&Method::POST, headers) {
        let (cookie_name, header_name) = CSRF_COOKIE_AND_HEADER;
        let echoed = headers
            .get(header_name)
            .and_then(|value| value.to_str().ok());
        assert!(cookie(headers, cookie_name).is_some());
        assert_eq!(cookie(headers, cookie_name), echoed);
        assert!(headers.contains_key("origin") && headers.contains_key("host"));
    }
}

/// A bearer token read is the whole credential of the one `Authorization` header.
fn check_bearer(headers: &HeaderMap) {
    let Ok(token) = tessera_guard::bearer_token(headers) else {
        return;
    };
    let mut all = headers.get_all("authorization").iter();
    let header = all.next().and_then(|value| value.to_str().ok());
    assert!(
        all.next().is_none(),
        "a token was read from several headers"
    );
    let Some((scheme, rest)) = header.and_then(|header| header.split_once(' ')) else {
        panic!("a token was read from a header without a scheme");
    };
    assert!(scheme.eq_ignore_ascii_case("bearer"));
    assert_eq!(rest, token);
    assert!(!token.trim_end_matches('=').is_empty());
    assert!(
        token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~+/=".contains(&byte))
    );
}

/// The client is the peer, or an address some `X-Forwarded-For` entry names; an
/// untrusted peer is always the client.
fn check_client_ip(peer: IpAddr, headers: &HeaderMap) {
    let Some(client) = client_ip(peer, headers, TRUSTED) else {
        panic!("the fixed trusted-proxy list no longer parses");
    };
    let peer = peer.to_canonical();
    let peer_trusted = matches!(peer, IpAddr::V4(v4) if v4.octets()[0] == 10 || v4.to_string() == "192.0.2.7")
        || matches!(peer, IpAddr::V6(v6) if v6.segments()[0] & 0xff00 == 0xfd00);
    if !peer_trusted {
        assert_eq!(client, peer, "an untrusted peer's header chose its address");
        return;
    }
    // UTF-8, as the server reads it: wider than `to_str`, which takes visible ASCII only.
    let named = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| std::str::from_utf8(value.as_bytes()).ok())
        .flat_map(|line| line.split(','))
        .filter_map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<IpAddr>()
                .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
                .ok()
        })
        .any(|entry| entry.to_canonical() == client);
    assert!(client == peer || named, "{client} came from nowhere");
}

//! Fuzzes the token endpoint's body parsing (form and JSON, as `/oauth/token`,
//! `/oauth/revoke` and `/oauth/introspect` read them) and the JSON extractor of the
//! other routes, with arbitrary bodies under arbitrary or well-known content types.
//! None may panic, and every refusal must be a 4xx: a body is the client's fault,
//! never the server's.
//!
//! Input: one selector byte, then the body. Selectors below 128 pick a content type
//! from the list; from 128 on, the body's first line is the content type itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_server::fuzzing::{HeaderMap, HeaderValue, json_body, revoke_request, token_request};

const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/x-www-form-urlencoded"),
    Some("application/json"),
    Some("application/x-www-form-urlencoded; charset=UTF-8"),
    Some("application/json; charset=utf-8"),
    Some("APPLICATION/JSON"),
    Some("application/problem+json"),
    Some("text/plain"),
    Some("multipart/form-data; boundary=x"),
    None,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let body = if selector >= 128 {
        let (line, body) = match rest.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &[][..]),
        };
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.insert("content-type", value);
        }
        body
    } else {
        if let Some(value) = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()] {
            headers.insert("content-type", HeaderValue::from_static(value));
        }
        rest
    };

    for outcome in [
        token_request(&headers, body),
        revoke_request(&headers, body),
    ] {
        if let Err(status) = outcome {
            assert!(
                (400..500).contains(&status),
                "token body refused with {status}"
            );
        }
    }
    match json_body(&headers, body) {
        Some(Err(status)) => {
            assert!(
                (400..500).contains(&status),
                "JSON body refused with {status}"
            );
        }
        Some(Ok(())) => {}
        None => panic!("the JSON extractor did not finish on a body held in memory"),
    }
});

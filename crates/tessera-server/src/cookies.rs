//! Cookie mode for the browser page: the access token in `__Host-tessera-access`
//! (HttpOnly, Secure, SameSite=Lax, Path=/), the refresh token in
//! `__Secure-tessera-refresh` (HttpOnly, Secure, SameSite=Strict, only sent to
//! `/auth/browser`), and an anti-CSRF token in `__Host-tessera-csrf` that the page's
//! script reads and echoes in `X-CSRF-Token` (double submit; the `__Host-` prefix keeps
//! other subdomains from planting it). Script can read neither token.

use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The access-token cookie.
pub(crate) const ACCESS_COOKIE: &str = "__Host-tessera-access";
/// The refresh-token cookie.
pub(crate) const REFRESH_COOKIE: &str = "__Secure-tessera-refresh";
/// The anti-CSRF cookie, readable by the page.
pub(crate) const CSRF_COOKIE: &str = "__Host-tessera-csrf";
/// The header that must echo the anti-CSRF cookie on unsafe requests.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// The only path the refresh cookie is sent to.
pub(crate) const REFRESH_PATH: &str = "/auth/browser";

/// The value of cookie `name` in the request, if sent once. A name sent twice is
/// ignored: a planted duplicate must not win.
pub(crate) fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key == name {
                if found.is_some() {
                    return None;
                }
                found = Some(value);
            }
        }
    }
    found.filter(|value| !value.is_empty())
}

/// The three `Set-Cookie` headers of a browser login or renewal.
pub(crate) fn set_session(
    headers: &mut HeaderMap,
    access: &str,
    access_max_age: i64,
    refresh: &str,
    refresh_max_age: i64,
    csrf: &str,
) {
    append(
        headers,
        format!(
            "{ACCESS_COOKIE}={access}; Path=/; Max-Age={access_max_age}; HttpOnly; Secure; \
             SameSite=Lax"
        ),
    );
    append(
        headers,
        format!(
            "{REFRESH_COOKIE}={refresh}; Path={REFRESH_PATH}; Max-Age={refresh_max_age}; \
             HttpOnly; Secure; SameSite=Strict"
        ),
    );
    append(
        headers,
        format!("{CSRF_COOKIE}={csrf}; Path=/; Max-Age={refresh_max_age}; Secure; SameSite=Strict"),
    );
}

/// `Set-Cookie` headers that delete all three cookies.
pub(crate) fn clear_session(headers: &mut HeaderMap) {
    for (name, path, http_only) in [
        (ACCESS_COOKIE, "/", "; HttpOnly"),
        (REFRESH_COOKIE, REFRESH_PATH, "; HttpOnly"),
        (CSRF_COOKIE, "/", ""),
    ] {
        append(
            headers,
            format!("{name}=; Path={path}; Max-Age=0{http_only}; Secure; SameSite=Strict"),
        );
    }
}

fn append(headers: &mut HeaderMap, cookie: String) {
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(SET_COOKIE, value);
    }
}

/// A fresh anti-CSRF token: 256 random bits.
pub(crate) fn new_csrf_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether a cookie-authenticated request may proceed: safe methods always; unsafe
/// ones only with `X-CSRF-Token` equal to the anti-CSRF cookie and an `Origin` of this
/// very server (the `Host` it was sent to).
pub(crate) fn csrf_allows(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let (Some(cookie), Some(header)) = (
        get(headers, CSRF_COOKIE),
        headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok()),
    ) else {
        return false;
    };
    if aws_lc_rs::constant_time::verify_slices_are_equal(cookie.as_bytes(), header.as_bytes())
        .is_err()
    {
        return false;
    }
    same_origin(headers)
}

/// `Origin` names the host the request was sent to (RFC 6454): a page of this server.
fn same_origin(headers: &HeaderMap) -> bool {
    let origin = headers.get(ORIGIN).and_then(|value| value.to_str().ok());
    let host = headers.get(HOST).and_then(|value| value.to_str().ok());
    let (Some(origin), Some(host)) = (origin, host) else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn a_cookie_is_found_among_others_and_a_duplicate_is_refused() {
        let one = headers(&[("cookie", "a=1; __Host-tessera-csrf=xyz; b=2")]);
        let twice = headers(&[
            ("cookie", "__Host-tessera-csrf=xyz"),
            ("cookie", "__Host-tessera-csrf=planted"),
        ]);

        assert_eq!(get(&one, CSRF_COOKIE), Some("xyz"));
        assert_eq!(get(&twice, CSRF_COOKIE), None);
        assert_eq!(get(&one, ACCESS_COOKIE), None);
    }

    #[test]
    fn unsafe_requests_need_the_matching_token_and_this_origin() {
        let good = [
            ("cookie", "__Host-tessera-csrf=t0k3n"),
            ("x-csrf-token", "t0k3n"),
            ("origin", "http://localhost:8080"),
            ("host", "localhost:8080"),
        ];
        let mut wrong_token = good;
        wrong_token[1] = ("x-csrf-token", "other");
        let mut other_origin = good;
        other_origin[2] = ("origin", "http://evil.example");
        let no_origin = &good[..2];

        assert!(csrf_allows(&Method::POST, &headers(&good)));
        assert!(!csrf_allows(&Method::POST, &headers(&wrong_token)));
        assert!(!csrf_allows(&Method::DELETE, &headers(&other_origin)));
        assert!(!csrf_allows(&Method::PUT, &headers(no_origin)));
        assert!(csrf_allows(&Method::GET, &headers(&[])));
    }
}

//! Entry points for the cargo-fuzz targets in `fuzz/`: the parsers that read what a
//! client sends before any credential is checked (token-endpoint bodies in both
//! encodings, JSON bodies through [`ApiJson`], cookies and the anti-CSRF check,
//! `X-Forwarded-For`), reachable from the fuzz crate without becoming part of the
//! server's API. Hidden from the docs; nothing else calls them.

use std::future::Future;
use std::net::IpAddr;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::extract::FromRequest as _;
use axum::http::Request;
use axum::response::IntoResponse as _;

pub use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::ApiJson;
use super::accounts::SignUpRequest;
use super::oauth::{RevokeRequest, TokenRequest, parse};
use crate::error::ApiError;

/// Reads a token-endpoint body as `POST /oauth/token` does: `Ok` when it parsed, else
/// the status of the refusal, which must be a 4xx whatever the bytes.
pub fn token_request(headers: &HeaderMap, body: &[u8]) -> Result<(), u16> {
    parse::<TokenRequest>(headers, body)
        .map(drop)
        .map_err(status_of)
}

/// Reads a revocation or introspection body (`token`, `token_type_hint`).
pub fn revoke_request(headers: &HeaderMap, body: &[u8]) -> Result<(), u16> {
    parse::<RevokeRequest>(headers, body)
        .map(drop)
        .map_err(status_of)
}

/// Extracts a sign-up body through [`ApiJson`], as `POST /auth/signup` does; the
/// same refusal statuses as above. `None` if the extractor did not finish at once,
/// which a body already in memory never causes.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Option<Result<(), u16>> {
    let mut request = Request::new(Body::from(body.to_vec()));
    *request.headers_mut() = headers.clone();
    let extracted = ready(ApiJson::<SignUpRequest>::from_request(request, &()))?;
    Some(extracted.map(drop).map_err(status_of))
}

/// The value of cookie `name`, as the browser routes read it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    crate::cookies::get(headers, name)
}

/// Whether a cookie-authenticated request with `method` passes the anti-CSRF check.
pub fn csrf_allows(method: &Method, headers: &HeaderMap) -> bool {
    crate::cookies::csrf_allows(method, headers)
}

/// The name of the anti-CSRF cookie and of the header that must echo it.
pub const CSRF_COOKIE_AND_HEADER: (&str, &str) =
    (crate::cookies::CSRF_COOKIE, crate::cookies::CSRF_HEADER);

/// The client address of a request from `peer` carrying `headers`, with the
/// `trusted_proxies` setting `trusted`; `None` when that setting does not parse.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &str) -> Option<IpAddr> {
    let trusted = crate::client_ip::parse_trusted_proxies(trusted).ok()?;
    Some(crate::client_ip::client_ip(
        peer,
        headers.get_all("x-forwarded-for"),
        &trusted,
    ))
}

fn status_of(error: ApiError) -> u16 {
    error.into_response().status().as_u16()
}

/// Polls `future` until it is ready, a bounded number of times: extractors over a
/// body held in memory finish on the first poll, so no runtime is needed.
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    (0..16).find_map(|_| match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    })
}

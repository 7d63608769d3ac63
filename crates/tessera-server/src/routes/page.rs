//! The browser page at `/` and the scripts it and other sites load: plain files from
//! `web/`, compiled into the binary so that nothing is fetched from anywhere else.

use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../../../../web/index.html");
const APP_JS: &str = include_str!("../../../../web/app.js");
const APP_CSS: &str = include_str!("../../../../web/app.css");
const TESSERA_JS: &str = include_str!("../../../../web/tessera.js");

pub(super) async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

pub(super) async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub(super) async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

pub(super) async fn tessera_js() -> Response {
    asset(TESSERA_JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load, so a new release is picked up at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

//! The browser page at `/` and the scripts it and other sites load: plain files from
//! `web/`, compiled into the binary so that nothing is fetched from anywhere else.

use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../../../../web/index.html");
const APP_JS: &str = include_str!("../../../../web/app.js");
const APP_CSS: &str = include_str!("../../../../web/app.css");
const TESSERA_JS: &str = include_str!("../../../../web/tessera.js");

/// `GET /`.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "page",
    tag = "page",
    responses(
        (status = 200, description = "The browser page",
            content_type = "text/html", body = String),
    )
)]
pub(super) async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /app.js`.
#[utoipa::path(
    get,
    path = "/app.js",
    operation_id = "page_script",
    tag = "page",
    responses(
        (status = 200, description = "The page's script",
            content_type = "text/javascript", body = String),
    )
)]
pub(super) async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /app.css`.
#[utoipa::path(
    get,
    path = "/app.css",
    operation_id = "page_styles",
    tag = "page",
    responses(
        (status = 200, description = "The page's styles",
            content_type = "text/css", body = String),
    )
)]
pub(super) async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// `GET /tessera.js`.
#[utoipa::path(
    get,
    path = "/tessera.js",
    operation_id = "bearer_library",
    tag = "page",
    responses(
        (status = 200,
            description = "The bearer-mode library for single-page apps on other origins",
            content_type = "text/javascript", body = String),
    )
)]
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

/// This module's operations, for the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(index, app_js, app_css, tessera_js))]
pub(crate) struct Api;

//! The HTTP surface: one module per resource, each with its handlers, assembled here
//! with the fallbacks that keep every answer in the contract's JSON shape.

pub(crate) mod accounts;
pub(crate) mod browser;
mod cors;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod notes;
pub(crate) mod oauth;
pub(crate) mod page;
pub(crate) mod prometheus;
pub(crate) mod resource_servers;
pub(crate) mod well_known;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest};
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A request (body included) must be answered within this time, or gets 408.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything the page loads comes from Tessera itself; no inline script or style, no
/// framing, no plugins (sent on every answer: harmless on JSON, essential on HTML).
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

/// JSON request bodies, refused in the contract's error shape (415, 413, 422, 400).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let cors = cors::layer(&state.config.cors_origins);
    Router::new()
        .route("/auth/signup", post(accounts::sign_up))
        .route("/auth/logout", post(accounts::log_out))
        .route("/auth/password", post(accounts::change_password))
        .route("/auth/sessions", get(accounts::list_sessions))
        .route(
            "/auth/sessions/{id}",
            axum::routing::delete(accounts::end_session),
        )
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/auth/verify", get(resource_servers::verify))
        .route("/auth/revocations", get(resource_servers::revocations))
        .route(
            "/auth/revocations/stream",
            get(resource_servers::revocation_stream),
        )
        .route(
            "/userinfo",
            get(accounts::userinfo).post(accounts::userinfo),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/api/notes", get(notes::list).post(notes::create))
        .route(
            "/api/notes/{id}",
            get(notes::read).put(notes::update).delete(notes::delete),
        )
        .route("/.well-known/jwks.json", get(well_known::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(well_known::discovery),
        )
        .route("/healthz", get(well_known::healthz))
        .route("/readyz", get(well_known::readyz))
        .route("/metrics", get(prometheus::metrics))
        .route("/", get(page::index))
        .route("/app.js", get(page::app_js))
        .route("/app.css", get(page::app_css))
        .route("/tessera.js", get(page::tessera_js))
        .route("/auth/browser/login", post(browser::log_in))
        .route("/auth/browser/session", get(browser::session))
        .route("/auth/browser/refresh", post(browser::refresh))
        .route("/auth/browser/logout", post(browser::log_out))
        .merge(crate::openapi::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // One stack for every route, built with ServiceBuilder: axum clones a route's
        // service for each request, and each separate `Router::layer` would add a boxed
        // service to clone (and free) per request. Outermost first: the closing line and
        // the metrics see the final answer.
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    std::sync::Arc::clone(&state.telemetry),
                    crate::request_trace::observe,
                ))
                .layer(cors)
                .layer(axum::middleware::map_response(finish_answer))
                .layer(TimeoutLayer::with_status_code(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                ))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .with_state(state)
}

/// Every answer's last touches, in one pass: the error shape of the contract (see
/// [`json_errors`]), and the security headers, which override any a handler set, but
/// for `Cache-Control`: answers about a user must not be kept by caches, and public
/// documents say otherwise themselves.
async fn finish_answer(response: Response) -> Response {
    let mut response = json_errors(response);

    let headers = response.headers_mut();
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Turns every error answer that is not already JSON (the plain-text rejections of
/// extractors: a body over the limit, a path that is not UTF-8, …) into the contract's
/// JSON error with the same status, so no refusal escapes the error shape.
fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    ApiError::from_status(status).into_response()
}

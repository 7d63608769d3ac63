//! The HTTP surface: one module per resource, each with its handlers, assembled here
//! with the fallbacks that keep every answer in the contract's JSON shape.

mod accounts;
mod notes;
mod oauth;
mod well_known;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A request (body included) must be answered within this time, or gets 408.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// JSON request bodies, refused in the contract's error shape (415, 413, 422, 400).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Every route of the service.
pub fn router(state: AppState) -> Router {
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
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::map_response(json_errors))
        // Answers about a user must not be kept by caches; public documents say
        // otherwise themselves.
        .layer(SetResponseHeaderLayer::if_not_present(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// Turns every error answer that is not already JSON (the plain-text rejections of
/// extractors: a body over the limit, a path that is not UTF-8, …) into the contract's
/// JSON error with the same status, so no refusal escapes the error shape.
async fn json_errors(response: Response) -> Response {
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

/// The request span names the matched route, never the raw URI.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!("request", method = %request.method(), route)
}

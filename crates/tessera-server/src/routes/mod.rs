//! The HTTP surface: one module per resource, each with its handlers, assembled here
//! with the fallbacks that keep every answer in the contract's JSON shape.

mod accounts;
mod notes;
mod oauth;
mod well_known;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath};
use axum::http::Request;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// JSON request bodies, refused in the contract's error shape (415, 413, 422, 400).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/auth/signup", post(accounts::sign_up))
        .route("/auth/logout", post(accounts::log_out))
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
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The request span names the matched route, never the raw URI.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!("request", method = %request.method(), route)
}

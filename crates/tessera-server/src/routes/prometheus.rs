//! `GET /metrics`: the server's metrics in Prometheus's text format, rendered on each
//! scrape from the server's own registry. With `metrics_token_file` set, a scraper must
//! send that token as a bearer token; without it the endpoint is open to whoever can
//! reach the listen address.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::Digest as _;

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::Sample;

/// The media type of Prometheus's text exposition format, version 0.0.4.
const EXPOSITION_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: the server's metrics for Prometheus.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Prometheus's text exposition format, version 0.0.4",
            content_type = "text/plain", body = String),
        (status = 401, response = crate::openapi::Unauthorized),
    )
)]
pub(super) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.metrics_token {
        let presented =
            tessera_guard::bearer_token(&headers).map_err(|_| ApiError::InvalidToken)?;
        let presented: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        if aws_lc_rs::constant_time::verify_slices_are_equal(&presented, expected).is_err() {
            tracing::debug!("metrics scrape refused: wrong token");
            return Err(ApiError::InvalidToken);
        }
    }
    let sample = Sample {
        signing_key_age_secs: crate::clock::now().saturating_sub(state.keys.signer_created_at()),
        hashing_queue_depth: state.passwords.queue_depth(),
        hashes: state.passwords.hashes_computed(),
        verifications: state.passwords.verifications_computed(),
    };
    let mut response = state.telemetry.render(sample).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION_FORMAT));
    Ok(response)
}

/// This module's operations, for the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(metrics))]
pub(crate) struct Api;

//! Public documents: the JWKS (RFC 7517), the discovery document (OpenID Connect
//! Discovery 1.0 §3, RFC 8414) and the liveness probe.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub(super) async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.jwks().as_ref().clone()).into_response();
    // Short enough that a new key reaches caches well before it signs anything.
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

pub(super) async fn discovery(State(state): State<AppState>) -> Json<Value> {
    let issuer = state.issuer_url.as_ref();
    // The algorithms of every key that may have signed a live token.
    let mut algorithms: Vec<String> = state
        .keys
        .jwks()
        .keys
        .iter()
        .map(|jwk| jwk.alg.clone())
        .collect();
    algorithms.push(state.keys.issuer().key().algorithm().jose_name().to_owned());
    algorithms.sort();
    algorithms.dedup();
    let mut document = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": ["token"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "subject_types_supported": ["public"],
        // RFC 8414 has no member for access-token algorithms: the OpenID one, which
        // libraries read, and an explicit one.
        "id_token_signing_alg_values_supported": algorithms,
        "access_token_signing_alg_values_supported": algorithms,
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "scope", "roles",
        ],
    });
    // Listed only when it is on: resource servers need the configured credential.
    if state.introspection.is_some() {
        document["introspection_endpoint"] = json!(format!("{issuer}/oauth/introspect"));
        document["introspection_endpoint_auth_methods_supported"] = json!(["bearer"]);
    }
    Json(document)
}

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 when the database answers, else 503 with `Retry-After`, so a load
/// balancer sends traffic elsewhere until it does.
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.store.ping().await {
        // Redis down does not make the instance unready: logins are then throttled per
        // instance, which is safe, and taking every instance out of rotation at once
        // would turn a Redis outage into a full one. The answer says so instead.
        Ok(()) => Ok(Json(match state.throttle.redis_up() {
            None => json!({"status": "ready", "database": "ok"}),
            Some(true) => json!({"status": "ready", "database": "ok", "redis": "ok"}),
            Some(false) => json!({
                "status": "ready",
                "database": "ok",
                "redis": "unavailable: logins are throttled per instance",
            }),
        })),
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            Err(ApiError::Unavailable)
        }
    }
}

//! Public documents: the JWKS (RFC 7517), the discovery document (OpenID Connect
//! Discovery 1.0 §3, RFC 8414) and the liveness probe.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// The published keys (RFC 7517 §5), as `tessera_token::JwkSet` serializes them.
#[derive(ToSchema)]
#[schema(as = JwkSet)]
#[allow(dead_code)] // Describes `tessera_token::JwkSet`, which knows nothing of OpenAPI.
pub(super) struct JwkSetSchema {
    keys: Vec<JwkSchema>,
}

/// One public key (RFC 7517 §4).
#[derive(ToSchema)]
#[schema(as = Jwk)]
#[allow(dead_code)]
pub(super) struct JwkSchema {
    /// `OKP`, `EC` or `RSA`.
    kty: String,
    /// The curve, for `OKP` and `EC`.
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    kid: String,
    /// Always `sig`.
    #[schema(rename = "use")]
    key_use: String,
    /// The one algorithm the key is used with.
    alg: String,
}

/// `GET /.well-known/jwks.json`: the keys that verify Tessera's tokens.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    responses(
        (status = 200, description = "The public keys, each with its `kid`", body = JwkSetSchema,
            content_type = "application/json",
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
    )
)]
pub(super) async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.jwks().as_ref().clone()).into_response();
    // Short enough that a new key reaches caches well before it signs anything.
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// The discovery document (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Discovery {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    revocation_endpoint: String,
    userinfo_endpoint: String,
    /// Listed only when `introspection_secret_file` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    introspection_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    introspection_endpoint_auth_methods_supported: Option<Vec<&'static str>>,
    grant_types_supported: Vec<&'static str>,
    response_types_supported: Vec<&'static str>,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    subject_types_supported: Vec<&'static str>,
    /// RFC 8414 has no member for access-token algorithms: the OpenID one, which
    /// libraries read, and an explicit one.
    id_token_signing_alg_values_supported: Vec<String>,
    access_token_signing_alg_values_supported: Vec<String>,
    claims_supported: Vec<&'static str>,
}

/// `GET /.well-known/openid-configuration`.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    responses((status = 200, description = "The discovery document", body = Discovery))
)]
pub(super) async fn discovery(State(state): State<AppState>) -> Json<Discovery> {
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
    // Listed only when it is on: resource servers need the configured credential.
    let introspection = state.introspection.is_some();
    Json(Discovery {
        issuer: issuer.to_owned(),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        token_endpoint: format!("{issuer}/oauth/token"),
        revocation_endpoint: format!("{issuer}/oauth/revoke"),
        userinfo_endpoint: format!("{issuer}/userinfo"),
        introspection_endpoint: introspection.then(|| format!("{issuer}/oauth/introspect")),
        introspection_endpoint_auth_methods_supported: introspection.then(|| vec!["bearer"]),
        grant_types_supported: vec!["password", "refresh_token"],
        response_types_supported: vec!["token"],
        token_endpoint_auth_methods_supported: vec!["none"],
        revocation_endpoint_auth_methods_supported: vec!["none"],
        subject_types_supported: vec!["public"],
        id_token_signing_alg_values_supported: algorithms.clone(),
        access_token_signing_alg_values_supported: algorithms,
        claims_supported: vec![
            "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "scope", "roles",
        ],
    })
}

/// The liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Health {
    /// `ok`.
    status: &'static str,
}

/// `GET /healthz`: liveness; answers whenever the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Readiness {
    /// `ready`.
    status: &'static str,
    /// `ok`.
    database: &'static str,
    /// Present when Redis is configured: `ok`, or why logins are throttled per instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<&'static str>,
}

/// Readiness: 200 when the database answers, else 503 with `Retry-After`, so a load
/// balancer sends traffic elsewhere until it does.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: the database answers", body = Readiness),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    match state.store.ping().await {
        // Redis down does not make the instance unready: logins are then throttled per
        // instance, which is safe, and taking every instance out of rotation at once
        // would turn a Redis outage into a full one. The answer says so instead.
        Ok(()) => Ok(Json(Readiness {
            status: "ready",
            database: "ok",
            redis: state.throttle.redis_up().map(|up| {
                if up {
                    "ok"
                } else {
                    "unavailable: logins are throttled per instance"
                }
            }),
        })),
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            Err(ApiError::Unavailable)
        }
    }
}

/// This module's operations, for the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(jwks, discovery, healthz, readyz))]
pub(crate) struct Api;

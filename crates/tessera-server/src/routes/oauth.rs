//! The token endpoint (RFC 6749 §3.2): the `password` and `refresh_token` grants, from a
//! form (the RFC's encoding) or from JSON (what many SDKs send).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::Digest as _;
use tessera_token::Secret;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::origin::Origin;
use crate::sessions::{self, ClientLabel};
use crate::state::AppState;

/// Longest `client_id` or `User-Agent` recorded on a session.
const MAX_LABEL_CHARS: usize = 200;

/// The parameters of both grants. Unknown parameters are ignored (RFC 6749 §3.2);
/// repeated ones are refused (§3.2: "MUST NOT be included more than once").
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "grant_type": "password",
    "username": "alice",
    "password": "correct horse battery staple",
    "client_id": "notes-cli"
}))]
pub(super) struct TokenRequest {
    /// `password` (needs `username` and `password`) or `refresh_token` (needs
    /// `refresh_token`).
    #[schema(value_type = String, pattern = "^(password|refresh_token)$", required = true)]
    grant_type: Option<String>,
    username: Option<String>,
    #[schema(value_type = Option<String>)]
    password: Option<Secret<String>>,
    /// The refresh token of the last answer; each is good for one use.
    #[schema(value_type = Option<String>)]
    refresh_token: Option<Secret<String>>,
    /// A label for the session, such as the app's name; first-party public clients
    /// need no secret.
    client_id: Option<String>,
}

/// `POST /oauth/token` (RFC 6749 §3.2): the password and refresh-token grants.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    request_body(
        description = "The grant, as a form (RFC 6749's encoding) or as JSON",
        content(
            (TokenRequest = "application/x-www-form-urlencoded"),
            (TokenRequest = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "A new token pair (RFC 6749 §5.1)",
            body = crate::sessions::TokenResponse,
            headers(
                ("Cache-Control" = String, description = "`no-store`"),
                ("Pragma" = String, description = "`no-cache`"),
            )),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 429, response = crate::openapi::Throttled),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn token(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: TokenRequest = parse(&headers, &body)?;
    let grant = match request.grant_type.as_deref() {
        Some("password") => {
            let (Some(username), Some(password)) = (request.username, request.password) else {
                return Err(ApiError::InvalidRequest(
                    "the password grant needs username and password".to_owned(),
                ));
            };
            let label = ClientLabel {
                client_id: request.client_id.map(|id| truncate(&id)),
            };
            sessions::log_in(&state, &username, password, label, &origin).await?
        }
        Some("refresh_token") => {
            let Some(refresh_token) = request.refresh_token else {
                return Err(ApiError::InvalidRequest(
                    "the refresh_token grant needs refresh_token".to_owned(),
                ));
            };
            sessions::renew(&state, &refresh_token, &origin).await?
        }
        Some(_) => return Err(ApiError::UnsupportedGrantType),
        None => return Err(ApiError::InvalidRequest("grant_type is missing".to_owned())),
    };
    let mut response = Json(grant).into_response();
    // RFC 6749 §5.1: token answers must not be cached.
    let response_headers = response.headers_mut();
    response_headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response_headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The parameters of the revocation endpoint (RFC 7009 §2.1), and of introspection
/// (RFC 7662 §2.1).
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct RevokeRequest {
    /// A refresh token or an access token.
    #[schema(value_type = String, required = true)]
    token: Option<Secret<String>>,
    /// `refresh_token` or `access_token`; Tessera tells them apart by itself.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7009: revoking a refresh token or an access token ends its session. Per §2.2 the
/// answer is 200 whether or not the token was valid, so it reveals nothing.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    tag = "oauth",
    request_body(
        content(
            (RevokeRequest = "application/x-www-form-urlencoded"),
            (RevokeRequest = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "The token's session has ended, if it had one"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn revoke(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: RevokeRequest = parse(&headers, &body)?;
    let Some(token) = request.token else {
        return Err(ApiError::InvalidRequest("token is missing".to_owned()));
    };
    let idle = i64::try_from(state.config.session_idle_timeout.as_secs()).unwrap_or(i64::MAX);
    let owner = match sessions::refresh_hash(token.expose()) {
        Some(hash) => state
            .store
            .refresh_record(hash, crate::clock::now(), idle)
            .await?
            .map(|record| (record.user, record.session)),
        None => state.guard.check_token(token.expose()).ok().map(|claims| {
            (
                crate::store::UserId(claims.sub),
                crate::store::SessionId(claims.sid),
            )
        }),
    };
    if let Some((user, session)) = owner {
        sessions::end_session(&state, &user, &session, "revoked", &origin).await?;
    }
    let mut response = axum::http::StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// What introspection says of a token (RFC 7662 §2.2): `active`, and when active its
/// kind and claims. Built as JSON by `introspection_of`; this describes it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Introspection {
    active: bool,
    /// `access_token` or `refresh_token`.
    #[schema(pattern = "^(access_token|refresh_token)$")]
    token_type: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
    sid: Option<String>,
    /// One audience (a string) or several (an array of strings).
    #[schema(value_type = Option<serde_json::Value>)]
    aud: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
    scope: Option<String>,
    roles: Option<Vec<String>>,
}

/// RFC 7662 token introspection, for resource servers that want a live answer. They
/// authenticate with the configured credential as a bearer token (§2.1 leaves the
/// method open); without a configured credential the endpoint does not exist.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "oauth",
    request_body(
        content(
            (RevokeRequest = "application/x-www-form-urlencoded"),
            (RevokeRequest = "application/json"),
        )
    ),
    security(("resource_server" = [])),
    responses(
        (status = 200, description = "What the token is (RFC 7662 §2.2)", body = Introspection),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "`introspection_secret_file` is not set (`not_found`)",
            body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_resource_server(&state, &headers)?;
    let request: RevokeRequest = parse(&headers, &body)?;
    let Some(token) = request.token else {
        return Err(ApiError::InvalidRequest("token is missing".to_owned()));
    };
    let answer = introspection_of(&state, token.expose()).await?;
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Checks the resource-server credential (`introspection_secret_file`) sent as a bearer
/// token; without a configured credential the endpoints that need it do not exist.
pub(super) fn check_resource_server(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.introspection else {
        return Err(ApiError::NotFound);
    };
    let presented = tessera_guard::bearer_token(headers).map_err(|_| ApiError::InvalidToken)?;
    let presented: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
    if aws_lc_rs::constant_time::verify_slices_are_equal(&presented, &expected).is_err() {
        return Err(ApiError::InvalidToken);
    }
    Ok(())
}

/// What RFC 7662 §2.2 says of a token: `active` and, when active, its claims.
async fn introspection_of(state: &AppState, token: &str) -> Result<serde_json::Value, ApiError> {
    let inactive = serde_json::json!({"active": false});
    let now = crate::clock::now();
    if let Some(hash) = sessions::refresh_hash(token) {
        let idle = i64::try_from(state.config.session_idle_timeout.as_secs()).unwrap_or(i64::MAX);
        let Some(record) = state.store.refresh_record(hash, now, idle).await? else {
            return Ok(inactive);
        };
        if !record.session_live || record.spent_at.is_some() {
            return Ok(inactive);
        }
        return Ok(serde_json::json!({
            "active": true,
            "token_type": "refresh_token",
            "sub": record.user.0,
            "sid": record.session.0,
            "iss": state.issuer_url.as_ref(),
            "exp": record.session_expires_at,
        }));
    }
    let Ok(claims) = state.guard.check_token(token) else {
        return Ok(inactive);
    };
    if state.revocations.contains(&claims.sid) {
        return Ok(inactive);
    }
    let mut answer =
        serde_json::to_value(&claims).map_err(|error| ApiError::Internal(error.into()))?;
    answer["active"] = serde_json::json!(true);
    answer["token_type"] = serde_json::json!("access_token");
    Ok(answer)
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase());
    let invalid = |what: &str| ApiError::InvalidRequest(format!("the {what} body is invalid"));
    match media_type.as_deref() {
        Some("application/x-www-form-urlencoded") => {
            serde_urlencoded::from_bytes(body).map_err(|_| invalid("form"))
        }
        Some("application/json") => serde_json::from_slice(body).map_err(|_| invalid("JSON")),
        _ => Err(ApiError::UnsupportedMediaType(
            "application/x-www-form-urlencoded or application/json",
        )),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_LABEL_CHARS).collect()
}

/// This module's operations, for the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(token, revoke, introspect))]
pub(crate) struct Api;

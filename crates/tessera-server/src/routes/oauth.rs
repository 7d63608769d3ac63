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

use crate::error::ApiError;
use crate::origin::Origin;
use crate::sessions::{self, ClientLabel};
use crate::state::AppState;

/// Longest `client_id` or `User-Agent` recorded on a session.
const MAX_LABEL_CHARS: usize = 200;

/// The parameters of both grants. Unknown parameters are ignored (RFC 6749 §3.2);
/// repeated ones are refused (§3.2: "MUST NOT be included more than once").
#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<Secret<String>>,
    refresh_token: Option<Secret<String>>,
    client_id: Option<String>,
}

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

/// The parameters of the revocation endpoint (RFC 7009 §2.1).
#[derive(Debug, Deserialize)]
struct RevokeRequest {
    token: Option<Secret<String>>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7009: revoking a refresh token or an access token ends its session. Per §2.2 the
/// answer is 200 whether or not the token was valid, so it reveals nothing.
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

/// RFC 7662 token introspection, for resource servers that want a live answer. They
/// authenticate with the configured credential as a bearer token (§2.1 leaves the
/// method open); without a configured credential the endpoint does not exist.
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

fn parse<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
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

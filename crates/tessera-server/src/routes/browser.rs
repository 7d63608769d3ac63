//! The browser's side of the token endpoint (`/auth/browser/…`): the same login,
//! renewal and logout as for bearer clients, with the tokens in HttpOnly cookies
//! instead of a JSON body (see `cookies`). The page's script only ever sees its user,
//! the seconds left, and the anti-CSRF token.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tessera_token::Secret;
use utoipa::{IntoParams, ToSchema};

use super::ApiJson;
use crate::clock;
use crate::cookies;
use crate::error::ApiError;
use crate::origin::Origin;
use crate::sessions::{self, ClientLabel, LogoutScope, TokenResponse};
use crate::state::AppState;
use crate::store::{SessionId, UserId};

/// The label of sessions opened by the page.
const BROWSER_CLIENT_ID: &str = "browser";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BrowserLogin {
    username: String,
    #[schema(value_type = String)]
    password: Secret<String>,
}

/// What the page learns of its session.
#[derive(Debug, Serialize, ToSchema)]
struct BrowserSession {
    user: BrowserUser,
    /// Seconds until the access cookie's token expires.
    expires_in: i64,
    csrf_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct BrowserUser {
    sub: String,
    username: String,
}

/// `POST /auth/browser/login`.
#[utoipa::path(
    post,
    path = "/auth/browser/login",
    operation_id = "browser_log_in",
    tag = "browser",
    request_body = BrowserLogin,
    responses(
        (status = 200, description = "Logged in: the access, refresh and anti-CSRF \
            cookies are set", body = BrowserSession,
            headers(("Set-Cookie" = String, description = "The three session cookies"))),
        (status = 400, description = "Wrong username or password (`invalid_grant`), or a \
            body that does not parse (`invalid_request`)", body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 429, response = crate::openapi::Throttled),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn log_in(
    State(state): State<AppState>,
    origin: Origin,
    ApiJson(login): ApiJson<BrowserLogin>,
) -> Result<Response, ApiError> {
    let label = ClientLabel {
        client_id: Some(BROWSER_CLIENT_ID.to_owned()),
    };
    let tokens = sessions::log_in(&state, &login.username, login.password, label, &origin).await?;
    session_response(&state, tokens).await
}

/// `GET /auth/browser/session`: the live session, renewed first when the access
/// cookie has expired but the refresh cookie still works; 401 otherwise.
#[utoipa::path(
    get,
    path = "/auth/browser/session",
    operation_id = "browser_session",
    tag = "browser",
    security(("access_cookie" = [], "csrf_cookie" = []), ("refresh_cookie" = [])),
    responses(
        (status = 200, description = "The live session; renewed (new cookies set) when \
            the access cookie had expired", body = BrowserSession,
            headers(("Set-Cookie" = String, description = "The new cookies, after a renewal"))),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn session(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(claims) = cookies::get(&headers, cookies::ACCESS_COOKIE)
        .and_then(|token| state.guard.check_token(token).ok())
        .filter(|claims| !state.revocations.contains(&claims.sid))
    {
        let csrf = cookies::get(&headers, cookies::CSRF_COOKIE).map(str::to_owned);
        if let Some(csrf) = csrf {
            let user = username(&state, &claims.sub).await?;
            let body = BrowserSession {
                user: BrowserUser {
                    sub: claims.sub,
                    username: user,
                },
                expires_in: claims.exp.saturating_sub(clock::now()).max(0),
                csrf_token: csrf,
            };
            return Ok(no_store(Json(body).into_response()));
        }
    }
    renew_from_cookie(&state, &headers, &origin).await
}

/// `POST /auth/browser/refresh`: CSRF-checked renewal from the refresh cookie.
#[utoipa::path(
    post,
    path = "/auth/browser/refresh",
    operation_id = "browser_refresh",
    tag = "browser",
    security(("refresh_cookie" = [], "csrf_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "Renewed: new cookies are set", body = BrowserSession,
            headers(("Set-Cookie" = String, description = "The three session cookies"))),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn refresh(
    State(state): State<AppState>,
    origin: Origin,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !cookies::csrf_allows(&method, &headers) {
        return Err(ApiError::CsrfRefused);
    }
    renew_from_cookie(&state, &headers, &origin).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogoutQuery {
    /// Which sessions end: `local` (this one, the default), `global` (all of the
    /// user's) or `others` (all but this one).
    #[param(pattern = "^(local|global|others)$")]
    scope: Option<String>,
}

/// `POST /auth/browser/logout[?scope=global|others]`: ends sessions as the bearer
/// logout does, and clears the cookies unless only the other sessions end.
#[utoipa::path(
    post,
    path = "/auth/browser/logout",
    operation_id = "browser_log_out",
    tag = "browser",
    params(LogoutQuery),
    security(("csrf_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 204, description = "The sessions have ended (if the cookies named one); \
            the cookies are cleared unless `scope=others`",
            headers(("Set-Cookie" = String, description = "Clears the session cookies"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn log_out(
    State(state): State<AppState>,
    origin: Origin,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<LogoutQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    if !cookies::csrf_allows(&method, &headers) {
        return Err(ApiError::CsrfRefused);
    }
    let Query(query) =
        query.map_err(|_| ApiError::InvalidRequest("invalid query string".to_owned()))?;
    let scope = LogoutScope::from_query(query.scope.as_deref())?;
    if let Some((user, session)) = caller(&state, &headers).await? {
        sessions::log_out(&state, &user, &session, scope, &origin).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if scope != LogoutScope::Others {
        cookies::clear_session(response.headers_mut());
    }
    Ok(response)
}

/// The user and session behind the cookies: the access cookie's, or the refresh
/// cookie's when the access token has expired.
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(UserId, SessionId)>, ApiError> {
    if let Some(claims) = cookies::get(headers, cookies::ACCESS_COOKIE)
        .and_then(|token| state.guard.check_token(token).ok())
    {
        return Ok(Some((UserId(claims.sub), SessionId(claims.sid))));
    }
    let Some(hash) =
        cookies::get(headers, cookies::REFRESH_COOKIE).and_then(sessions::refresh_hash)
    else {
        return Ok(None);
    };
    let idle = i64::try_from(state.config.session_idle_timeout.as_secs()).unwrap_or(i64::MAX);
    Ok(state
        .store
        .refresh_record(hash, clock::now(), idle)
        .await?
        .map(|record| (record.user, record.session)))
}

async fn renew_from_cookie(
    state: &AppState,
    headers: &HeaderMap,
    origin: &Origin,
) -> Result<Response, ApiError> {
    let Some(refresh) = cookies::get(headers, cookies::REFRESH_COOKIE) else {
        return Err(ApiError::InvalidToken);
    };
    match sessions::renew(state, &Secret::new(refresh.to_owned()), origin).await {
        Ok(tokens) => session_response(state, tokens).await,
        Err(ApiError::InvalidGrant(_)) => {
            // The session is over: say so as for any missing credential, and drop
            // the cookies so the page does not try again.
            let mut response = ApiError::InvalidToken.into_response();
            cookies::clear_session(response.headers_mut());
            Ok(response)
        }
        Err(error) => Err(error),
    }
}

/// Sets the cookies of a fresh token pair and tells the page what it needs.
async fn session_response(state: &AppState, tokens: TokenResponse) -> Result<Response, ApiError> {
    let claims = state
        .guard
        .check_token(&tokens.access_token)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("a token just issued is invalid")))?;
    let csrf = cookies::new_csrf_token()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no randomness")))?;
    let expires_in = i64::try_from(tokens.expires_in).unwrap_or(0);
    let refresh_max_age =
        i64::try_from(state.config.session_lifetime.as_secs()).unwrap_or(i64::MAX);
    let body = BrowserSession {
        user: BrowserUser {
            username: username(state, &claims.sub).await?,
            sub: claims.sub,
        },
        expires_in,
        csrf_token: csrf.clone(),
    };
    let mut response = no_store(Json(body).into_response());
    cookies::set_session(
        response.headers_mut(),
        &tokens.access_token,
        expires_in,
        &tokens.refresh_token,
        refresh_max_age,
        &csrf,
    );
    Ok(response)
}

async fn username(state: &AppState, sub: &str) -> Result<String, ApiError> {
    let user = state
        .store
        .user(&UserId(sub.to_owned()))
        .await?
        .ok_or(ApiError::InvalidToken)?;
    Ok(user.username)
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// This module's operations, for the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(log_in, session, refresh, log_out))]
pub(crate) struct Api;

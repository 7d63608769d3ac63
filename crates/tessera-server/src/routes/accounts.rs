//! Sign-up, logout and the caller's identity (`/auth/signup`, `/auth/logout`,
//! `/userinfo`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tessera_token::Secret;
use utoipa::{IntoParams, ToSchema};

use super::ApiJson;
use crate::current_user::CurrentUser;
use crate::error::ApiError;
use crate::origin::Origin;
use crate::sessions::{self, LogoutScope};
use crate::state::AppState;
use crate::{clock, store};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SignUpRequest {
    /// 1 to 64 characters after trimming, without control or invisible characters;
    /// unique regardless of case. (`UsernamePattern` adds the pattern.)
    #[schema(min_length = 1, max_length = 64)]
    username: String,
    /// At least 8 characters, at most 1024 bytes.
    #[schema(value_type = String, min_length = 8)]
    password: Secret<String>,
}

/// The characters a username must not contain, as the body of a regular-expression
/// class: control characters (Unicode `Cc`) and those `sessions::is_invisible` names.
macro_rules! refused_in_usernames {
    () => {
        concat!(
            "\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u034f\\u061c\\u115f\\u1160",
            "\\u17b4\\u17b5\\u180b-\\u180f\\u200b-\\u200f\\u202a-\\u202e",
            "\\u2060-\\u206f\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8",
        )
    };
}

/// What `sessions::normalize_username` accepts, for the document: none of the refused
/// characters, and at least one that is not white space (names are trimmed).
pub(crate) const USERNAME_PATTERN: &str = concat!(
    "^[^",
    refused_in_usernames!(),
    "]*[^\\s",
    refused_in_usernames!(),
    "][^",
    refused_in_usernames!(),
    "]*$"
);

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub(super) struct UserView {
    id: String,
    username: String,
    #[serde(serialize_with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
}

impl From<store::User> for UserView {
    fn from(user: store::User) -> Self {
        Self {
            id: user.id.0,
            username: user.username,
            created_at: user.created_at,
        }
    }
}

/// `POST /auth/signup`: creates a user.
#[utoipa::path(
    post,
    path = "/auth/signup",
    tag = "accounts",
    request_body = SignUpRequest,
    responses(
        (status = 201, description = "The new user", body = UserView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 409, description = "The username is taken (`username_taken`)",
            body = crate::openapi::ErrorBody),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn sign_up(
    State(state): State<AppState>,
    origin: Origin,
    ApiJson(request): ApiJson<SignUpRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let user = sessions::sign_up(&state, &request.username, request.password).await?;
    let subject = crate::audit::Subject {
        user: Some(&user.id),
        session: None,
    };
    crate::audit::record(&state, "user_created", &origin, subject, Some("sign-up")).await;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogoutQuery {
    /// Which sessions end: `local` (this one, the default), `global` (all of the
    /// user's) or `others` (all but this one).
    #[param(pattern = "^(local|global|others)$")]
    scope: Option<String>,
}

/// `POST /auth/logout`: ends the caller's session, or more with `scope`.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "sessions",
    params(LogoutQuery),
    security(("bearer" = []), ("access_cookie" = [], "csrf_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 204, description = "The sessions have ended"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn log_out(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    query: Result<Query<LogoutQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::InvalidRequest("invalid query string".to_owned()))?;
    let scope = LogoutScope::from_query(query.scope.as_deref())?;
    sessions::log_out(&state, &caller.user, &caller.session, scope, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordChange {
    #[schema(value_type = String)]
    current_password: Secret<String>,
    /// At least 8 characters, at most 1024 bytes.
    #[schema(value_type = String, min_length = 8)]
    new_password: Secret<String>,
}

/// `POST /auth/password`: needs the current password; ends every other session.
#[utoipa::path(
    post,
    path = "/auth/password",
    tag = "accounts",
    request_body = PasswordChange,
    security(("bearer" = []), ("access_cookie" = [], "csrf_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 204, description = "Changed; every other session has ended"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "The new password breaks a rule, or the current one \
            is not correct (`validation_failed`)", body = crate::openapi::ErrorBody),
        (status = 429, response = crate::openapi::Throttled),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn change_password(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    ApiJson(change): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    sessions::change_password(
        &state,
        &caller.user,
        &caller.session,
        change.current_password,
        change.new_password,
        &origin,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One of the caller's devices.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Session)]
pub(super) struct SessionView {
    id: String,
    /// What to call the device: its client label, else its user agent.
    device: String,
    client_id: Option<String>,
    user_agent: Option<String>,
    ip: Option<String>,
    #[serde(serialize_with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
    #[serde(serialize_with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    last_used_at: i64,
    #[serde(serialize_with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: i64,
    /// Whether this is the session making the request.
    current: bool,
}

/// `GET /auth/sessions`: the caller's open sessions.
#[utoipa::path(
    get,
    path = "/auth/sessions",
    tag = "sessions",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The caller's open sessions", body = Vec<SessionView>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn list_sessions(
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let sessions = state
        .store
        .open_sessions(&caller.user, clock::now())
        .await?;
    let views = sessions
        .into_iter()
        .map(|session| SessionView {
            current: session.id == caller.session,
            device: session
                .client_id
                .clone()
                .or_else(|| session.user_agent.clone())
                .unwrap_or_else(|| "unknown device".to_owned()),
            id: session.id.0,
            client_id: session.client_id,
            user_agent: session.user_agent,
            ip: session.ip,
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            expires_at: session.expires_at,
        })
        .collect();
    Ok(Json(views))
}

/// `DELETE /auth/sessions/{id}`: ends one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    security(("bearer" = []), ("access_cookie" = [], "csrf_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 204, description = "The session has ended"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn end_session(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let session = store::SessionId(id);
    if sessions::end_session(&state, &caller.user, &session, "session_revoked", &origin).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// The claims of the OpenID Connect UserInfo answer that Tessera knows.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserInfo {
    sub: String,
    username: String,
    preferred_username: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    #[serde(serialize_with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
}

/// `GET /userinfo` (OpenID Connect Core §5.3): the caller's identity.
#[utoipa::path(
    get,
    path = "/userinfo",
    tag = "accounts",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The caller's identity", body = UserInfo),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn userinfo(
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<Json<UserInfo>, ApiError> {
    let user = state
        .store
        .user(&caller.user)
        .await?
        .ok_or(ApiError::InvalidToken)?;
    Ok(Json(UserInfo {
        sub: user.id.0,
        preferred_username: user.username.clone(),
        roles: user.roles,
        username: user.username,
        created_at: user.created_at,
    }))
}

/// `POST /userinfo`: the same answer as `GET` (OpenID Connect Core §5.3 allows both), by
/// the same handler; described on its own because each operation needs its own id.
#[utoipa::path(
    post,
    path = "/userinfo",
    operation_id = "userinfo_by_post",
    tag = "accounts",
    security(("bearer" = []), ("access_cookie" = [], "csrf_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "The caller's identity", body = UserInfo),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
#[allow(dead_code)] // Describes `userinfo` answering POST; never called.
fn userinfo_by_post() {}

/// This module's operations, for the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        sign_up,
        log_out,
        change_password,
        list_sessions,
        end_session,
        userinfo,
        userinfo_by_post
    ),
    modifiers(&UsernamePattern)
)]
pub(crate) struct Api;

/// Puts `USERNAME_PATTERN` on the sign-up body's `username`: the `pattern` attribute
/// takes only a literal, and this one is assembled from parts.
struct UsernamePattern;

impl utoipa::Modify for UsernamePattern {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};

        let schema = openapi
            .components
            .as_mut()
            .and_then(|components| components.schemas.get_mut("SignUpRequest"));
        let Some(RefOr::T(Schema::Object(request))) = schema else {
            return;
        };
        if let Some(RefOr::T(Schema::Object(username))) = request.properties.get_mut("username") {
            username.pattern = Some(USERNAME_PATTERN.to_owned());
        }
    }
}

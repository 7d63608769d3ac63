//! Sign-up, logout and the caller's identity (`/auth/signup`, `/auth/logout`,
//! `/userinfo`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tessera_token::Secret;

use super::ApiJson;
use crate::current_user::CurrentUser;
use crate::error::ApiError;
use crate::origin::Origin;
use crate::sessions::{self, LogoutScope};
use crate::state::AppState;
use crate::{clock, store};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignUpRequest {
    username: String,
    password: Secret<String>,
}

/// A user as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct UserView {
    id: String,
    username: String,
    #[serde(serialize_with = "clock::rfc3339")]
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

#[derive(Debug, Deserialize)]
pub(super) struct LogoutQuery {
    scope: Option<String>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordChange {
    current_password: Secret<String>,
    new_password: Secret<String>,
}

/// `POST /auth/password`: needs the current password; ends every other session.
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
#[derive(Debug, Serialize)]
pub(super) struct SessionView {
    id: String,
    /// What to call the device: its client label, else its user agent.
    device: String,
    client_id: Option<String>,
    user_agent: Option<String>,
    ip: Option<String>,
    #[serde(serialize_with = "clock::rfc3339")]
    created_at: i64,
    #[serde(serialize_with = "clock::rfc3339")]
    last_used_at: i64,
    #[serde(serialize_with = "clock::rfc3339")]
    expires_at: i64,
    /// Whether this is the session making the request.
    current: bool,
}

/// `GET /auth/sessions`: the caller's open sessions.
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
#[derive(Debug, Serialize)]
pub(super) struct UserInfo {
    sub: String,
    username: String,
    preferred_username: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    #[serde(serialize_with = "clock::rfc3339")]
    created_at: i64,
}

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

//! Sign-up, logout and the caller's identity (`/auth/signup`, `/auth/logout`,
//! `/userinfo`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tessera_token::Secret;

use super::ApiJson;
use crate::current_user::CurrentUser;
use crate::error::ApiError;
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
    ApiJson(request): ApiJson<SignUpRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let user = sessions::sign_up(&state, &request.username, request.password).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[derive(Debug, Deserialize)]
pub(super) struct LogoutQuery {
    scope: Option<String>,
}

pub(super) async fn log_out(
    State(state): State<AppState>,
    caller: CurrentUser,
    query: Result<Query<LogoutQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::InvalidRequest("invalid query string".to_owned()))?;
    let scope = match query.scope.as_deref() {
        None | Some("local") => LogoutScope::This,
        Some("global") => LogoutScope::Global,
        Some("others") => LogoutScope::Others,
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "scope must be local, global or others".to_owned(),
            ));
        }
    };
    sessions::log_out(&state, &caller.user, &caller.session, scope).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The claims of the OpenID Connect UserInfo answer that Tessera knows.
#[derive(Debug, Serialize)]
pub(super) struct UserInfo {
    sub: String,
    username: String,
    preferred_username: String,
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
        username: user.username,
        created_at: user.created_at,
    }))
}

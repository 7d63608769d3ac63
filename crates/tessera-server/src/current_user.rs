//! The caller of a protected route: a valid access token (checked by the guard without
//! any I/O) whose session is still open and whose user is still enabled.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::clock;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{SessionId, UserId};

/// The authenticated caller. Extracting it answers 401 `invalid_token` otherwise.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The user (`sub`).
    pub user: UserId,
    /// The session the token belongs to (`sid`).
    pub session: SessionId,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The guard logs why a token was refused.
        let claims = state
            .guard
            .check(&parts.headers)
            .map_err(|_| ApiError::InvalidToken)?;
        let caller = Self {
            user: UserId(claims.sub),
            session: SessionId(claims.sid),
        };
        // A logged-out session or a disabled user must lose access at once, not when
        // the token expires.
        // Limitation: this costs one database read per request. An in-memory set of
        // ended sessions, kept in step with the database, would remove it.
        if !state
            .store
            .session_is_open(&caller.session, &caller.user, clock::now())
            .await?
        {
            tracing::debug!(reason = "session_ended", "access token refused");
            return Err(ApiError::InvalidToken);
        }
        Ok(caller)
    }
}

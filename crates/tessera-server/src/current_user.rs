//! The caller of a protected route: a valid access token (checked by the guard without
//! any I/O) whose session is still open and whose user is still enabled.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use tessera_token::AccessClaims;

use crate::cookies;
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
        let claims = authenticate(state, &parts.method, &parts.headers)?;
        Ok(Self {
            user: UserId(claims.sub),
            session: SessionId(claims.sid),
        })
    }
}

/// The claims of the caller of a request made with `method`: a bearer token when there
/// is one; otherwise the browser's access cookie, which must pass the CSRF check on
/// unsafe methods. Refused when the token is invalid or its session has ended.
pub(crate) fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<AccessClaims, ApiError> {
    // The guard logs why a token was refused.
    let claims = match state.guard.check(headers) {
        Ok(claims) => claims,
        Err(tessera_guard::Refusal::Missing) => {
            let token =
                cookies::get(headers, cookies::ACCESS_COOKIE).ok_or(ApiError::InvalidToken)?;
            let claims = state
                .guard
                .check_token(token)
                .map_err(|_| ApiError::InvalidToken)?;
            if !cookies::csrf_allows(method, headers) {
                tracing::debug!("cookie request refused: CSRF token or origin");
                return Err(ApiError::CsrfRefused);
            }
            claims
        }
        Err(_) => return Err(ApiError::InvalidToken),
    };
    // A logged-out session or a disabled user (whose sessions all end) must lose access
    // at once, not when the token expires: the in-memory set of ended sessions answers
    // without a database read.
    if state.revocations.contains(&claims.sid) {
        tracing::debug!(reason = "session_ended", "access token refused");
        return Err(ApiError::InvalidToken);
    }
    crate::request_trace::record_user(&claims.sub);
    Ok(claims)
}

//! Roles and scopes: what a valid token must also carry for some routes. A caller
//! without them gets 403 `insufficient_scope` (RFC 6750 §3.1); a caller without a valid
//! token never gets this far and gets 401 from [`crate::Identity`].
//!
//! ```
//! use tessera_guard::{Identity, InsufficientScope};
//!
//! async fn delete_everything(identity: Identity) -> Result<&'static str, InsufficientScope> {
//!     identity.require_role("admin")?;
//!     Ok("done")
//! }
//! ```

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_token::AccessClaims;

use crate::Identity;

/// The `WWW-Authenticate` value of a 403 answer (RFC 6750 §3).
pub const INSUFFICIENT_SCOPE_CHALLENGE: &str = r#"Bearer error="insufficient_scope""#;

/// A valid token without the role or scope a route requires. Answers 403 with
/// `insufficient_scope`; the description names what was required, never what the
/// token holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsufficientScope {
    /// The `roles` claim lacks this role.
    #[error("the role {0:?} is required")]
    Role(String),
    /// The `scope` claim lacks this scope.
    #[error("the scope {0:?} is required")]
    Scope(String),
}

impl IntoResponse for InsufficientScope {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": "insufficient_scope",
            "error_description": self.to_string(),
        });
        let mut response = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(INSUFFICIENT_SCOPE_CHALLENGE),
        );
        response
    }
}

impl Identity {
    /// The claims, when the `roles` claim holds `role` exactly.
    pub fn require_role(&self, role: &str) -> Result<&AccessClaims, InsufficientScope> {
        if has_role(&self.0, role) {
            Ok(&self.0)
        } else {
            tracing::debug!(role, "request refused: role missing");
            Err(InsufficientScope::Role(role.to_owned()))
        }
    }

    /// The claims, when the space-separated `scope` claim holds `scope` exactly
    /// (RFC 6749 §3.3: scopes are case-sensitive).
    pub fn require_scope(&self, scope: &str) -> Result<&AccessClaims, InsufficientScope> {
        if has_scope(&self.0, scope) {
            Ok(&self.0)
        } else {
            tracing::debug!(scope, "request refused: scope missing");
            Err(InsufficientScope::Scope(scope.to_owned()))
        }
    }
}

fn has_role(claims: &AccessClaims, role: &str) -> bool {
    claims.roles.iter().any(|held| held == role)
}

fn has_scope(claims: &AccessClaims, scope: &str) -> bool {
    claims
        .scope
        .as_deref()
        .is_some_and(|granted| granted.split(' ').any(|held| held == scope))
}

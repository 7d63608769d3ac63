//! What every handler shares: the store, the token issuer and guard, the password pool
//! and the configuration. Built once at start-up.

use std::sync::Arc;

use axum::extract::FromRef;
use tessera_guard::Guard;
use tessera_token::{JwkSet, TokenIssuer};

use crate::config::ServerConfig;
use crate::passwords::Passwords;
use crate::store::Store;

/// Shared state of the service; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Everything persistent.
    pub store: Arc<dyn Store>,
    /// Signs access tokens.
    pub issuer: Arc<TokenIssuer>,
    /// Validates access tokens.
    pub guard: Guard,
    /// The public keys, as served at the JWKS endpoint.
    pub jwks: Arc<JwkSet>,
    /// Argon2id on a bounded pool.
    pub passwords: Passwords,
    /// The effective configuration.
    pub config: Arc<ServerConfig>,
    /// The `iss` of issued tokens and the base of discovery URLs.
    pub issuer_url: Arc<str>,
}

impl FromRef<AppState> for Guard {
    fn from_ref(state: &AppState) -> Guard {
        state.guard.clone()
    }
}

//! What every handler shares: the store, the token issuer and guard, the password pool
//! and the configuration. Built once at start-up.

use std::sync::Arc;

use crate::config::ServerConfig;
use crate::key_ring::KeyRing;
use crate::passwords::Passwords;
use crate::revocations::Revocations;
use crate::store::Store;
use crate::telemetry::Telemetry;
use crate::throttle_shared::Throttle;
use axum::extract::FromRef;
use tessera_guard::Guard;

/// Shared state of the service, behind one `Arc`: axum clones the state for every
/// request (the router, then each `State` extractor), and one counter shared by every
/// core is far cheaper than one per field.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl From<SharedState> for AppState {
    fn from(shared: SharedState) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct SharedState {
    /// Everything persistent.
    pub store: Arc<dyn Store>,
    /// The signing key and the published keys.
    pub(crate) keys: Arc<KeyRing>,
    /// Validates access tokens against the published keys.
    pub guard: Guard,
    /// Argon2id on a bounded pool.
    pub passwords: Passwords,
    /// Sessions ended recently, refused without a database read.
    pub(crate) revocations: Arc<Revocations>,
    /// Login attempts per account and client, checked before any hash.
    pub(crate) throttle: Arc<Throttle>,
    /// SHA-256 of the credential resource servers present to the introspection
    /// endpoint; `None` turns the endpoint off.
    pub(crate) introspection: Option<[u8; 32]>,
    /// The effective configuration.
    pub config: Arc<ServerConfig>,
    /// The `iss` of issued tokens and the base of discovery URLs.
    pub issuer_url: Arc<str>,
    /// This server's metrics.
    pub(crate) telemetry: Arc<Telemetry>,
    /// SHA-256 of the bearer token `/metrics` asks for; `None` leaves it open.
    pub(crate) metrics_token: Option<[u8; 32]>,
}

impl FromRef<AppState> for Guard {
    fn from_ref(state: &AppState) -> Guard {
        state.guard.clone()
    }
}

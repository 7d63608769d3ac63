//! Where tokens live between requests and between runs (step 3 of the
//! loop): the [`TokenStore`] trait, the [`StoredTokens`] it keeps, and the
//! in-memory, file and OS keyring implementations.

mod file;
#[cfg(feature = "keyring")]
mod keyring;
mod memory;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use file::FileStore;
#[cfg(feature = "keyring")]
pub use keyring::KeyringStore;
pub use memory::MemoryStore;

use crate::{ServerUrl, StoreError};

/// Renewal starts when less than this share of the access token's lifetime
/// is left, so a request never leaves with a token about to lapse.
const RENEW_AT_FRACTION_LEFT: u64 = 5;

/// ... but never earlier than this before expiry, so long-lived tokens are
/// not renewed needlessly.
const MAX_RENEWAL_MARGIN: Duration = Duration::from_secs(60);

/// Jitter widens the renewal margin by at most this fraction of it.
const JITTER_SHARE: f64 = 10.0;

/// The tokens of one logged-in user on one server.
///
/// `expires_at` is on the local clock: the moment the server's answer
/// arrived plus how long the token still lives by the server's own clock
/// (`expires_in`, or the `exp` claim minus the answer's `Date` header when
/// that is sooner). A local clock that is hours off therefore changes
/// nothing; `server_clock_offset_secs` records by how much it is off, to
/// read the server's timestamps (such as claims) in local terms.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTokens {
    /// The server these tokens belong to.
    pub server: ServerUrl,
    /// The user they were issued to.
    pub username: String,
    /// The bearer access token (a JWT).
    pub access_token: String,
    /// The single-use refresh token that renews the access token.
    pub refresh_token: String,
    /// When the access token expires, in Unix seconds on the local clock.
    pub expires_at: u64,
    /// The access token's lifetime as granted (`expires_in`), in seconds.
    #[serde(default)]
    pub lifetime_secs: u64,
    /// The server's clock minus the local clock, in seconds, as measured
    /// from the `Date` header of the last token answer (0 if it had none).
    #[serde(default)]
    pub server_clock_offset_secs: i64,
}

impl StoredTokens {
    /// How long the access token is still valid at `now`, or `None` if it
    /// has expired.
    pub fn time_left(&self, now: SystemTime) -> Option<Duration> {
        let expires = UNIX_EPOCH + Duration::from_secs(self.expires_at);
        expires
            .duration_since(now)
            .ok()
            .filter(|left| !left.is_zero())
    }

    /// Whether the access token should be renewed before use at `now`:
    /// it has expired, or less than a fifth of its lifetime (at most
    /// 60 seconds) is left.
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        self.needs_renewal_with_jitter(now, 0.0)
    }

    /// Like [`needs_renewal`](Self::needs_renewal), with the margin widened
    /// by `jitter` (0.0 to 1.0) times a tenth of itself, so that many
    /// clients given tokens at the same moment do not all renew at once.
    pub fn needs_renewal_with_jitter(&self, now: SystemTime, jitter: f64) -> bool {
        let margin = self.renewal_margin();
        let margin = margin + margin.mul_f64(jitter.clamp(0.0, 1.0) / JITTER_SHARE);
        match self.time_left(now) {
            Some(left) => left <= margin,
            None => true,
        }
    }

    /// How long before expiry renewal starts: a fifth of the lifetime, at
    /// most a minute.
    pub fn renewal_margin(&self) -> Duration {
        let lifetime = Duration::from_secs(self.lifetime_secs);
        (lifetime / RENEW_AT_FRACTION_LEFT as u32).min(MAX_RENEWAL_MARGIN)
    }
}

/// The claims of a JWT access token, decoded but **not verified**: for
/// display and for reading the `exp` claim next to the server's `Date`.
/// `None` when the token is not a JWT with a JSON object payload.
pub(crate) fn access_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine;

    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl StoredTokens {
    /// The access token's claims, decoded without checking the signature
    /// (the server checks it; this is for showing the user's roles and
    /// such). `None` if the token is not a JWT.
    pub fn unverified_claims(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        access_claims(&self.access_token)
    }
}

impl fmt::Debug for StoredTokens {
    // Tokens are credentials: a stray `{:?}` in a log line must not leak
    // them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTokens")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("lifetime_secs", &self.lifetime_secs)
            .field("server_clock_offset_secs", &self.server_clock_offset_secs)
            .finish()
    }
}

/// Somewhere to keep each server's tokens.
///
/// Calls are blocking; [`Session`](crate::Session) runs them off the async
/// workers. Implementations must be safe to share between threads.
pub trait TokenStore: Send + Sync {
    /// The tokens stored for `server`, if any.
    fn load(&self, server: &ServerUrl) -> Result<Option<StoredTokens>, StoreError>;

    /// Stores `tokens`, replacing any earlier ones for the same server.
    fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError>;

    /// Forgets the tokens of `server`; succeeds if there were none.
    fn clear(&self, server: &ServerUrl) -> Result<(), StoreError>;

    /// Waits until no other process is renewing tokens kept in this store,
    /// then keeps them out until the returned lock is dropped.
    ///
    /// A refresh token works once, so two processes renewing with the same
    /// one would end the session; the loser must instead reload and reuse
    /// the winner's tokens. Stores that no other process can see need no
    /// lock, which is the default.
    fn lock_renewal(&self) -> Result<Option<RenewalLock>, StoreError> {
        Ok(None)
    }
}

/// Held while one process renews tokens in a shared [`TokenStore`]; the
/// lock is released when this is dropped.
pub struct RenewalLock {
    _held: Box<dyn Send + Sync>,
}

impl RenewalLock {
    /// Wraps whatever holds the lock (a locked file, say); dropping it must
    /// release the lock.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl fmt::Debug for RenewalLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RenewalLock")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(server: &str, username: &str) -> StoredTokens {
        StoredTokens {
            server: ServerUrl::parse(server).unwrap(),
            username: username.to_owned(),
            access_token: format!("access-secret-{username}"),
            refresh_token: format!("refresh-secret-{username}"),
            expires_at: 1_000,
            lifetime_secs: 100,
            server_clock_offset_secs: 0,
        }
    }

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn debug_output_hides_both_tokens() {
        let tokens = sample("http://127.0.0.1:1", "alice");

        let shown = format!("{tokens:?}");

        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("alice"));
    }

    #[test]
    fn renewal_starts_with_a_fifth_of_the_lifetime_left() {
        let tokens = sample("http://127.0.0.1:1", "alice");

        assert!(!tokens.needs_renewal(at(979, 0)));
        assert!(tokens.needs_renewal(at(980, 0)));
        assert!(tokens.needs_renewal(at(2_000, 0)));
    }

    #[test]
    fn renewal_margin_is_capped_at_a_minute() {
        let mut tokens = sample("http://127.0.0.1:1", "alice");
        tokens.lifetime_secs = 3_600;
        tokens.expires_at = 10_000;

        assert!(!tokens.needs_renewal(at(9_939, 0)));
        assert!(tokens.needs_renewal(at(9_940, 0)));
    }

    #[test]
    fn short_lifetimes_still_get_a_margin() {
        let mut tokens = sample("http://127.0.0.1:1", "alice");
        tokens.lifetime_secs = 2;
        tokens.expires_at = 10;

        assert!(!tokens.needs_renewal(at(9, 500)));
        assert!(tokens.needs_renewal(at(9, 600)));
    }

    #[test]
    fn jitter_only_ever_renews_a_little_earlier() {
        let tokens = sample("http://127.0.0.1:1", "alice");

        assert!(!tokens.needs_renewal_with_jitter(at(977, 900), 1.0));
        assert!(tokens.needs_renewal_with_jitter(at(978, 0), 1.0));
        assert!(!tokens.needs_renewal_with_jitter(at(979, 0), 0.0));
        assert!(!tokens.needs_renewal_with_jitter(at(977, 0), 5.0));
    }

    #[test]
    fn time_left_is_none_once_expired() {
        let tokens = sample("http://127.0.0.1:1", "alice");

        assert_eq!(tokens.time_left(at(990, 0)), Some(Duration::from_secs(10)));
        assert_eq!(tokens.time_left(at(1_000, 0)), None);
        assert_eq!(tokens.time_left(at(1_001, 0)), None);
    }
}

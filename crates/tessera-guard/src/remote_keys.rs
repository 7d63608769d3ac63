//! The issuer's public keys, fetched over HTTP for a resource server that does not hold
//! them itself. [`RemoteKeys`] finds the JWKS through discovery (or is given its URL),
//! refreshes it as often as `Cache-Control: max-age` says (within bounds), looks again
//! when a token names an unknown `kid`, and installs each good key set in the
//! [`Guard`]. When the issuer is unreachable the keys already installed stay trusted:
//! an outage of the issuer never locks users out of a resource server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{CACHE_CONTROL, HeaderMap};
use reqwest::{Client, Url};
use tessera_token::{Jwk, KeySet, VerifyingKey};
use tokio::task::JoinHandle;

use crate::Guard;
use crate::remote::{RemoteError, default_client, get_json, issuer_url, parse_http_url};

/// How long a key set is used when the issuer's answer has no `max-age`.
pub const DEFAULT_KEYS_MAX_AGE: Duration = Duration::from_secs(300);
/// The shortest refresh period, whatever `max-age` says (also the retry period after a
/// failed fetch), so a misconfigured issuer is not polled in a loop.
pub const MIN_KEYS_MAX_AGE: Duration = Duration::from_secs(30);
/// The longest refresh period, whatever `max-age` says, so a key rotation is seen
/// within the hour even without unknown-`kid` refetches.
pub const MAX_KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Unknown-`kid` refetches happen at most once per this period: tokens with made-up key
/// ids must not turn the guard into a way to flood the issuer.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Where "now" comes from; tests substitute a clock they move by hand.
pub(crate) type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A cache of one issuer's public keys that keeps a [`Guard`] up to date. Clones share
/// one cache, one fetch at a time and one rate limit.
///
/// Only GET requests are sent, only to the configured URLs and to the discovery
/// document's `jwks_uri` when it is on the issuer's origin (or another origin was
/// allowed with [`RemoteKeys::allow_cross_origin_jwks`]). Redirects are not followed.
#[derive(Clone)]
pub struct RemoteKeys {
    source: KeySource,
    allow_cross_origin_jwks: bool,
    http: Client,
    clock: Clock,
    shared: Arc<Shared>,
}

#[derive(Debug, Clone)]
enum KeySource {
    /// `jwks_uri` comes from `{issuer}/.well-known/openid-configuration`.
    Discovery { issuer: String, discovery_url: Url },
    /// The JWKS URL was configured directly.
    Direct(Url),
}

struct Shared {
    /// The `jwks_uri` found by discovery; cleared when fetching from it fails, so that a
    /// moved key set is found again.
    jwks_uri: Mutex<Option<Url>>,
    /// Held for the whole of a fetch: concurrent refreshes wait for one another.
    fetches: tokio::sync::Mutex<FetchSchedule>,
    /// Fetch attempts so far, so a waiter can tell that a fetch happened while it
    /// waited.
    attempts: AtomicU64,
}

#[derive(Debug, Default)]
struct FetchSchedule {
    last_attempt: Option<Instant>,
    next_refresh: Option<Instant>,
}

/// The parts of a discovery document (OpenID Connect Discovery 1.0 §3) used here.
#[derive(serde::Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// A JWKS read loosely, so one odd key does not hide the others.
#[derive(serde::Deserialize)]
struct LooseJwkSet {
    keys: Vec<serde_json::Value>,
}

impl RemoteKeys {
    /// Keys of `issuer`, found through `{issuer}/.well-known/openid-configuration`,
    /// whose `issuer` must equal `issuer` exactly.
    pub fn discover(issuer: &str) -> Result<Self, RemoteError> {
        let discovery_url = issuer_url(issuer, "/.well-known/openid-configuration")?;
        let source = KeySource::Discovery {
            issuer: issuer.to_owned(),
            discovery_url,
        };
        Self::with_source(source)
    }

    /// Keys from a JWKS URL given directly, without discovery.
    pub fn from_jwks_url(jwks_url: &str) -> Result<Self, RemoteError> {
        Self::with_source(KeySource::Direct(parse_http_url(jwks_url)?))
    }

    fn with_source(source: KeySource) -> Result<Self, RemoteError> {
        Ok(Self {
            source,
            allow_cross_origin_jwks: false,
            http: default_client()?,
            clock: Arc::new(Instant::now),
            shared: Arc::new(Shared {
                jwks_uri: Mutex::new(None),
                fetches: tokio::sync::Mutex::new(FetchSchedule::default()),
                attempts: AtomicU64::new(0),
            }),
        })
    }

    /// Follows a discovered `jwks_uri` even when it is on another origin than the
    /// issuer (a CDN, say). Off by default: otherwise whoever can change the discovery
    /// document could point the guard at keys of their own.
    pub fn allow_cross_origin_jwks(mut self) -> Self {
        self.allow_cross_origin_jwks = true;
        self
    }

    /// Uses `http` instead of the default client (custom roots, proxies, timeouts). It
    /// should not follow redirects.
    pub fn with_http_client(mut self, http: Client) -> Self {
        self.http = http;
        self
    }

    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Lets [`Guard::check_async`] (and the [`crate::Identity`] extractor) ask these
    /// keys to look again when a token names an unknown `kid`. A guard serves one
    /// issuer: attaching a second `RemoteKeys` to it is ignored with a warning.
    pub fn attach(&self, guard: &Guard) {
        if !guard.set_remote_keys(self.clone()) {
            tracing::warn!("the guard already has remote keys; these are not attached");
        }
    }

    /// Attaches to `guard` and keeps its keys fresh in a background task until the
    /// handle is aborted. The first fetch starts at once; until it succeeds the guard
    /// trusts whatever keys it was built with. Call it from within a Tokio runtime.
    pub fn spawn(self, guard: Guard) -> JoinHandle<()> {
        self.attach(&guard);
        tokio::spawn(async move {
            loop {
                let wait = self.refresh_if_due(&guard).await;
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// Fetches the key set now and installs it in `guard`; returns how many keys it
    /// holds. On failure the guard keeps its keys. Useful before serving the first
    /// request.
    pub async fn refresh(&self, guard: &Guard) -> Result<usize, RemoteError> {
        let mut schedule = self.shared.fetches.lock().await;
        self.fetch_and_install(&mut schedule, guard).await
    }

    /// Refreshes when the current key set is stale; returns how long until it is.
    pub(crate) async fn refresh_if_due(&self, guard: &Guard) -> Duration {
        let mut schedule = self.shared.fetches.lock().await;
        let due = schedule
            .next_refresh
            .is_none_or(|next| (self.clock)() >= next);
        if due {
            // The outcome is logged inside; the schedule says when to try again.
            let _ = self.fetch_and_install(&mut schedule, guard).await;
        }
        schedule.next_refresh.map_or(MIN_KEYS_MAX_AGE, |next| {
            next.saturating_duration_since((self.clock)())
        })
    }

    /// Called when a token names an unknown `kid`: fetches once for all the requests
    /// waiting at the same time, at most once per [`MIN_REFETCH_INTERVAL`]. Returns
    /// whether the key set may have changed, that is whether checking again is useful.
    pub(crate) async fn refetch_for_unknown_key(&self, guard: &Guard) -> bool {
        let seen = self.shared.attempts.load(Ordering::Acquire);
        let mut schedule = self.shared.fetches.lock().await;
        if self.shared.attempts.load(Ordering::Acquire) != seen {
            // Another request fetched while this one waited: its result is installed.
            return true;
        }
        let now = (self.clock)();
        let recent = schedule
            .last_attempt
            .is_some_and(|last| now.saturating_duration_since(last) < MIN_REFETCH_INTERVAL);
        if recent {
            tracing::debug!("unknown key id; the issuer's keys were fetched moments ago");
            return false;
        }
        self.fetch_and_install(&mut schedule, guard).await.is_ok()
    }

    async fn fetch_and_install(
        &self,
        schedule: &mut FetchSchedule,
        guard: &Guard,
    ) -> Result<usize, RemoteError> {
        schedule.last_attempt = Some((self.clock)());
        let outcome = self.fetch_keys().await;
        self.shared.attempts.fetch_add(1, Ordering::AcqRel);
        let now = (self.clock)();
        match outcome {
            Ok((keys, max_age)) => {
                let count = keys.len();
                guard.replace_keys(KeySet::new(keys));
                schedule.next_refresh = Some(now + max_age);
                tracing::debug!(
                    keys = count,
                    max_age_secs = max_age.as_secs(),
                    "issuer keys installed"
                );
                Ok(count)
            }
            Err(error) => {
                schedule.next_refresh = Some(now + MIN_KEYS_MAX_AGE);
                tracing::warn!(
                    %error,
                    "issuer keys could not be fetched; the keys already known stay trusted"
                );
                Err(error)
            }
        }
    }

    /// One fetch of the key set, with discovery first when needed.
    async fn fetch_keys(&self) -> Result<(Vec<VerifyingKey>, Duration), RemoteError> {
        let jwks_url = self.jwks_url().await?;
        let fetched = get_json::<LooseJwkSet>(self.http.get(jwks_url), MAX_DOCUMENT_BYTES).await;
        let (jwks, headers) = fetched.inspect_err(|_| self.forget_jwks_uri())?;
        let keys = usable_keys(jwks);
        if keys.is_empty() {
            return Err(RemoteError::NoUsableKey);
        }
        Ok((keys, keys_max_age(&headers)))
    }

    async fn jwks_url(&self) -> Result<Url, RemoteError> {
        let (issuer, discovery_url) = match &self.source {
            KeySource::Direct(url) => return Ok(url.clone()),
            KeySource::Discovery {
                issuer,
                discovery_url,
            } => (issuer, discovery_url),
        };
        if let Some(known) = self.lock_jwks_uri().clone() {
            return Ok(known);
        }
        let (discovery, _) =
            get_json::<Discovery>(self.http.get(discovery_url.clone()), MAX_DOCUMENT_BYTES).await?;
        if discovery.issuer != *issuer {
            return Err(RemoteError::IssuerMismatch {
                found: discovery.issuer,
            });
        }
        let jwks_url = parse_http_url(&discovery.jwks_uri)?;
        if jwks_url.origin() != discovery_url.origin() && !self.allow_cross_origin_jwks {
            return Err(RemoteError::CrossOriginJwks(discovery.jwks_uri));
        }
        *self.lock_jwks_uri() = Some(jwks_url.clone());
        Ok(jwks_url)
    }

    fn forget_jwks_uri(&self) {
        *self.lock_jwks_uri() = None;
    }

    fn lock_jwks_uri(&self) -> std::sync::MutexGuard<'_, Option<Url>> {
        // The value is a plain `Option<Url>`: a panic elsewhere cannot leave it torn.
        self.shared
            .jwks_uri
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("source", &self.source)
            .field("allow_cross_origin_jwks", &self.allow_cross_origin_jwks)
            .finish_non_exhaustive()
    }
}

/// The keys of `jwks` this guard can verify with; the others are logged and skipped.
fn usable_keys(jwks: LooseJwkSet) -> Vec<VerifyingKey> {
    let mut keys: Vec<VerifyingKey> = Vec::new();
    for value in jwks.keys {
        let jwk = match serde_json::from_value::<Jwk>(value) {
            Ok(jwk) => jwk,
            Err(error) => {
                tracing::warn!(%error, "JWKS entry skipped: not a JWK this guard reads");
                continue;
            }
        };
        if jwk.key_use != "sig" {
            tracing::warn!(
                kid = jwk.kid.as_str(),
                "JWKS entry skipped: not a signing key"
            );
            continue;
        }
        match VerifyingKey::from_jwk(&jwk) {
            Ok(key) if keys.iter().any(|known| known.kid() == key.kid()) => {
                tracing::warn!(kid = jwk.kid.as_str(), "JWKS entry skipped: duplicate kid");
            }
            Ok(key) => keys.push(key),
            Err(error) => {
                tracing::warn!(kid = jwk.kid.as_str(), %error, "JWKS entry skipped");
            }
        }
    }
    keys
}

/// How long a key set may be used: `max-age` of `Cache-Control` (RFC 9111 §5.2.2.1)
/// within [`MIN_KEYS_MAX_AGE`] and [`MAX_KEYS_MAX_AGE`]; `no-cache` and `no-store`
/// count as the minimum, and no `max-age` as [`DEFAULT_KEYS_MAX_AGE`].
fn keys_max_age(headers: &HeaderMap) -> Duration {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            if let Some((name, seconds)) = directive.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
            {
                if let Ok(seconds) = seconds.trim().trim_matches('"').parse::<u64>() {
                    max_age = Some(Duration::from_secs(seconds));
                }
            } else if directive.eq_ignore_ascii_case("no-cache")
                || directive.eq_ignore_ascii_case("no-store")
            {
                max_age = Some(Duration::ZERO);
            }
        }
    }
    max_age.map_or(DEFAULT_KEYS_MAX_AGE, |age| {
        age.clamp(MIN_KEYS_MAX_AGE, MAX_KEYS_MAX_AGE)
    })
}

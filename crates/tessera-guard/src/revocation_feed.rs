//! Follows the issuer's feed of ended sessions, so that a resource server refuses the
//! tokens of a logged-out session within about a second instead of when they expire.
//!
//! The contract: `GET {issuer}/auth/revocations?since=<unix seconds>` with
//! `Authorization: Bearer <feed credential>` answers `{"cursor": <unix seconds>,
//! "ended": [{"sid": "...", "ended_at": <unix seconds>}], "horizon": <seconds>}`, the
//! sessions ended at or after `since`; the next poll asks from `cursor`. A session is
//! remembered until the issuer's clock (the cursor) passes `ended_at + horizon`, after
//! which every token of it has expired anyway.
//!
//! When the feed cannot be reached, one warning is logged per outage and tokens of
//! sessions ended meanwhile stay valid until they expire: the guard does not fail closed.
//!
//! Limitation: this polls, so an ended session is seen up to one poll interval late and
//! an idle feed still costs one request per interval. Following the issuer's planned
//! server-sent-events stream instead would remove both.

use std::time::Duration;

use reqwest::{Client, Url};
use tessera_token::Secret;
use tokio::task::JoinHandle;

use crate::remote::{RemoteError, default_client, get_json, issuer_url};
use crate::{Guard, unix_now};

/// How often the feed is polled unless configured otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The most ended sessions a guard remembers; past it, those nearest their horizon are
/// forgotten first (and a warning says so), so memory stays bounded.
pub const MAX_ENDED_SESSIONS: usize = 100_000;
/// The path of the feed below the issuer URL.
pub const REVOCATIONS_PATH: &str = "/auth/revocations";

/// How far back the first poll asks, when not configured: longer than any access
/// token Tessera issues lives, so a guard that starts late still hears of recent ends.
const DEFAULT_LOOKBACK_SECS: i64 = 3600;
/// Largest feed answer read.
const MAX_FEED_BYTES: usize = 4 * 1024 * 1024;

/// A follower of one issuer's revocation feed. Build it, then [`RevocationFeed::spawn`]
/// it next to the [`Guard`] it feeds.
pub struct RevocationFeed {
    feed_url: Url,
    credential: Secret<String>,
    poll_interval: Duration,
    capacity: usize,
    http: Client,
    since: i64,
    /// Whether the last poll failed, so an outage is logged once, not every second.
    in_outage: bool,
}

#[derive(serde::Deserialize)]
struct FeedPage {
    cursor: i64,
    ended: Vec<EndedSession>,
    horizon: i64,
}

#[derive(serde::Deserialize)]
struct EndedSession {
    sid: String,
    ended_at: i64,
}

impl RevocationFeed {
    /// A follower of `{issuer}/auth/revocations`, presenting `credential` as a bearer
    /// token. It is sent to that URL only, and never logged.
    pub fn new(issuer: &str, credential: impl Into<String>) -> Result<Self, RemoteError> {
        Ok(Self {
            feed_url: issuer_url(issuer, REVOCATIONS_PATH)?,
            credential: Secret::new(credential.into()),
            poll_interval: DEFAULT_POLL_INTERVAL,
            capacity: MAX_ENDED_SESSIONS,
            http: default_client()?,
            since: unix_now().saturating_sub(DEFAULT_LOOKBACK_SECS),
            in_outage: false,
        })
    }

    /// Polls every `interval` instead of every second.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Remembers at most `capacity` ended sessions instead of [`MAX_ENDED_SESSIONS`].
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Asks first for sessions ended at or after `since` (Unix seconds) instead of an
    /// hour before now.
    pub fn starting_at(mut self, since: i64) -> Self {
        self.since = since;
        self
    }

    /// Uses `http` instead of the default client. It should not follow redirects, so
    /// the credential never leaves for another host.
    pub fn with_http_client(mut self, http: Client) -> Self {
        self.http = http;
        self
    }

    /// Polls in a background task until the handle is aborted, filling `guard`'s set of
    /// ended sessions. Call it from within a Tokio runtime.
    pub fn spawn(mut self, guard: Guard) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.poll_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // Failures are logged inside, once per outage.
                let _ = self.poll_once(&guard).await;
            }
        })
    }

    /// One poll: records the sessions ended since the last one in `guard`, forgets those
    /// past their horizon, and returns how many ended sessions the page listed.
    pub async fn poll_once(&mut self, guard: &Guard) -> Result<usize, RemoteError> {
        match self.fetch_page().await {
            Ok(page) => {
                if self.in_outage {
                    tracing::info!("revocation feed reachable again");
                    self.in_outage = false;
                }
                Ok(self.record(page, guard))
            }
            Err(error) => {
                if !self.in_outage {
                    tracing::warn!(
                        %error,
                        "revocation feed unreachable; tokens of sessions ended meanwhile \
                         stay valid until they expire"
                    );
                    self.in_outage = true;
                }
                Err(error)
            }
        }
    }

    async fn fetch_page(&self) -> Result<FeedPage, RemoteError> {
        let mut url = self.feed_url.clone();
        url.query_pairs_mut()
            .append_pair("since", &self.since.to_string());
        let request = self.http.get(url).bearer_auth(self.credential.expose());
        let (page, _) = get_json::<FeedPage>(request, MAX_FEED_BYTES).await?;
        Ok(page)
    }

    fn record(&mut self, page: FeedPage, guard: &Guard) -> usize {
        let ended = guard.ended_sessions();
        let listed = page.ended.len();
        let horizon = page.horizon.max(0);
        let mut dropped = 0;
        for session in page.ended {
            let forget_after = session.ended_at.saturating_add(horizon);
            if forget_after >= page.cursor {
                dropped += ended.insert(session.sid, forget_after, self.capacity);
            }
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                capacity = self.capacity,
                "too many ended sessions to remember; the oldest were forgotten early"
            );
        }
        ended.forget_expired(page.cursor);
        // A cursor that goes backwards would replay the feed forever; keep the later.
        self.since = self.since.max(page.cursor);
        listed
    }
}

impl std::fmt::Debug for RevocationFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationFeed")
            .field("feed_url", &self.feed_url.as_str())
            .field("poll_interval", &self.poll_interval)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

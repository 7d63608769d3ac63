//! Follows the issuer's feed of ended sessions, so that a resource server refuses the
//! tokens of a logged-out session within moments instead of when they expire.
//!
//! Two forms of one contract, both with `Authorization: Bearer <feed credential>`:
//!
//! - `GET {issuer}/auth/revocations/stream?since=<unix seconds>`: server-sent events,
//!   one `ended` event with data `{"sid": "...", "ended_at": <unix seconds>}` per
//!   session as the issuer ends it. The follower keeps this stream open, so an end
//!   arrives within milliseconds and an idle feed costs no requests.
//! - `GET {issuer}/auth/revocations?since=<unix seconds>`: the polling form, answering
//!   `{"cursor": <unix seconds>, "ended": [{"sid", "ended_at"}], "horizon": <seconds>}`,
//!   the sessions ended at or after `since`; the next poll asks from `cursor`. The
//!   follower polls once before each stream connection (to catch up and learn the
//!   horizon), once a minute while the stream is open (to forget old entries), and every
//!   poll interval while the stream cannot be opened, trying the stream again every
//!   half minute.
//!
//! A session is remembered until the issuer's clock passes `ended_at + horizon`, after
//! which every token of it has expired anyway.
//!
//! When neither form can be reached, one warning is logged per outage and tokens of
//! sessions ended meanwhile stay valid until they expire: the guard does not fail closed.

use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::{Client, Url};
use tessera_token::Secret;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::remote::{RemoteError, default_client, get_json, issuer_url};
use crate::sse::SseReader;
use crate::{Guard, unix_now};

/// How often the feed is polled unless configured otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The most ended sessions a guard remembers; past it, those nearest their horizon are
/// forgotten first (and a warning says so), so memory stays bounded.
pub const MAX_ENDED_SESSIONS: usize = 100_000;
/// The path of the feed below the issuer URL.
pub const REVOCATIONS_PATH: &str = "/auth/revocations";
/// The path of the feed's server-sent-events form below the issuer URL.
pub const REVOCATION_STREAM_PATH: &str = "/auth/revocations/stream";

/// How far back the first poll asks, when not configured: longer than any access
/// token Tessera issues lives, so a guard that starts late still hears of recent ends.
const DEFAULT_LOOKBACK_SECS: i64 = 3600;
/// Largest feed answer read.
const MAX_FEED_BYTES: usize = 4 * 1024 * 1024;
/// Longest line of the event stream read; an ended session's event is under 200 bytes.
const MAX_EVENT_LINE: usize = 16 * 1024;
/// How long the stream may stay silent before it is taken for dead. The issuer sends a
/// keep-alive comment every 15 seconds.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// How often the polling form is read while the stream is open, to forget entries past
/// their horizon.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);
/// How long to poll before trying again to open a stream that could not be opened.
const STREAM_RETRY_DELAY: Duration = Duration::from_secs(30);
/// A stream connection is closed and opened again after this long, so that a
/// connection silently cut by a middlebox is never trusted for long.
const STREAM_MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// A follower of one issuer's revocation feed. Build it, then [`RevocationFeed::spawn`]
/// it next to the [`Guard`] it feeds.
pub struct RevocationFeed {
    feed_url: Url,
    stream_url: Url,
    use_stream: bool,
    credential: Secret<String>,
    poll_interval: Duration,
    capacity: usize,
    http: Client,
    since: i64,
    /// How long the issuer says an ended session must be remembered, from the last
    /// page; until the first page, the look-back period.
    horizon: i64,
    /// Whether the last poll failed, so an outage is logged once, not every second.
    in_outage: bool,
    /// Whether the stream could not be opened last time, so that is logged once.
    stream_down: bool,
}

#[derive(serde::Deserialize)]
struct FeedPage {
    cursor: i64,
    ended: Vec<EndedSession>,
    horizon: i64,
}

#[derive(serde::Deserialize)]
pub(crate) struct EndedSession {
    sid: String,
    ended_at: i64,
}

impl RevocationFeed {
    /// A follower of `{issuer}/auth/revocations/stream`, with
    /// `{issuer}/auth/revocations` as its fallback, presenting `credential` as a bearer
    /// token. It is sent to those URLs only, and never logged.
    pub fn new(issuer: &str, credential: impl Into<String>) -> Result<Self, RemoteError> {
        Ok(Self {
            feed_url: issuer_url(issuer, REVOCATIONS_PATH)?,
            stream_url: issuer_url(issuer, REVOCATION_STREAM_PATH)?,
            use_stream: true,
            credential: Secret::new(credential.into()),
            poll_interval: DEFAULT_POLL_INTERVAL,
            capacity: MAX_ENDED_SESSIONS,
            http: default_client()?,
            since: unix_now().saturating_sub(DEFAULT_LOOKBACK_SECS),
            horizon: DEFAULT_LOOKBACK_SECS,
            in_outage: false,
            stream_down: false,
        })
    }

    /// Never opens the event stream; polls every poll interval instead. For a path to
    /// the issuer that buffers streamed answers (some proxies do).
    pub fn polling_only(mut self) -> Self {
        self.use_stream = false;
        self
    }

    /// Polls every `interval` instead of every second, when polling.
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

    /// Follows the feed in a background task until the handle is aborted, filling
    /// `guard`'s set of ended sessions: through the event stream while it can be opened,
    /// polling otherwise. Call it from within a Tokio runtime.
    pub fn spawn(mut self, guard: Guard) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                // Failures are logged inside, once per outage.
                let _ = self.poll_once(&guard).await;
                if self.use_stream {
                    let opened = Instant::now();
                    match self.follow_stream(&guard).await {
                        Ok(()) => {
                            if self.stream_down {
                                tracing::info!("revocation stream open again");
                                self.stream_down = false;
                            }
                            // A stream that closes at once must not turn into a loop of
                            // requests.
                            tokio::time::sleep_until(opened + self.poll_interval).await;
                            continue;
                        }
                        Err(error) => {
                            if !self.stream_down {
                                tracing::warn!(
                                    %error,
                                    "revocation stream unavailable; polling every {:?} \
                                     meanwhile",
                                    self.poll_interval
                                );
                                self.stream_down = true;
                            }
                        }
                    }
                }
                self.poll_for(STREAM_RETRY_DELAY, &guard).await;
            }
        })
    }

    /// Polls every poll interval for `period` (forever when streaming is off).
    async fn poll_for(&mut self, period: Duration, guard: &Guard) {
        let until = Instant::now() + period;
        let mut ticks = tokio::time::interval(self.poll_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate, and a poll has just been made.
        ticks.tick().await;
        while !self.use_stream || Instant::now() < until {
            ticks.tick().await;
            let _ = self.poll_once(guard).await;
        }
    }

    /// Opens the event stream from the cursor and records each end it carries, until
    /// the stream closes (`Ok`) or fails (`Err`). Polls for housekeeping meanwhile.
    async fn follow_stream(&mut self, guard: &Guard) -> Result<(), RemoteError> {
        let mut url = self.stream_url.clone();
        url.query_pairs_mut()
            .append_pair("since", &self.since.to_string());
        let mut response = self
            .http
            .get(url)
            .bearer_auth(self.credential.expose())
            .header(ACCEPT, "text/event-stream")
            .timeout(STREAM_MAX_LIFETIME)
            .send()
            .await
            .map_err(RemoteError::Http)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(RemoteError::Status(response.status().as_u16()));
        }

        let mut reader = SseReader::new(MAX_EVENT_LINE);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        housekeeping.tick().await;
        loop {
            let chunk = tokio::select! {
                chunk = tokio::time::timeout(STREAM_IDLE_TIMEOUT, response.chunk()) => chunk,
                _ = housekeeping.tick() => {
                    let _ = self.poll_once(guard).await;
                    continue;
                }
            };
            let chunk = match chunk {
                Ok(Ok(Some(chunk))) => chunk,
                // Closed by the issuer (a restart, or this follower fell behind).
                Ok(Ok(None)) => return Ok(()),
                // A lifetime timeout ends the stream as planned; other errors are faults.
                Ok(Err(error)) if error.is_timeout() => return Ok(()),
                Ok(Err(error)) => return Err(RemoteError::Http(error)),
                Err(_) => return Err(RemoteError::StreamIdle(STREAM_IDLE_TIMEOUT)),
            };
            let events = reader
                .push(&chunk)
                .map_err(|_| RemoteError::TooLarge(MAX_EVENT_LINE))?;
            for event in events.into_iter().filter(|event| event.kind == "ended") {
                match serde_json::from_str::<EndedSession>(&event.data) {
                    Ok(session) => self.record_one(session, guard),
                    Err(error) => return Err(RemoteError::Json(error)),
                }
            }
        }
    }

    /// Records one ended session from the stream.
    fn record_one(&mut self, session: EndedSession, guard: &Guard) {
        let forget_after = session.ended_at.saturating_add(self.horizon);
        let dropped = guard
            .ended_sessions()
            .insert(session.sid, forget_after, self.capacity);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                capacity = self.capacity,
                "too many ended sessions to remember; the oldest were forgotten early"
            );
        }
        // The polling form's cursor is the latest end seen; entries of the same second
        // may be read again, never missed.
        self.since = self.since.max(session.ended_at);
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
        self.horizon = horizon;
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
            .field("use_stream", &self.use_stream)
            .field("poll_interval", &self.poll_interval)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

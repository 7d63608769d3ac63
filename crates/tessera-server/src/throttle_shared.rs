//! The login throttle shared by every instance through Redis. It owns the same decision
//! as [`LoginThrottle`] (see the policy in `throttle.rs`: per-client rate, per-pair
//! doubling waits, per-account ceiling with known-good clients passing, in-flight
//! reservations, IPv6 /64 clients, accounts kept only as SHA-256), but keeps the
//! counters in Redis, so that instances behind one load balancer count together. It sits
//! where `LoginThrottle` sits in the password grant: [`SharedThrottle::check`] before any
//! hash is computed, then exactly one of [`SharedThrottle::record_failure`],
//! [`SharedThrottle::record_success`] or [`SharedThrottle::release`].
//!
//! # In Redis
//!
//! Each call is one Lua script (sent by hash, loaded on `NOSCRIPT`), so a decision and
//! its reservation are one atomic step however many instances ask at once. The scripts
//! read the time with Redis `TIME`, so instances whose clocks disagree still agree on
//! every wait. Four keys under the prefix serve one (account, client) pair:
//!
//! - `client:<ip>`, a string: rule 1, the client's GCRA theoretical arrival time;
//!   expires when that time is reached.
//! - `pair:<sha256>:<ip>`, a hash: rules 2 and 4, the pair's failures, its last
//!   failure and its reservations; expires once the wait is served and `max_delay` more
//!   has passed, and its reservations have lapsed.
//! - `account:<sha256>`, a hash: rules 3 and 4, the window and its failures, the guard
//!   and the reservations; expires once window and guard are over and the reservations
//!   have lapsed.
//! - `known:<sha256>`, a sorted set: rule 3, the 8 latest clients with a success, scored
//!   by its time; expires 30 days after the latest success.
//!
//! `<ip>` is the client key (an IPv4 address or an IPv6 /64 network) and `<sha256>` the
//! hex SHA-256 of the username key; the username itself never reaches Redis. Every
//! write sets an expiry, so Redis holds only what can still change a decision. Redis
//! should run with `maxmemory-policy noeviction`: an evicted key is a forgotten wait,
//! while a refused write falls back to the local throttle below.
//!
//! # When Redis fails
//!
//! Every call is bounded (250 ms). When Redis errs or does not answer, the decision
//! falls to a [`LoginThrottle`] inside this instance (the same policy, counted per
//! instance): throttling is never skipped. One warning marks the start of an outage
//! and one info line its end; meanwhile Redis is asked again at most every 2 s, by one
//! request, so an outage does not cost every login a timeout. A reservation's verdict
//! goes where the reservation was made (Redis or local), so that neither side is left
//! with a reservation nobody reports back. A call that timed out may still have run in
//! Redis: its reservation there then counts as a failure until it lapses (closed, not
//! open).

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::throttle::{
    AccountKey, ClientKey, FULL_RETRY_AFTER, IN_FLIGHT_TIMEOUT, KNOWN_GOOD_FOR,
    KNOWN_GOOD_PER_ACCOUNT, LoginThrottle, MIN_DELAY, PairKey, ThrottleConfig, Throttled,
};

/// The key prefix when the configuration names none.
pub(crate) const DEFAULT_PREFIX: &str = "tessera:throttle:";

/// The longest a login waits for Redis before the local throttle decides: a fraction
/// of what a user notices, many times a loopback or same-zone round trip.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Connecting and answering each get less than `CALL_TIMEOUT`, so that the client
/// library gives up (and reconnects later) before the call is abandoned.
const REDIS_TIMEOUT: Duration = Duration::from_millis(200);
/// During an outage, how often one request tries Redis again.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Most pairs with attempts in flight that are remembered; past it (even after
/// forgetting lapsed ones) `check` refuses rather than lose track.
const MAX_TRACKED_PAIRS: usize = 100_000;

/// What every script starts with: the arguments, the clock, and the records of the
/// policy, one Lua function per method of `throttle.rs`'s records. Times are whole
/// milliseconds, well within the 2^53 that a Lua number holds exactly.
macro_rules! prelude {
    () => {
        r#"
-- Before Redis 5, a script must ask for its effects to be replicated to call TIME
-- before writing; later versions always do so, and the call is a no-op.
if redis.replicate_commands then redis.replicate_commands() end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  + tonumber(ARGV[1])
local per_minute = tonumber(ARGV[2])
local free_failures = tonumber(ARGV[3])
local max_delay = tonumber(ARGV[4])
local ceiling = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local in_flight_for = tonumber(ARGV[7])
local known_for = tonumber(ARGV[8])
local known_max = tonumber(ARGV[9])
local min_delay = tonumber(ARGV[10])
local client = ARGV[11]
local client_key, pair_key, account_key, known_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local function number(value)
  return tonumber(value) or 0
end

local function since(at)
  return math.max(0, now - at)
end

-- Writes a hash and its expiry, or deletes it when nothing in it matters any more.
local function store(key, keep, ...)
  if keep <= 0 then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, ...)
    redis.call('PEXPIRE', key, math.ceil(keep))
  end
end

-- Rule 4: reservations count until the latest is too old for a verdict to come.
local function live(record)
  if record.reserved > 0 and since(record.reserved_at) < in_flight_for then
    return record.reserved
  end
  return 0
end

local function reserve(record)
  record.reserved = live(record) + 1
  record.reserved_at = now
end

local function release(record)
  record.reserved = math.max(record.reserved - 1, 0)
end

-- Rule 2: nothing for the free failures, then 1 s doubling up to max_delay.
local function delay_after(failures)
  local excess = failures - free_failures
  if excess < 1 then return 0 end
  return math.min(1000 * 2 ^ math.min(excess - 1, 40), max_delay)
end

local function load_pair()
  local v = redis.call('HMGET', pair_key, 'failures', 'last_failure', 'reserved',
    'reserved_at')
  return { failures = number(v[1]), last_failure = number(v[2]),
    reserved = number(v[3]), reserved_at = number(v[4]) }
end

local function pair_remaining(pair)
  local delay = delay_after(pair.failures)
  if delay == 0 then return 0 end
  return math.max(0, delay - since(pair.last_failure))
end

-- How much longer the pair can change a decision: its wait served and then max_delay
-- of quiet, or its reservations lapsed. Zero or less: forgotten.
local function pair_memory(pair)
  local keep = 0
  if live(pair) > 0 then keep = pair.reserved_at + in_flight_for - now end
  if pair.failures > 0 then
    keep = math.max(keep, pair.last_failure + delay_after(pair.failures) + max_delay - now)
  end
  return keep
end

local function save_pair(pair)
  store(pair_key, pair_memory(pair), 'failures', pair.failures, 'last_failure',
    pair.last_failure, 'reserved', pair.reserved, 'reserved_at', pair.reserved_at)
end

-- Rules 2 and 4: the running wait; past it, in-flight attempts use up the free
-- failures plus the one that locks, and after them one attempt at a time.
local function pair_wait(pair)
  local remaining = pair_remaining(pair)
  if remaining > 0 then return remaining end
  local allowance = math.max(free_failures + 1 - pair.failures, 1)
  if live(pair) >= allowance then return min_delay end
  return 0
end

local function load_account()
  local v = redis.call('HMGET', account_key, 'window_start', 'window_failures',
    'guarded_since', 'reserved', 'reserved_at')
  if not v[1] then return nil end
  return { window_start = number(v[1]), window_failures = number(v[2]),
    guarded_since = number(v[3]), reserved = number(v[4]), reserved_at = number(v[5]) }
end

local function new_account()
  return { window_start = now, window_failures = 0, guarded_since = 0, reserved = 0,
    reserved_at = 0 }
end

local function guard_remaining(account)
  if account.guarded_since == 0 then return 0 end
  return math.max(0, window - since(account.guarded_since))
end

local function window_over(account)
  return since(account.window_start) >= window
end

local function account_memory(account)
  local keep = guard_remaining(account)
  if live(account) > 0 then
    keep = math.max(keep, account.reserved_at + in_flight_for - now)
  end
  if account.window_failures > 0 then
    keep = math.max(keep, account.window_start + window - now)
  end
  return keep
end

local function save_account(account)
  store(account_key, account_memory(account), 'window_start', account.window_start,
    'window_failures', account.window_failures, 'guarded_since', account.guarded_since,
    'reserved', account.reserved, 'reserved_at', account.reserved_at)
end

-- Rule 3 for a client the account does not know.
local function stranger_wait(account)
  local remaining = guard_remaining(account)
  if remaining > 0 then return remaining end
  local failures = account.window_failures
  if window_over(account) then failures = 0 end
  if failures + live(account) >= ceiling then return min_delay end
  return 0
end

-- The guard starts with the failure that reaches the ceiling and lasts one window;
-- the count starts over under it.
local function count_failure(account)
  if window_over(account) then
    account.window_start = now
    account.window_failures = 0
  end
  account.window_failures = account.window_failures + 1
  if account.window_failures >= ceiling and guard_remaining(account) == 0 then
    account.guarded_since = now
    account.window_start = now
    account.window_failures = 0
  end
end

local function knows_client()
  local at = redis.call('ZSCORE', known_key, client)
  return at and since(tonumber(at)) < known_for
end

-- Rule 1: GCRA with a burst of per_minute, as the in-process throttle's limiter.
local function admit_client()
  local interval = math.ceil(60000 / per_minute)
  local tolerance = interval * (per_minute - 1)
  local arrival = tonumber(redis.call('GET', client_key)) or now
  local earliest = arrival - tolerance
  if now < earliest then return earliest - now end
  local next_arrival = math.max(arrival, now) + interval
  redis.call('SET', client_key, next_arrival, 'PX', next_arrival - now)
  return 0
end
"#
    };
}

/// `check`: 0 when the attempt is reserved, else the wait in milliseconds. Nothing is
/// written when the attempt is refused.
const CHECK_SCRIPT: &str = concat!(
    prelude!(),
    r#"
local pair = load_pair()
if pair_memory(pair) <= 0 then
  pair = { failures = 0, last_failure = 0, reserved = 0, reserved_at = 0 }
end
local account = load_account()
if account and account_memory(account) <= 0 then account = nil end

local wait = pair_wait(pair)
if account and not knows_client() then wait = math.max(wait, stranger_wait(account)) end
if wait > 0 then return math.ceil(wait) end
wait = admit_client()
if wait > 0 then return math.ceil(wait) end

reserve(pair)
save_pair(pair)
account = account or new_account()
reserve(account)
save_account(account)
return 0
"#
);

/// `record_failure`: the reservation ends and counts as a failure for pair and account.
const FAILURE_SCRIPT: &str = concat!(
    prelude!(),
    r#"
local pair = load_pair()
release(pair)
pair.failures = pair.failures + 1
pair.last_failure = now
save_pair(pair)
local account = load_account() or new_account()
release(account)
count_failure(account)
save_account(account)
return 0
"#
);

/// `record_success`: the pair's failures are forgotten and the client becomes known.
const SUCCESS_SCRIPT: &str = concat!(
    prelude!(),
    r#"
redis.call('DEL', pair_key)
local account = load_account()
if account then
  release(account)
  save_account(account)
end
redis.call('ZADD', known_key, now, client)
redis.call('ZREMRANGEBYSCORE', known_key, '-inf', now - known_for)
redis.call('ZREMRANGEBYRANK', known_key, 0, -(known_max + 1))
redis.call('PEXPIRE', known_key, known_for)
return 0
"#
);

/// `release`: the reservation ends and counts neither way.
const RELEASE_SCRIPT: &str = concat!(
    prelude!(),
    r#"
local pair = load_pair()
release(pair)
save_pair(pair)
local account = load_account()
if account then
  release(account)
  save_account(account)
end
return 0
"#
);

/// Why a [`SharedThrottle`] cannot be built: both are configuration mistakes, so
/// start-up stops with the message. An unreachable Redis is not one of them.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedThrottleError {
    /// The URL does not parse; the message never repeats it, as it may hold a password.
    #[error("redis_url is not a usable Redis URL (redis://[:password@]host[:port][/db]): {0}")]
    Url(#[source] redis::RedisError),
    /// Keys without a prefix could collide with anything else in the database.
    #[error("the Redis key prefix is empty; leave it out to use \"{DEFAULT_PREFIX}\"")]
    EmptyPrefix,
}

/// Decides which login attempts may be evaluated, with counters shared through Redis
/// by every instance using the same Redis and prefix; share it behind an `Arc`.
///
/// ```text
/// let throttle = SharedThrottle::connect(url, DEFAULT_PREFIX, ThrottleConfig::default())
///     .await?;
/// throttle.check(&key, ip).await?; // Err: answer 429 with Retry-After
/// // ... verify the password, then one of:
/// throttle.record_failure(&key, ip).await;
/// throttle.record_success(&key, ip).await;
/// throttle.release(&key, ip).await; // no verdict (the hashing pool was busy)
/// ```
pub(crate) struct SharedThrottle {
    redis: ConnectionManager,
    scripts: Scripts,
    prefix: String,
    config: ThrottleConfig,
    /// Decides while Redis does not answer.
    local: LoginThrottle,
    placements: Mutex<Placements>,
    link: Mutex<Link>,
    /// Added to Redis time in the scripts, so that tests can move time forward.
    #[cfg(test)]
    clock_offset_ms: std::sync::atomic::AtomicI64,
}

impl SharedThrottle {
    /// A throttle keeping its counters in the Redis at `redis_url` under `prefix`
    /// ([`DEFAULT_PREFIX`] unless configured), with `config` clamped as
    /// [`LoginThrottle`] does. Call it inside the Tokio runtime. It waits at most
    /// 250 ms for Redis; a Redis that does not answer is not an error but a warning,
    /// and the local throttle decides until Redis answers.
    pub(crate) async fn connect(
        redis_url: &str,
        prefix: &str,
        config: ThrottleConfig,
    ) -> Result<Self, SharedThrottleError> {
        if prefix.is_empty() {
            return Err(SharedThrottleError::EmptyPrefix);
        }
        let client = redis::Client::open(redis_url).map_err(SharedThrottleError::Url)?;
        // Lazy: nothing connects here. One attempt per connection, as the link state
        // below already decides when to try again.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(0);
        let redis = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(SharedThrottleError::Url)?;

        let config = config.clamped();
        let throttle = Self {
            redis,
            scripts: Scripts::new(),
            prefix: prefix.to_owned(),
            local: LoginThrottle::new(config.clone()),
            config,
            placements: Mutex::new(Placements::default()),
            link: Mutex::new(Link::Up),
            #[cfg(test)]
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
        };
        throttle.ping().await;
        Ok(throttle)
    }

    /// Whether an attempt on `account` (the username key) from `ip` (the client
    /// address) may be evaluated now. On `Ok` the attempt is reserved: report its
    /// verdict with `record_failure`, `record_success` or `release`.
    pub(crate) async fn check(&self, account: &str, ip: IpAddr) -> Result<(), Throttled> {
        let pair = (AccountKey::of(account), ClientKey::of(ip));
        if !self.lock_placements().has_room(Instant::now()) {
            return Err(Throttled::after(FULL_RETRY_AFTER));
        }

        let from_redis = match self.route() {
            Site::Redis => self
                .run(&self.scripts.check, pair)
                .await
                .map(verdict_of_wait),
            Site::Local => None,
        };
        let (site, verdict) = match from_redis {
            Some(verdict) => (Site::Redis, verdict),
            None => (Site::Local, self.local.check(account, ip, Instant::now())),
        };

        if verdict.is_ok() {
            self.lock_placements().add(pair, site, Instant::now());
        }
        verdict
    }

    /// The reserved attempt was evaluated and the password was wrong (or the account
    /// unknown or disabled, which the caller does not tell apart).
    pub(crate) async fn record_failure(&self, account: &str, ip: IpAddr) {
        self.report(account, ip, Verdict::Failure).await;
    }

    /// The reserved attempt logged in: the pair's failures are forgotten and the
    /// client becomes known to the account for 30 days.
    pub(crate) async fn record_success(&self, account: &str, ip: IpAddr) {
        self.report(account, ip, Verdict::Success).await;
    }

    /// The reserved attempt ended without a verdict (e.g. the hashing pool was busy),
    /// so it counts neither way.
    pub(crate) async fn release(&self, account: &str, ip: IpAddr) {
        self.report(account, ip, Verdict::Release).await;
    }

    /// Forgets what no longer changes a decision in this instance: the local
    /// throttle's idle records and attempts whose verdicts never came. Call it every
    /// minute, as for [`LoginThrottle::prune`]; Redis expires its keys by itself.
    pub(crate) fn prune(&self) {
        let now = Instant::now();
        self.local.prune(now);
        self.lock_placements().forget_lapsed(now);
    }

    /// Whether Redis answered the last time it was asked, i.e. whether the instances
    /// throttle together right now (for readiness or metrics).
    pub(crate) fn is_shared(&self) -> bool {
        *self.lock_link() == Link::Up
    }

    /// Sends the verdict where its reservation was made. When Redis took the
    /// reservation but does not take the verdict, a failure or success is recorded
    /// locally instead, as the local throttle decides from now on: a lost failure
    /// would be a free guess. The Redis reservation then lapses after 30 s.
    async fn report(&self, account: &str, ip: IpAddr, verdict: Verdict) {
        let pair = (AccountKey::of(account), ClientKey::of(ip));
        // A verdict without a known reservation (a caller's mistake, or one reported
        // after it lapsed) goes to whichever side decides now.
        let placed = self.lock_placements().take(pair);
        let site = placed.unwrap_or_else(|| self.deciding_site());

        if site == Site::Redis {
            let script = match verdict {
                Verdict::Failure => &self.scripts.failure,
                Verdict::Success => &self.scripts.success,
                Verdict::Release => &self.scripts.release,
            };
            if self.run(script, pair).await.is_some() {
                return;
            }
        }

        let now = Instant::now();
        match verdict {
            Verdict::Failure => self.local.record_failure(account, ip, now),
            Verdict::Success => self.local.record_success(account, ip, now),
            // Nothing to hand back locally for a Redis reservation.
            Verdict::Release if site == Site::Local => self.local.release(account, ip, now),
            Verdict::Release => {}
        }
    }

    /// Runs one script for `pair`; `None` when Redis errs or does not answer in time,
    /// which also marks the link down.
    async fn run(&self, script: &Script, pair: PairKey) -> Option<i64> {
        let (account, client) = pair;
        let account = hex(&account);
        let client = client.0.to_string();
        let prefix = &self.prefix;
        let config = &self.config;

        let mut invocation = script.prepare_invoke();
        invocation
            .key(format!("{prefix}client:{client}"))
            .key(format!("{prefix}pair:{account}:{client}"))
            .key(format!("{prefix}account:{account}"))
            .key(format!("{prefix}known:{account}"))
            .arg(self.clock_offset_ms())
            .arg(config.per_ip_per_minute)
            .arg(config.free_failures)
            .arg(millis(config.max_delay))
            .arg(config.account_ceiling)
            .arg(millis(config.account_window))
            .arg(millis(IN_FLIGHT_TIMEOUT))
            .arg(millis(KNOWN_GOOD_FOR))
            .arg(KNOWN_GOOD_PER_ACCOUNT)
            .arg(millis(MIN_DELAY))
            .arg(&client);
        let mut connection = self.redis.clone();
        let answer = tokio::time::timeout(
            CALL_TIMEOUT,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;

        match answer {
            Ok(Ok(value)) => {
                self.redis_answered();
                Some(value)
            }
            Ok(Err(error)) => {
                self.redis_failed(&error);
                None
            }
            Err(_) => {
                self.redis_failed(&no_answer());
                None
            }
        }
    }

    /// Asks Redis once at start-up, so that an unreachable one is reported at once
    /// rather than at the first login.
    async fn ping(&self) {
        let mut connection = self.redis.clone();
        let ping = redis::cmd("PING");
        let answer =
            tokio::time::timeout(CALL_TIMEOUT, ping.query_async::<String>(&mut connection)).await;
        match answer {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => self.redis_failed(&error),
            Err(_) => self.redis_failed(&no_answer()),
        }
    }

    /// Where the next decision is made. During an outage one request at a time, every
    /// `PROBE_EVERY`, tries Redis again; the others go local without waiting.
    fn route(&self) -> Site {
        let now = Instant::now();
        let mut link = self.lock_link();
        match *link {
            Link::Up => Site::Redis,
            Link::Down { probe_at } if now >= probe_at => {
                *link = Link::Down {
                    probe_at: now + PROBE_EVERY,
                };
                Site::Redis
            }
            Link::Down { .. } => Site::Local,
        }
    }

    /// Like `route`, without claiming a probe: for verdicts with no known reservation.
    fn deciding_site(&self) -> Site {
        match *self.lock_link() {
            Link::Up => Site::Redis,
            Link::Down { .. } => Site::Local,
        }
    }

    fn redis_answered(&self) {
        let mut link = self.lock_link();
        if *link != Link::Up {
            *link = Link::Up;
            tracing::info!("Redis answers again: login throttling is shared by all instances");
        }
    }

    /// Marks the link down; only the first failure of an outage is logged.
    fn redis_failed(&self, cause: &dyn fmt::Display) {
        let mut link = self.lock_link();
        if *link == Link::Up {
            *link = Link::Down {
                probe_at: Instant::now() + PROBE_EVERY,
            };
            tracing::warn!(
                %cause,
                "Redis does not answer: login throttling falls back to this instance's \
                 own limits until it does"
            );
        }
    }

    #[cfg(test)]
    fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(not(test))]
    fn clock_offset_ms(&self) -> i64 {
        0
    }

    /// A poisoned lock is taken over: both tables stay consistent between statements.
    fn lock_placements(&self) -> MutexGuard<'_, Placements> {
        self.placements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for SharedThrottle {
    /// Leaves out the connection, whose URL may hold a password.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SharedThrottle")
            .field("prefix", &self.prefix)
            .field("config", &self.config)
            .field("link", &*self.lock_link())
            .finish_non_exhaustive()
    }
}

/// The four scripts, each hashed once.
struct Scripts {
    check: Script,
    failure: Script,
    success: Script,
    release: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            check: Script::new(CHECK_SCRIPT),
            failure: Script::new(FAILURE_SCRIPT),
            success: Script::new(SUCCESS_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
        }
    }
}

/// Where a reservation was made, and so where its verdict goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    Redis,
    Local,
}

#[derive(Debug, Clone, Copy)]
enum Verdict {
    Failure,
    Success,
    Release,
}

/// Whether Redis answered the last call, and when not, when to try it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    Down { probe_at: Instant },
}

/// The sites of the attempts in flight, per pair, oldest first. Verdicts do not say
/// which attempt they end, so each takes the oldest reservation of its pair: every
/// site then gets back as many verdicts as it gave reservations.
#[derive(Debug, Default)]
struct Placements(HashMap<PairKey, VecDeque<(Site, Instant)>>);

impl Placements {
    fn add(&mut self, pair: PairKey, site: Site, now: Instant) {
        self.0.entry(pair).or_default().push_back((site, now));
    }

    fn take(&mut self, pair: PairKey) -> Option<Site> {
        let sites = self.0.get_mut(&pair)?;
        let site = sites.pop_front().map(|(site, _)| site);
        if sites.is_empty() {
            self.0.remove(&pair);
        }
        site
    }

    /// Whether one more pair fits, after forgetting lapsed attempts if full.
    fn has_room(&mut self, now: Instant) -> bool {
        if self.0.len() >= MAX_TRACKED_PAIRS {
            self.forget_lapsed(now);
        }
        self.0.len() < MAX_TRACKED_PAIRS
    }

    /// Forgets attempts older than the in-flight timeout: both sites have stopped
    /// counting them, and their verdicts are not coming.
    fn forget_lapsed(&mut self, now: Instant) {
        self.0.retain(|_, sites| {
            sites.retain(|(_, at)| now.saturating_duration_since(*at) < IN_FLIGHT_TIMEOUT);
            !sites.is_empty()
        });
    }
}

fn verdict_of_wait(wait_ms: i64) -> Result<(), Throttled> {
    match u64::try_from(wait_ms) {
        Ok(wait) if wait > 0 => Err(Throttled::after(Duration::from_millis(wait))),
        _ => Ok(()),
    }
}

fn no_answer() -> String {
    format!("no answer within {} ms", CALL_TIMEOUT.as_millis())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The account's SHA-256 as lowercase hex, as it appears in keys.
fn hex(account: &AccountKey) -> String {
    account
        .0
        .iter()
        .fold(String::with_capacity(64), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// The login throttle a server uses: its own ([`LoginThrottle`]), or the one shared
/// through Redis when `redis_url` is set. Callers see one interface either way.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per server, behind an Arc: the size difference costs nothing"
)]
pub(crate) enum Throttle {
    /// Counted in this process.
    Local(LoginThrottle),
    /// Counted in Redis, with a local fallback.
    Shared(SharedThrottle),
}

impl Throttle {
    /// Whether an attempt on `account` from `ip` may be evaluated now; on `Ok` the
    /// attempt is reserved and exactly one verdict must follow.
    pub(crate) async fn check(&self, account: &str, ip: IpAddr) -> Result<(), Throttled> {
        match self {
            Self::Local(throttle) => throttle.check(account, ip, Instant::now()),
            Self::Shared(throttle) => throttle.check(account, ip).await,
        }
    }

    /// The reserved attempt failed.
    pub(crate) async fn record_failure(&self, account: &str, ip: IpAddr) {
        match self {
            Self::Local(throttle) => throttle.record_failure(account, ip, Instant::now()),
            Self::Shared(throttle) => throttle.record_failure(account, ip).await,
        }
    }

    /// The reserved attempt logged in.
    pub(crate) async fn record_success(&self, account: &str, ip: IpAddr) {
        match self {
            Self::Local(throttle) => throttle.record_success(account, ip, Instant::now()),
            Self::Shared(throttle) => throttle.record_success(account, ip).await,
        }
    }

    /// The reserved attempt ended without a verdict.
    pub(crate) async fn release(&self, account: &str, ip: IpAddr) {
        match self {
            Self::Local(throttle) => throttle.release(account, ip, Instant::now()),
            Self::Shared(throttle) => throttle.release(account, ip).await,
        }
    }

    /// Forgets what can no longer change a decision (call it every minute).
    pub(crate) fn prune(&self) {
        match self {
            Self::Local(throttle) => throttle.prune(Instant::now()),
            Self::Shared(throttle) => throttle.prune(),
        }
    }

    /// `None` without Redis; otherwise whether Redis answered last time.
    pub(crate) fn redis_up(&self) -> Option<bool> {
        match self {
            Self::Local(_) => None,
            Self::Shared(throttle) => Some(throttle.is_shared()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures_util::future::join_all;
    use std::sync::atomic::Ordering;

    /// The Redis that runs beside the tests, on this machine and on CI.
    const REDIS: &str = "redis://127.0.0.1:6379/";
    const ALICE: &str = "alice";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// The `i`-th of many distinct attacker addresses.
    fn botnet(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xCB00_7100 + i))
    }

    /// A prefix of its own for each test, whose keys are deleted when it drops (also
    /// when the test fails), so tests neither see each other's counters nor leave any.
    struct TestKeys(String);

    impl TestKeys {
        fn new() -> Self {
            Self(format!("tessera:test:{}:", uuid::Uuid::new_v4().simple()))
        }

        /// The keys under the prefix, by a bounded SCAN.
        fn list(&self) -> Vec<String> {
            let client = redis::Client::open(REDIS).unwrap();
            let mut connection = client.get_connection().unwrap();
            let mut keys = Vec::new();
            let mut cursor = 0_u64;
            for _ in 0..10_000 {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}*", self.0))
                    .arg("COUNT")
                    .arg(1_000)
                    .query(&mut connection)
                    .unwrap();
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            keys
        }
    }

    impl Drop for TestKeys {
        fn drop(&mut self) {
            let keys = self.list();
            if keys.is_empty() {
                return;
            }
            let client = redis::Client::open(REDIS).unwrap();
            let mut connection = client.get_connection().unwrap();
            let _: () = redis::cmd("DEL").arg(keys).query(&mut connection).unwrap();
        }
    }

    /// An instance on the test Redis, which must answer: a test passing on the local
    /// fallback would prove nothing about the scripts.
    async fn instance(keys: &TestKeys, config: ThrottleConfig) -> SharedThrottle {
        let throttle = SharedThrottle::connect(REDIS, &keys.0, config)
            .await
            .unwrap();
        assert!(throttle.is_shared(), "Redis must run at 127.0.0.1:6379");
        throttle
    }

    impl SharedThrottle {
        /// Moves this instance's script time forward.
        fn advance_clock(&self, by: Duration) {
            let by = i64::try_from(by.as_millis()).unwrap();
            self.clock_offset_ms.fetch_add(by, Ordering::Relaxed);
        }

        fn set_link(&self, link: Link) {
            *self.lock_link() = link;
        }
    }

    /// One evaluated attempt with a wrong password.
    async fn fail(throttle: &SharedThrottle, account: &str, ip: IpAddr) {
        throttle.check(account, ip).await.unwrap();
        throttle.record_failure(account, ip).await;
    }

    async fn succeed(throttle: &SharedThrottle, account: &str, ip: IpAddr) {
        throttle.check(account, ip).await.unwrap();
        throttle.record_success(account, ip).await;
    }

    fn retry_after(result: Result<(), Throttled>) -> Duration {
        result.unwrap_err().retry_after
    }

    /// An address on which nothing listens: bound, then released.
    fn closed_port_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("redis://127.0.0.1:{port}/")
    }

    #[test]
    fn the_throttle_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync>() {}

        shareable::<SharedThrottle>();
    }

    #[tokio::test]
    async fn its_futures_can_run_on_any_worker() {
        fn sendable<F: std::future::Future + Send>(_: F) {}
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("198.51.100.7");

        sendable(throttle.check(ALICE, client));
        sendable(throttle.record_failure(ALICE, client));
        sendable(throttle.record_success(ALICE, client));
        sendable(throttle.release(ALICE, client));
    }

    #[tokio::test]
    async fn the_first_three_failures_of_a_pair_cost_nothing_and_the_fourth_waits() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("198.51.100.7");

        for _ in 0..3 {
            fail(&throttle, ALICE, client).await;
        }
        let after_three = throttle.check(ALICE, client).await;
        throttle.record_failure(ALICE, client).await;
        let after_four = throttle.check(ALICE, client).await;

        assert_eq!(after_three, Ok(()));
        assert_eq!(retry_after(after_four), secs(1));
    }

    #[tokio::test]
    async fn each_further_failure_doubles_the_wait() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("198.51.100.7");
        for _ in 0..3 {
            fail(&throttle, ALICE, client).await;
        }

        let mut waits = Vec::new();
        for _ in 0..5 {
            fail(&throttle, ALICE, client).await;
            let wait = retry_after(throttle.check(ALICE, client).await);
            // Well before the end, as Redis time also moves between the calls.
            throttle.advance_clock(wait - Duration::from_millis(500));
            assert!(throttle.check(ALICE, client).await.is_err());
            throttle.advance_clock(Duration::from_millis(500));
            waits.push(wait.as_secs());
        }

        assert_eq!(waits, [1, 2, 4, 8, 16]);
    }

    #[tokio::test]
    async fn the_wait_stops_growing_at_max_delay() {
        let keys = TestKeys::new();
        let config = ThrottleConfig {
            free_failures: 0,
            max_delay: secs(10),
            ..ThrottleConfig::default()
        };
        let throttle = instance(&keys, config).await;
        let client = ip("198.51.100.7");

        let mut waits = Vec::new();
        for _ in 0..6 {
            fail(&throttle, ALICE, client).await;
            let wait = retry_after(throttle.check(ALICE, client).await);
            waits.push(wait.as_secs());
            throttle.advance_clock(wait);
        }

        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test]
    async fn an_attackers_failures_do_not_slow_the_real_users_ip() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let (attacker, user) = (ip("203.0.113.9"), ip("198.51.100.7"));
        for _ in 0..4 {
            fail(&throttle, ALICE, attacker).await;
        }

        let attackers_next = throttle.check(ALICE, attacker).await;
        let users_login = throttle.check(ALICE, user).await;

        assert_eq!(retry_after(attackers_next), secs(1));
        assert_eq!(users_login, Ok(()));
    }

    #[tokio::test]
    async fn a_success_from_the_pair_forgets_its_failures() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("198.51.100.7");
        for _ in 0..4 {
            fail(&throttle, ALICE, client).await;
        }
        throttle.advance_clock(secs(1));
        succeed(&throttle, ALICE, client).await;

        for _ in 0..3 {
            fail(&throttle, ALICE, client).await;
        }

        assert_eq!(throttle.check(ALICE, client).await, Ok(()));
    }

    #[tokio::test]
    async fn one_ip_may_try_twenty_accounts_a_minute() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("203.0.113.9");
        for i in 0..20 {
            fail(&throttle, &format!("user{i}"), client).await;
        }

        let twenty_first = throttle.check("user20", client).await;
        throttle.advance_clock(secs(3));
        let after_one_cell = throttle.check("user20", client).await;

        assert_eq!(retry_after(twenty_first), secs(3));
        assert_eq!(after_one_cell, Ok(()));
    }

    #[tokio::test]
    async fn two_instances_count_the_same_failures() {
        let keys = TestKeys::new();
        let first = instance(&keys, ThrottleConfig::default()).await;
        let second = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("203.0.113.9");

        for _ in 0..2 {
            fail(&first, ALICE, client).await;
            fail(&second, ALICE, client).await;
        }
        let on_first = first.check(ALICE, client).await;
        let on_second = second.check(ALICE, client).await;

        assert_eq!(retry_after(on_first), secs(1));
        assert_eq!(retry_after(on_second), secs(1));
    }

    #[tokio::test]
    async fn fifty_concurrent_checks_on_two_instances_reserve_only_the_guesses_that_lock() {
        let keys = TestKeys::new();
        let first = instance(&keys, ThrottleConfig::default()).await;
        let second = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("203.0.113.9");

        let checks = (0..50).map(|i| {
            let throttle = if i % 2 == 0 { &first } else { &second };
            throttle.check(ALICE, client)
        });
        let results = join_all(checks).await;

        let evaluated = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(evaluated, 4);
        assert!(
            results
                .iter()
                .filter_map(|result| result.err())
                .all(|throttled| throttled.retry_after == secs(1))
        );
        for _ in 0..2 {
            first.record_failure(ALICE, client).await;
            second.record_failure(ALICE, client).await;
        }
        assert_eq!(retry_after(first.check(ALICE, client).await), secs(1));
    }

    #[tokio::test]
    async fn a_reservation_never_reported_back_lapses() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("198.51.100.7");
        for _ in 0..4 {
            throttle.check(ALICE, client).await.unwrap();
        }

        throttle.advance_clock(secs(29));
        let while_in_flight = throttle.check(ALICE, client).await;
        throttle.advance_clock(secs(1));
        let after_timeout = throttle.check(ALICE, client).await;

        assert!(while_in_flight.is_err());
        assert_eq!(after_timeout, Ok(()));
    }

    #[tokio::test]
    async fn a_released_attempt_counts_neither_way() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("198.51.100.7");
        for _ in 0..3 {
            throttle.check(ALICE, client).await.unwrap();
            throttle.release(ALICE, client).await;
        }

        for _ in 0..3 {
            fail(&throttle, ALICE, client).await;
        }

        assert_eq!(throttle.check(ALICE, client).await, Ok(()));
    }

    #[tokio::test]
    async fn failures_from_many_ips_guard_the_account_against_strangers() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        for i in 0..100 {
            fail(&throttle, ALICE, botnet(i)).await;
        }

        throttle.advance_clock(secs(60));
        let stranger = throttle.check(ALICE, ip("192.0.2.1")).await;
        let other_account = throttle.check("bob", ip("192.0.2.1")).await;

        assert_eq!(retry_after(stranger), secs(14 * 60));
        assert_eq!(other_account, Ok(()));
    }

    #[tokio::test]
    async fn a_guarded_account_still_admits_an_ip_with_a_recent_success() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let user = ip("198.51.100.7");
        succeed(&throttle, ALICE, user).await;
        throttle.advance_clock(secs(20 * 24 * 60 * 60));
        for i in 0..100 {
            fail(&throttle, ALICE, botnet(i)).await;
        }

        let users_login = throttle.check(ALICE, user).await;
        let attackers_next = throttle.check(ALICE, botnet(0)).await;
        let fresh_attacker = throttle.check(ALICE, botnet(500)).await;

        assert_eq!(users_login, Ok(()));
        assert!(attackers_next.is_err());
        assert!(fresh_attacker.is_err());
    }

    #[tokio::test]
    async fn a_success_older_than_thirty_days_does_not_pass_the_guard() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let user = ip("198.51.100.7");
        succeed(&throttle, ALICE, user).await;
        throttle.advance_clock(KNOWN_GOOD_FOR);
        for i in 0..100 {
            fail(&throttle, ALICE, botnet(i)).await;
        }

        let users_login = throttle.check(ALICE, user).await;

        assert!(users_login.is_err());
    }

    #[tokio::test]
    async fn the_guard_ends_after_one_window() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        for i in 0..100 {
            fail(&throttle, ALICE, botnet(i)).await;
        }

        throttle.advance_clock(secs(899));
        let just_before = throttle.check(ALICE, ip("192.0.2.1")).await;
        throttle.advance_clock(secs(1));
        let after = throttle.check(ALICE, ip("192.0.2.1")).await;

        assert_eq!(retry_after(just_before), secs(1));
        assert_eq!(after, Ok(()));
    }

    #[tokio::test]
    async fn attempts_in_flight_count_towards_the_account_ceiling() {
        let keys = TestKeys::new();
        let config = ThrottleConfig {
            account_ceiling: 5,
            ..ThrottleConfig::default()
        };
        let throttle = instance(&keys, config).await;
        for i in 0..5 {
            throttle.check(ALICE, botnet(i)).await.unwrap();
        }

        let sixth = throttle.check(ALICE, botnet(5)).await;

        assert_eq!(retry_after(sixth), secs(1));
    }

    #[tokio::test]
    async fn an_ipv6_client_is_its_whole_slash_64() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        for _ in 0..4 {
            fail(&throttle, ALICE, ip("2001:db8:0:1::1")).await;
        }

        let same_network = throttle.check(ALICE, ip("2001:db8:0:1::beef")).await;
        let next_network = throttle.check(ALICE, ip("2001:db8:0:2::1")).await;

        assert!(same_network.is_err());
        assert_eq!(next_network, Ok(()));
    }

    #[tokio::test]
    async fn redis_holds_accounts_only_as_sha256_and_every_key_expires() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        succeed(&throttle, ALICE, ip("198.51.100.7")).await;
        fail(&throttle, ALICE, ip("203.0.113.9")).await;
        throttle.check(ALICE, ip("192.0.2.1")).await.unwrap();

        let stored = keys.list();
        let client = redis::Client::open(REDIS).unwrap();
        let mut connection = client.get_connection().unwrap();
        let ttls: Vec<i64> = stored
            .iter()
            .map(|key| redis::cmd("PTTL").arg(key).query(&mut connection).unwrap())
            .collect();

        let alice = hex(&AccountKey::of(ALICE));
        assert_eq!(stored.len(), 7, "{stored:?}");
        assert!(stored.iter().all(|key| !key.contains(ALICE)));
        assert!(
            stored
                .iter()
                .any(|key| key.ends_with(&format!("account:{alice}")))
        );
        assert!(ttls.iter().all(|ttl| *ttl > 0), "{ttls:?}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_local_limits_and_still_throttles() {
        let throttle = SharedThrottle::connect(
            &closed_port_url(),
            DEFAULT_PREFIX,
            ThrottleConfig::default(),
        )
        .await
        .unwrap();
        let client = ip("203.0.113.9");

        for _ in 0..4 {
            fail(&throttle, ALICE, client).await;
        }
        let fifth = throttle.check(ALICE, client).await;
        let other_client = throttle.check(ALICE, ip("198.51.100.7")).await;

        assert!(!throttle.is_shared());
        assert_eq!(retry_after(fifth), secs(1));
        assert_eq!(other_client, Ok(()));
    }

    #[tokio::test]
    async fn redis_failing_at_every_probe_still_throttles() {
        let throttle = SharedThrottle::connect(
            &closed_port_url(),
            DEFAULT_PREFIX,
            ThrottleConfig::default(),
        )
        .await
        .unwrap();
        let client = ip("203.0.113.9");

        // Every decision tries Redis first, fails, and falls back.
        for _ in 0..4 {
            throttle.set_link(Link::Down {
                probe_at: Instant::now(),
            });
            fail(&throttle, ALICE, client).await;
        }
        throttle.set_link(Link::Down {
            probe_at: Instant::now(),
        });
        let fifth = throttle.check(ALICE, client).await;

        assert_eq!(retry_after(fifth), secs(1));
    }

    #[tokio::test]
    async fn a_verdict_goes_where_its_reservation_was_made() {
        let keys = TestKeys::new();
        let first = instance(&keys, ThrottleConfig::default()).await;
        let second = instance(&keys, ThrottleConfig::default()).await;
        let (in_redis, in_memory) = (ip("203.0.113.9"), ip("198.51.100.7"));
        for _ in 0..4 {
            first.check(ALICE, in_redis).await.unwrap();
        }
        let far = Instant::now() + secs(3600);
        first.set_link(Link::Down { probe_at: far });
        for _ in 0..4 {
            first.check(ALICE, in_memory).await.unwrap();
        }
        first.set_link(Link::Up);

        for _ in 0..4 {
            first.record_failure(ALICE, in_redis).await;
            first.record_failure(ALICE, in_memory).await;
        }

        let now = Instant::now();
        assert_eq!(retry_after(second.check(ALICE, in_redis).await), secs(1));
        assert_eq!(first.local.check(ALICE, in_redis, now), Ok(()));
        assert!(first.local.check(ALICE, in_memory, now).is_err());
        assert_eq!(second.check(ALICE, in_memory).await, Ok(()));
    }

    #[tokio::test]
    async fn a_probe_that_reaches_redis_ends_the_fallback() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        let client = ip("203.0.113.9");
        let far = Instant::now() + secs(3600);

        throttle.set_link(Link::Down { probe_at: far });
        throttle.check(ALICE, client).await.unwrap();
        let before_the_probe = throttle.is_shared();
        throttle.set_link(Link::Down {
            probe_at: Instant::now(),
        });
        throttle.check(ALICE, client).await.unwrap();

        assert!(!before_the_probe);
        assert!(throttle.is_shared());
        assert_eq!(keys.list().len(), 3);
    }

    #[tokio::test]
    async fn pruning_forgets_attempts_whose_verdicts_never_came() {
        let keys = TestKeys::new();
        let throttle = instance(&keys, ThrottleConfig::default()).await;
        throttle.check(ALICE, ip("203.0.113.9")).await.unwrap();

        throttle.prune();
        let kept = throttle.lock_placements().0.len();
        throttle
            .lock_placements()
            .forget_lapsed(Instant::now() + IN_FLIGHT_TIMEOUT);
        let after_timeout = throttle.lock_placements().0.len();

        assert_eq!((kept, after_timeout), (1, 0));
    }

    #[tokio::test]
    async fn a_malformed_url_or_an_empty_prefix_is_a_startup_error() {
        let config = ThrottleConfig::default();

        let url =
            SharedThrottle::connect("http://127.0.0.1/", DEFAULT_PREFIX, config.clone()).await;
        let prefix = SharedThrottle::connect(REDIS, "", config).await;

        assert!(matches!(url, Err(SharedThrottleError::Url(_))));
        assert!(matches!(prefix, Err(SharedThrottleError::EmptyPrefix)));
    }
}

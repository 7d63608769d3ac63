//! Login throttling: whether a password attempt may be evaluated at all, decided before
//! any hash is computed. The password grant calls [`LoginThrottle::check`] first and
//! hashes only on `Ok`; it then reports the verdict with
//! [`LoginThrottle::record_failure`] or [`LoginThrottle::record_success`], or, when no
//! verdict was reached (the hashing pool was busy), hands the attempt back with
//! [`LoginThrottle::release`]. The state lives in this instance's memory; with
//! `redis_url` set, [`crate::throttle_shared`] keeps the same counters in Redis so that
//! instances behind a load balancer throttle together.
//!
//! # Policy
//!
//! Failures slow down the (account, client) pair that made them, so an attacker's
//! guesses cost the attacker's address time and never the real user's; a ceiling per
//! account stops guessing spread over many addresses, and while it holds, addresses
//! that logged in to that account successfully in the last 30 days still pass, so an
//! attacker cannot turn the ceiling into a lock-out of the real user. In detail:
//!
//! 1. Per client: at most `per_ip_per_minute` attempts a minute across all accounts,
//!    in a burst of as many (a `governor` keyed limiter).
//! 2. Per (account, client): the first `free_failures` failures cost nothing; the next
//!    one makes the pair wait 1 s before its next attempt, and each further failure
//!    doubles the wait, up to `max_delay`. A success from the pair forgets its failures.
//! 3. Per account: once `account_ceiling` failures from any clients fall within one
//!    `account_window`, the account is guarded for `account_window`: attempts from
//!    clients without a success on this account in the last 30 days are refused, while
//!    the (at most 8) most recent successful clients still pass.
//! 4. Attempts in flight: `check` reserves the attempt, and an attempt being evaluated
//!    counts as a failure until its verdict arrives. So however many requests for one
//!    pair arrive at once, at most the guesses that lock it (the free failures and the
//!    one after) are evaluated, and after them one at a time, once each wait is over
//!    (AUTH-37 (b)). Reservations never reported back lapse after 30 s.
//!
//! A client is an IPv4 address or an IPv6 /64, since anyone given IPv6 connectivity is
//! given a whole /64 to pick addresses from. An account is the username key the store
//! looks users up by; only its SHA-256 is kept, so memory per key is fixed however long
//! the submitted name.
//!
//! # Memory
//!
//! Records are forgotten when they can no longer change a decision: a pair once its
//! wait has passed and then `max_delay` more without a failure, an account once its
//! window and guard are over and its known clients are 30 days old. [`LoginThrottle::prune`]
//! sweeps them; a full table also sweeps itself. Each table holds at most 100,000 keys.
//! When a table is full even after the sweep, the least recently used records without a
//! running wait or reservation are evicted; if every record is still holding someone
//! back, new keys are refused (fail closed) rather than evicting a wait, since an
//! evicted wait is a free reset for whoever filled the table.
//!
//! # Concurrency
//!
//! One `Mutex` guards all tables. The decision reads three tables and then reserves in
//! two of them, and it must see every reservation made before it: anything finer
//! grained would let concurrent attempts pass the same check before either reserved.
//! The section holds no I/O and no `await`, only a few map operations (microseconds,
//! against the ~25 ms of the hash it guards), so contention is not worth more design.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest as _, Sha256};

/// Most keys each table (clients, pairs, accounts) holds.
const MAX_KEYS_PER_TABLE: usize = 100_000;
/// A full table is evicted down to this share of its capacity (in tenths), so that the
/// O(n) eviction pass runs once per many insertions, not on every one.
const EVICT_TO_TENTHS: usize = 9;
/// How long a success makes a client known to an account.
pub(crate) const KNOWN_GOOD_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Known clients kept per account: a person's few devices and networks.
pub(crate) const KNOWN_GOOD_PER_ACCOUNT: usize = 8;
/// A reservation never followed by a verdict (a bug or a crashed task) stops counting
/// after this; a hash takes ~25 ms plus its bounded queue, far less.
pub(crate) const IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(30);
/// `Retry-After` when a full table refuses a new key: when room will free up is
/// unknown, and an immediate retry would only spin.
pub(crate) const FULL_RETRY_AFTER: Duration = Duration::from_secs(5);
/// The client-rate table sweeps itself at most this often when full, as the sweep
/// walks the whole table.
const CLIENT_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Bounds for each setting, so that no configuration disables throttling or turns it
/// into a lock-out of absurd length (AUTH-37 (e): a 10^12 s lock is a denial of
/// service and, in Keycloak, overflowed into no lock at all).
const MAX_PER_IP_PER_MINUTE: u32 = 10_000;
const MAX_FREE_FAILURES: u32 = 100;
pub(crate) const MIN_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);
const MAX_ACCOUNT_CEILING: u32 = 1_000_000;
const MIN_ACCOUNT_WINDOW: Duration = Duration::from_secs(1);
const MAX_ACCOUNT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The throttle's settings; see the module documentation for what each one does.
/// Out-of-range values are clamped by [`ThrottleConfig::clamped`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThrottleConfig {
    /// Attempts a minute from one client across all accounts (also the burst).
    pub(crate) per_ip_per_minute: u32,
    /// Failures a pair makes before it has to wait.
    pub(crate) free_failures: u32,
    /// The longest wait a pair's failures can build up.
    pub(crate) max_delay: Duration,
    /// Failures from all clients in one window that guard the account.
    pub(crate) account_ceiling: u32,
    /// The window of `account_ceiling`, and how long the guard lasts.
    pub(crate) account_window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_ip_per_minute: 20,
            free_failures: 3,
            max_delay: Duration::from_secs(15 * 60),
            account_ceiling: 100,
            account_window: Duration::from_secs(15 * 60),
        }
    }
}

impl ThrottleConfig {
    /// The same settings brought within bounds: at least one attempt a minute and one
    /// failure per window, waits between 1 s and 24 h. Start-up can compare the result
    /// with the original to warn about a clamped value.
    pub(crate) fn clamped(&self) -> Self {
        Self {
            per_ip_per_minute: self.per_ip_per_minute.clamp(1, MAX_PER_IP_PER_MINUTE),
            free_failures: self.free_failures.min(MAX_FREE_FAILURES),
            max_delay: self.max_delay.clamp(MIN_DELAY, MAX_DELAY),
            account_ceiling: self.account_ceiling.clamp(1, MAX_ACCOUNT_CEILING),
            account_window: self
                .account_window
                .clamp(MIN_ACCOUNT_WINDOW, MAX_ACCOUNT_WINDOW),
        }
    }

    /// The wait a pair owes after `failures` failures: none for the free ones, then
    /// 1 s doubling per failure, never more than `max_delay`.
    fn delay_after(&self, failures: u32) -> Duration {
        let Some(excess) = failures.checked_sub(self.free_failures) else {
            return Duration::ZERO;
        };
        let Some(doublings) = excess.checked_sub(1) else {
            return Duration::ZERO;
        };
        // 2^40 s is far beyond any max_delay; the cap keeps the shift in range.
        let wait = Duration::from_secs(1 << doublings.min(40));
        wait.min(self.max_delay)
    }
}

// The counters live in this process; with `redis_url` set, `throttle_shared` keeps them
// in Redis instead and falls back to this while Redis does not answer.

/// An attempt refused before evaluation; answer 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Throttled {
    /// Whole seconds, at least one (RFC 9110 §10.2.3 counts in seconds).
    pub(crate) retry_after: Duration,
}

impl Throttled {
    pub(crate) fn after(wait: Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after: Duration::from_secs(seconds.max(1)),
        }
    }
}

/// Decides which login attempts may be evaluated; share it behind an `Arc`. Every
/// method takes the current time, so that tests can drive it exactly.
#[derive(Debug)]
pub(crate) struct LoginThrottle {
    config: ThrottleConfig,
    max_keys: usize,
    ledger: Mutex<Ledger>,
}

impl LoginThrottle {
    /// A throttle with `config`, clamped, and empty tables.
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Self::with_capacity(config, MAX_KEYS_PER_TABLE)
    }

    fn with_capacity(config: ThrottleConfig, max_keys: usize) -> Self {
        let config = config.clamped();
        let clock = CallerClock::default();
        let burst = NonZeroU32::new(config.per_ip_per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(burst);
        Self {
            ledger: Mutex::new(Ledger {
                epoch: None,
                clock: clock.clone(),
                clients: RateLimiter::hashmap_with_clock(quota, clock),
                last_client_sweep: None,
                pairs: HashMap::new(),
                accounts: HashMap::new(),
            }),
            config,
            max_keys: max_keys.max(1),
        }
    }

    /// Whether an attempt on `account` (the username key) from `ip` (the client
    /// address) may be evaluated now. On `Ok` the attempt is reserved: report its
    /// verdict with `record_failure`, `record_success` or `release`.
    pub(crate) fn check(&self, account: &str, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        let pair = (AccountKey::of(account), ClientKey::of(ip));
        let (account, client) = pair;
        let config = &self.config;
        let mut ledger = self.lock();
        ledger.advance_clock(now);
        ledger.forget_expired(pair, now, config);

        let known = ledger
            .accounts
            .get(&account)
            .is_some_and(|record| record.knows(client, now));
        let account_wait = match ledger.accounts.get(&account) {
            Some(record) if !known => record.stranger_wait(now, config),
            _ => None,
        };
        let pair_wait = ledger
            .pairs
            .get(&pair)
            .and_then(|record| record.wait(now, config));
        if let Some(wait) = account_wait.max(pair_wait) {
            return Err(Throttled::after(wait));
        }

        ledger.admit_client(client, now, self.max_keys)?;

        let max_keys = self.max_keys;
        if !ledger.pairs.contains_key(&pair)
            && !make_room(&mut ledger.pairs, max_keys, |record| {
                record.evictable(now, config)
            })
        {
            return Err(Throttled::after(FULL_RETRY_AFTER));
        }
        if !ledger.accounts.contains_key(&account)
            && !make_room(&mut ledger.accounts, max_keys, |record| {
                record.evictable(now, config)
            })
        {
            return Err(Throttled::after(FULL_RETRY_AFTER));
        }
        ledger
            .pairs
            .entry(pair)
            .or_insert_with(|| PairRecord::new(now))
            .reserve(now);
        ledger
            .accounts
            .entry(account)
            .or_insert_with(|| AccountRecord::new(now))
            .reservations
            .reserve(now);
        Ok(())
    }

    /// The reserved attempt was evaluated and the password was wrong (or the account
    /// unknown or disabled: the caller does not tell them apart, nor does this).
    pub(crate) fn record_failure(&self, account: &str, ip: IpAddr, now: Instant) {
        let pair = (AccountKey::of(account), ClientKey::of(ip));
        let config = &self.config;
        let max_keys = self.max_keys;
        let mut ledger = self.lock();

        // Without room the failure cannot be kept; the pair's next `check` then finds
        // the table full too and refuses, so nothing fails open.
        if ledger.pairs.contains_key(&pair)
            || make_room(&mut ledger.pairs, max_keys, |record| {
                record.evictable(now, config)
            })
        {
            let record = ledger
                .pairs
                .entry(pair)
                .or_insert_with(|| PairRecord::new(now));
            record.reservations.release();
            record.failures = record.failures.saturating_add(1);
            record.last_failure = Some(now);
            record.last_seen = now;
        }
        if let Some(record) = ledger.account_record(pair.0, now, max_keys, config) {
            record.reservations.release();
            record.count_failure(now, config);
        }
    }

    /// The reserved attempt logged in: the pair's failures are forgotten and the
    /// client becomes known to the account for 30 days.
    pub(crate) fn record_success(&self, account: &str, ip: IpAddr, now: Instant) {
        let pair = (AccountKey::of(account), ClientKey::of(ip));
        let config = &self.config;
        let max_keys = self.max_keys;
        let mut ledger = self.lock();

        ledger.pairs.remove(&pair);
        if let Some(record) = ledger.account_record(pair.0, now, max_keys, config) {
            record.reservations.release();
            record.remember(pair.1, now);
        }
    }

    /// The reserved attempt ended without a verdict (e.g. the hashing pool was busy),
    /// so it counts neither way.
    pub(crate) fn release(&self, account: &str, ip: IpAddr, now: Instant) {
        let pair = (AccountKey::of(account), ClientKey::of(ip));
        let mut ledger = self.lock();

        if let Some(record) = ledger.pairs.get_mut(&pair) {
            record.reservations.release();
            record.last_seen = now;
        }
        if let Some(record) = ledger.accounts.get_mut(&pair.0) {
            record.reservations.release();
            record.last_seen = now;
        }
    }

    /// Forgets every record that can no longer change a decision. Call it now and then
    /// (every minute is plenty); full tables also sweep themselves.
    pub(crate) fn prune(&self, now: Instant) {
        let config = &self.config;
        let mut ledger = self.lock();
        ledger.advance_clock(now);

        ledger
            .pairs
            .retain(|_, record| !record.expired(now, config));
        ledger.accounts.retain(|_, record| {
            record.forget_stale_clients(now);
            !record.expired(now, config)
        });
        ledger.clients.retain_recent();
        ledger.last_client_sweep = Some(now);
    }

    /// A poisoned lock is taken over: every update leaves the tables consistent
    /// between statements, and refusing all logins from then on would be worse.
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the throttle remembers, behind the one lock.
struct Ledger {
    /// The first `now` seen: the caller's instants are fed to `governor` as offsets
    /// from it.
    epoch: Option<Instant>,
    clock: CallerClock,
    clients: ClientLimiter,
    last_client_sweep: Option<Instant>,
    pairs: HashMap<PairKey, PairRecord>,
    accounts: HashMap<AccountKey, AccountRecord>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Ledger")
            .field("clients", &self.clients.len())
            .field("pairs", &self.pairs.len())
            .field("accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}

type ClientLimiter =
    RateLimiter<ClientKey, HashMapStateStore<ClientKey>, CallerClock, NoOpMiddleware<Nanos>>;

impl Ledger {
    /// The record of `account`, made (room permitting) when there is none; `None`
    /// when the table is full of records that must stay.
    fn account_record(
        &mut self,
        account: AccountKey,
        now: Instant,
        max_keys: usize,
        config: &ThrottleConfig,
    ) -> Option<&mut AccountRecord> {
        let present = self.accounts.contains_key(&account)
            || make_room(&mut self.accounts, max_keys, |record| {
                record.evictable(now, config)
            });
        present.then(|| {
            self.accounts
                .entry(account)
                .or_insert_with(|| AccountRecord::new(now))
        })
    }

    /// Shows `governor` the caller's `now`. Concurrent callers may arrive slightly out
    /// of order; the clock only moves forward, as `governor` expects.
    fn advance_clock(&mut self, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let offset = since(epoch, now).as_nanos();
        let offset = u64::try_from(offset).unwrap_or(u64::MAX);
        self.clock.0.fetch_max(offset, Ordering::Relaxed);
    }

    /// Rule 1, which takes one of the client's cells when it passes.
    fn admit_client(
        &mut self,
        client: ClientKey,
        now: Instant,
        max_keys: usize,
    ) -> Result<(), Throttled> {
        if self.clients.len() >= max_keys {
            let swept_lately = self
                .last_client_sweep
                .is_some_and(|swept| since(swept, now) < CLIENT_SWEEP_EVERY);
            if !swept_lately {
                self.clients.retain_recent();
                self.last_client_sweep = Some(now);
            }
            // `governor` cannot tell whether this client is already in the table, so a
            // table full of clients still within their quota refuses everyone: closed.
            if self.clients.len() >= max_keys {
                return Err(Throttled::after(FULL_RETRY_AFTER));
            }
        }
        self.clients
            .check_key(&client)
            .map_err(|not_until| Throttled::after(not_until.wait_time_from(self.clock.now())))
    }

    /// A record met again after it expired starts afresh, as if pruned.
    fn forget_expired(&mut self, pair: PairKey, now: Instant, config: &ThrottleConfig) {
        if self
            .pairs
            .get(&pair)
            .is_some_and(|record| record.expired(now, config))
        {
            self.pairs.remove(&pair);
        }
        if let Some(record) = self.accounts.get_mut(&pair.0) {
            record.forget_stale_clients(now);
            if record.expired(now, config) {
                self.accounts.remove(&pair.0);
            }
        }
    }
}

/// Makes room for one more key in a table: true when there is room (or now is).
/// Sweeps nothing while there is room; when full, evicts the least recently seen
/// records that `evictable` allows, down to nine tenths of `max_keys`.
fn make_room<K: Copy + Eq + Hash, R: Seen>(
    table: &mut HashMap<K, R>,
    max_keys: usize,
    evictable: impl Fn(&R) -> bool,
) -> bool {
    if table.len() < max_keys {
        return true;
    }
    let mut candidates: Vec<(Instant, K)> = table
        .iter()
        .filter(|(_, record)| evictable(record))
        .map(|(key, record)| (record.last_seen(), *key))
        .collect();
    let target = (max_keys * EVICT_TO_TENTHS / 10).min(max_keys - 1);
    let excess = table.len().saturating_sub(target).min(candidates.len());
    if excess > 0 && excess < candidates.len() {
        candidates.select_nth_unstable_by_key(excess, |(seen, _)| *seen);
    }
    for (_, key) in candidates.iter().take(excess) {
        table.remove(key);
    }
    table.len() < max_keys
}

/// Time from `at` to `now`; zero if callers' instants arrive out of order.
fn since(at: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(at)
}

/// When a record was last used, for least-recently-used eviction.
trait Seen {
    fn last_seen(&self) -> Instant;
}

/// An account as the throttle knows it: SHA-256 of the username key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AccountKey(pub(crate) [u8; 32]);

impl AccountKey {
    pub(crate) fn of(account: &str) -> Self {
        Self(Sha256::digest(account.as_bytes()).into())
    }
}

/// A client: an IPv4 address, or the /64 of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey(pub(crate) IpAddr);

impl ClientKey {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !u128::from(u64::MAX);
                Self(IpAddr::V6(Ipv6Addr::from(network)))
            }
            v4 => Self(v4),
        }
    }
}

pub(crate) type PairKey = (AccountKey, ClientKey);

/// Attempts reserved by `check` and not yet reported back.
#[derive(Debug, Clone, Copy, Default)]
struct Reservations {
    count: u32,
    latest: Option<Instant>,
}

impl Reservations {
    /// Reservations still counting: all of them, unless the latest is so old that
    /// their verdicts are not coming.
    fn live(&self, now: Instant) -> u32 {
        match self.latest {
            Some(latest) if since(latest, now) < IN_FLIGHT_TIMEOUT => self.count,
            _ => 0,
        }
    }

    fn reserve(&mut self, now: Instant) {
        self.count = self.live(now).saturating_add(1);
        self.latest = Some(now);
    }

    fn release(&mut self) {
        self.count = self.count.saturating_sub(1);
    }
}

/// One account's failures from one client.
#[derive(Debug)]
struct PairRecord {
    failures: u32,
    last_failure: Option<Instant>,
    reservations: Reservations,
    last_seen: Instant,
}

impl PairRecord {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            last_failure: None,
            reservations: Reservations::default(),
            last_seen: now,
        }
    }

    fn reserve(&mut self, now: Instant) {
        self.reservations.reserve(now);
        self.last_seen = now;
    }

    /// What is left of the wait the failures earned.
    fn remaining_delay(&self, now: Instant, config: &ThrottleConfig) -> Duration {
        let delay = config.delay_after(self.failures);
        let served = self.last_failure.map_or(Duration::MAX, |at| since(at, now));
        delay.saturating_sub(served)
    }

    /// Rules 2 and 4: how long this pair must wait, if at all. Attempts in flight
    /// count as failures, so they use up the free allowance before their verdicts;
    /// past it, one attempt at a time.
    fn wait(&self, now: Instant, config: &ThrottleConfig) -> Option<Duration> {
        let remaining = self.remaining_delay(now, config);
        if !remaining.is_zero() {
            return Some(remaining);
        }
        // The free failures plus the one that starts the wait: a burst evaluates
        // exactly as many guesses as lock the pair, never more.
        let allowance = config
            .free_failures
            .saturating_add(1)
            .saturating_sub(self.failures)
            .max(1);
        (self.reservations.live(now) >= allowance).then_some(MIN_DELAY)
    }

    /// No failures worth remembering: none at all, or a wait served and then
    /// `max_delay` of quiet.
    fn expired(&self, now: Instant, config: &ThrottleConfig) -> bool {
        if self.reservations.live(now) > 0 {
            return false;
        }
        match self.last_failure {
            None => true,
            Some(at) => {
                let memory = config
                    .delay_after(self.failures)
                    .saturating_add(config.max_delay);
                since(at, now) >= memory
            }
        }
    }

    /// Evicting it frees no one: no wait running, nothing in flight.
    fn evictable(&self, now: Instant, config: &ThrottleConfig) -> bool {
        self.reservations.live(now) == 0 && self.remaining_delay(now, config).is_zero()
    }
}

impl Seen for PairRecord {
    fn last_seen(&self) -> Instant {
        self.last_seen
    }
}

/// One account's failures from all clients, and the clients it trusts.
#[derive(Debug)]
struct AccountRecord {
    window_start: Instant,
    window_failures: u32,
    guarded_since: Option<Instant>,
    reservations: Reservations,
    /// Clients with a success, and when; at most `KNOWN_GOOD_PER_ACCOUNT`.
    known_good: Vec<(ClientKey, Instant)>,
    last_seen: Instant,
}

impl AccountRecord {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            window_failures: 0,
            guarded_since: None,
            reservations: Reservations::default(),
            known_good: Vec::new(),
            last_seen: now,
        }
    }

    fn knows(&self, client: ClientKey, now: Instant) -> bool {
        self.known_good
            .iter()
            .any(|(known, at)| *known == client && since(*at, now) < KNOWN_GOOD_FOR)
    }

    fn guard_remaining(&self, now: Instant, config: &ThrottleConfig) -> Duration {
        self.guarded_since.map_or(Duration::ZERO, |guarded| {
            config.account_window.saturating_sub(since(guarded, now))
        })
    }

    fn window_over(&self, now: Instant, config: &ThrottleConfig) -> bool {
        since(self.window_start, now) >= config.account_window
    }

    /// Rule 3 for a client the account does not know: refused while guarded, and
    /// while the attempts in flight could reach the ceiling before their verdicts.
    fn stranger_wait(&self, now: Instant, config: &ThrottleConfig) -> Option<Duration> {
        let remaining = self.guard_remaining(now, config);
        if !remaining.is_zero() {
            return Some(remaining);
        }
        let failures = if self.window_over(now, config) {
            0
        } else {
            self.window_failures
        };
        let pending = failures.saturating_add(self.reservations.live(now));
        (pending >= config.account_ceiling).then_some(MIN_DELAY)
    }

    fn count_failure(&mut self, now: Instant, config: &ThrottleConfig) {
        if self.window_over(now, config) {
            self.window_start = now;
            self.window_failures = 0;
        }
        self.window_failures = self.window_failures.saturating_add(1);
        self.last_seen = now;

        // The guard starts with the failure that reaches the ceiling and lasts one
        // window; the count starts over under it.
        let guarded = !self.guard_remaining(now, config).is_zero();
        if self.window_failures >= config.account_ceiling && !guarded {
            self.guarded_since = Some(now);
            self.window_start = now;
            self.window_failures = 0;
        }
    }

    /// Makes `client` known as of `now`, replacing the longest-unseen client when
    /// the list is full.
    fn remember(&mut self, client: ClientKey, now: Instant) {
        self.last_seen = now;
        if let Some(entry) = self
            .known_good
            .iter_mut()
            .find(|(known, _)| *known == client)
        {
            entry.1 = now;
            return;
        }
        if self.known_good.len() < KNOWN_GOOD_PER_ACCOUNT {
            self.known_good.push((client, now));
        } else if let Some(oldest) = self.known_good.iter_mut().min_by_key(|(_, at)| *at) {
            *oldest = (client, now);
        }
    }

    fn forget_stale_clients(&mut self, now: Instant) {
        self.known_good
            .retain(|(_, at)| since(*at, now) < KNOWN_GOOD_FOR);
    }

    /// Nothing left that changes a decision: call `forget_stale_clients` first.
    fn expired(&self, now: Instant, config: &ThrottleConfig) -> bool {
        self.known_good.is_empty() && self.evictable(now, config) && {
            self.window_failures == 0 || self.window_over(now, config)
        }
    }

    /// Evicting it frees no one: no guard running, nothing in flight. Its count and
    /// known clients are lost, which is why the least recently seen go first.
    fn evictable(&self, now: Instant, config: &ThrottleConfig) -> bool {
        self.reservations.live(now) == 0 && self.guard_remaining(now, config).is_zero()
    }
}

impl Seen for AccountRecord {
    fn last_seen(&self) -> Instant {
        self.last_seen
    }
}

/// `governor`'s clock, set from the `now` each caller passes in (under the lock), so
/// that the whole throttle runs on the caller's time: one source, and exact tests.
#[derive(Debug, Clone, Default)]
struct CallerClock(Arc<AtomicU64>);

impl Clock for CallerClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// One evaluated attempt with a wrong password.
    fn fail(throttle: &LoginThrottle, account: &str, ip: IpAddr, now: Instant) {
        throttle.check(account, ip, now).unwrap();
        throttle.record_failure(account, ip, now);
    }

    fn succeed(throttle: &LoginThrottle, account: &str, ip: IpAddr, now: Instant) {
        throttle.check(account, ip, now).unwrap();
        throttle.record_success(account, ip, now);
    }

    fn retry_after(result: Result<(), Throttled>) -> Duration {
        result.unwrap_err().retry_after
    }

    /// (clients, pairs, accounts) held in memory.
    fn table_sizes(throttle: &LoginThrottle) -> (usize, usize, usize) {
        let ledger = throttle.lock();
        (
            ledger.clients.len(),
            ledger.pairs.len(),
            ledger.accounts.len(),
        )
    }

    #[test]
    fn the_throttle_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}

        shareable::<LoginThrottle>();
    }

    #[test]
    fn the_first_three_failures_of_a_pair_cost_nothing() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let (client, now) = (ip("198.51.100.7"), Instant::now());

        for _ in 0..3 {
            fail(&throttle, ALICE, client, now);
        }

        assert_eq!(throttle.check(ALICE, client, now), Ok(()));
    }

    #[test]
    fn a_fourth_failure_from_one_ip_waits_a_second_and_each_further_one_doubles() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let client = ip("198.51.100.7");
        let mut now = Instant::now();
        for _ in 0..3 {
            fail(&throttle, ALICE, client, now);
        }

        let mut waits = Vec::new();
        for _ in 0..5 {
            fail(&throttle, ALICE, client, now);
            let wait = retry_after(throttle.check(ALICE, client, now));
            let almost = now + wait - Duration::from_millis(1);
            assert!(throttle.check(ALICE, client, almost).is_err());
            waits.push(wait.as_secs());
            now += wait;
        }

        assert_eq!(waits, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn the_wait_stops_growing_at_max_delay() {
        let config = ThrottleConfig {
            free_failures: 0,
            max_delay: secs(10),
            ..ThrottleConfig::default()
        };
        let throttle = LoginThrottle::new(config);
        let client = ip("198.51.100.7");
        let mut now = Instant::now();

        let mut waits = Vec::new();
        for _ in 0..7 {
            fail(&throttle, ALICE, client, now);
            let wait = retry_after(throttle.check(ALICE, client, now));
            waits.push(wait.as_secs());
            now += wait;
        }

        assert_eq!(waits, [1, 2, 4, 8, 10, 10, 10]);
    }

    #[test]
    fn an_attackers_failures_do_not_slow_the_real_users_ip() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let (attacker, user, now) = (ip("203.0.113.9"), ip("198.51.100.7"), Instant::now());
        for _ in 0..4 {
            fail(&throttle, ALICE, attacker, now);
        }

        let attackers_next = throttle.check(ALICE, attacker, now);
        let users_login = throttle.check(ALICE, user, now);

        assert_eq!(retry_after(attackers_next), secs(1));
        assert_eq!(users_login, Ok(()));
    }

    #[test]
    fn a_success_from_the_pair_forgets_its_failures() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let client = ip("198.51.100.7");
        let start = Instant::now();
        for _ in 0..4 {
            fail(&throttle, ALICE, client, start);
        }
        let later = start + secs(1);
        succeed(&throttle, ALICE, client, later);

        for _ in 0..3 {
            fail(&throttle, ALICE, client, later);
        }

        assert_eq!(throttle.check(ALICE, client, later), Ok(()));
    }

    #[test]
    fn one_ip_may_try_twenty_accounts_a_minute() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let (client, now) = (ip("203.0.113.9"), Instant::now());
        for i in 0..20 {
            fail(&throttle, &format!("user{i}"), client, now);
        }

        let twenty_first = throttle.check("user20", client, now);
        let after_one_cell = throttle.check("user20", client, now + secs(3));

        assert_eq!(retry_after(twenty_first), secs(3));
        assert_eq!(after_one_cell, Ok(()));
    }

    #[test]
    fn fifty_concurrent_attempts_for_one_pair_evaluate_only_the_guesses_that_lock_it() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let (client, now) = (ip("203.0.113.9"), Instant::now());

        let results: Vec<_> = (0..50)
            .map(|_| throttle.check(ALICE, client, now))
            .collect();
        let evaluated = results.iter().filter(|result| result.is_ok()).count();
        for _ in 0..evaluated {
            throttle.record_failure(ALICE, client, now);
        }

        assert_eq!(evaluated, 4);
        assert!(
            results
                .iter()
                .filter_map(|result| result.err())
                .all(|throttled| throttled.retry_after == secs(1))
        );
        // The fourth failure locked the pair: even the right password waits 1 s, and
        // the next failure after the wait doubles it.
        assert_eq!(retry_after(throttle.check(ALICE, client, now)), secs(1));
        assert_eq!(throttle.check(ALICE, client, now + secs(1)), Ok(()));
        throttle.record_failure(ALICE, client, now + secs(1));
        assert_eq!(
            retry_after(throttle.check(ALICE, client, now + secs(1))),
            secs(2)
        );
    }

    #[test]
    fn fifty_threads_at_once_evaluate_only_the_guesses_that_lock_the_pair() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let (client, now) = (ip("203.0.113.9"), Instant::now());
        let barrier = std::sync::Barrier::new(50);

        let passed = std::thread::scope(|scope| {
            let attempts: Vec<_> = (0..50)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        throttle.check(ALICE, client, now).is_ok()
                    })
                })
                .collect();
            attempts
                .into_iter()
                .map(|attempt| attempt.join())
                .filter(|passed| matches!(passed, Ok(true)))
                .count()
        });

        assert_eq!(passed, 4);
    }

    #[test]
    fn a_reservation_never_reported_back_lapses() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let (client, now) = (ip("198.51.100.7"), Instant::now());
        for _ in 0..4 {
            throttle.check(ALICE, client, now).unwrap();
        }

        let while_in_flight = throttle.check(ALICE, client, now + secs(29));
        let after_timeout = throttle.check(ALICE, client, now + IN_FLIGHT_TIMEOUT);

        assert!(while_in_flight.is_err());
        assert_eq!(after_timeout, Ok(()));
    }

    #[test]
    fn a_released_attempt_counts_neither_way() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let (client, now) = (ip("198.51.100.7"), Instant::now());
        for _ in 0..3 {
            throttle.check(ALICE, client, now).unwrap();
            throttle.release(ALICE, client, now);
        }

        for _ in 0..3 {
            fail(&throttle, ALICE, client, now);
        }

        assert_eq!(throttle.check(ALICE, client, now), Ok(()));
    }

    #[test]
    fn failures_from_many_ips_guard_the_account_against_strangers() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for i in 0..100 {
            fail(&throttle, ALICE, botnet(i), now);
        }

        let stranger = throttle.check(ALICE, ip("192.0.2.1"), now + secs(60));
        let other_account = throttle.check("bob", ip("192.0.2.1"), now + secs(60));

        assert_eq!(retry_after(stranger), secs(14 * 60));
        assert_eq!(other_account, Ok(()));
    }

    #[test]
    fn a_guarded_account_still_admits_an_ip_with_a_recent_success() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let user = ip("198.51.100.7");
        let start = Instant::now();
        succeed(&throttle, ALICE, user, start);
        let attack = start + secs(20 * 24 * 60 * 60);
        for i in 0..100 {
            fail(&throttle, ALICE, botnet(i), attack);
        }

        let users_login = throttle.check(ALICE, user, attack);
        let attackers_next = throttle.check(ALICE, botnet(0), attack);
        let fresh_attacker = throttle.check(ALICE, botnet(500), attack);

        assert_eq!(users_login, Ok(()));
        assert!(attackers_next.is_err());
        assert!(fresh_attacker.is_err());
    }

    #[test]
    fn a_success_older_than_thirty_days_does_not_pass_the_guard() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let user = ip("198.51.100.7");
        let start = Instant::now();
        succeed(&throttle, ALICE, user, start);
        let attack = start + KNOWN_GOOD_FOR;
        for i in 0..100 {
            fail(&throttle, ALICE, botnet(i), attack);
        }

        let users_login = throttle.check(ALICE, user, attack);

        assert!(users_login.is_err());
    }

    #[test]
    fn the_guard_ends_after_one_window() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for i in 0..100 {
            fail(&throttle, ALICE, botnet(i), now);
        }

        let just_before = throttle.check(ALICE, ip("192.0.2.1"), now + secs(899));
        let after = throttle.check(ALICE, ip("192.0.2.1"), now + secs(900));

        assert_eq!(retry_after(just_before), secs(1));
        assert_eq!(after, Ok(()));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_guard_the_account() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let start = Instant::now();
        for i in 0..99 {
            fail(&throttle, ALICE, botnet(i), start);
        }

        let next_window = start + secs(15 * 60);
        fail(&throttle, ALICE, botnet(99), next_window);

        assert_eq!(throttle.check(ALICE, ip("192.0.2.1"), next_window), Ok(()));
    }

    #[test]
    fn attempts_in_flight_count_towards_the_account_ceiling() {
        let config = ThrottleConfig {
            account_ceiling: 5,
            ..ThrottleConfig::default()
        };
        let throttle = LoginThrottle::new(config);
        let now = Instant::now();
        for i in 0..5 {
            throttle.check(ALICE, botnet(i), now).unwrap();
        }

        let sixth = throttle.check(ALICE, botnet(5), now);

        assert_eq!(retry_after(sixth), secs(1));
    }

    #[test]
    fn an_ipv6_client_is_its_whole_slash_64() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for _ in 0..4 {
            fail(&throttle, ALICE, ip("2001:db8:0:1::1"), now);
        }

        let same_network = throttle.check(ALICE, ip("2001:db8:0:1::beef"), now);
        let next_network = throttle.check(ALICE, ip("2001:db8:0:2::1"), now);

        assert!(same_network.is_err());
        assert_eq!(next_network, Ok(()));
    }

    #[test]
    fn an_ipv4_mapped_address_is_its_ipv4_client() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for _ in 0..4 {
            fail(&throttle, ALICE, ip("::ffff:198.51.100.7"), now);
        }

        let plain = throttle.check(ALICE, ip("198.51.100.7"), now);

        assert!(plain.is_err());
    }

    #[test]
    fn a_success_remembers_at_most_eight_clients_per_account() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let start = Instant::now();
        for i in 0..9 {
            succeed(&throttle, ALICE, botnet(i), start + secs(u64::from(i)));
        }

        let ledger = throttle.lock();
        let record = &ledger.accounts[&AccountKey::of(ALICE)];
        let now = start + secs(9);

        assert_eq!(record.known_good.len(), 8);
        assert!(!record.knows(ClientKey::of(botnet(0)), now));
        assert!(record.knows(ClientKey::of(botnet(8)), now));
    }

    #[test]
    fn pruning_forgets_what_no_longer_changes_a_decision() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let start = Instant::now();
        for i in 0..10 {
            fail(&throttle, &format!("user{i}"), botnet(i), start);
        }
        succeed(&throttle, ALICE, ip("198.51.100.7"), start);

        throttle.prune(start + secs(15 * 60));
        let after_a_while = table_sizes(&throttle);
        throttle.prune(start + KNOWN_GOOD_FOR);
        let after_thirty_days = table_sizes(&throttle);

        assert_eq!(after_a_while, (0, 0, 1));
        assert_eq!(after_thirty_days, (0, 0, 0));
    }

    #[test]
    fn a_running_wait_survives_pruning() {
        let throttle = LoginThrottle::new(ThrottleConfig::default());
        let (client, start) = (ip("203.0.113.9"), Instant::now());
        for _ in 0..4 {
            fail(&throttle, ALICE, client, start);
        }

        throttle.prune(start + Duration::from_millis(500));

        assert!(
            throttle
                .check(ALICE, client, start + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn a_stream_of_new_keys_never_grows_the_tables_past_their_cap() {
        let throttle = LoginThrottle::with_capacity(ThrottleConfig::default(), 8);
        let start = Instant::now();

        let mut largest = (0, 0, 0);
        for i in 0..200 {
            let now = start + secs(u64::from(i) * 10);
            fail(&throttle, &format!("user{i}"), botnet(i), now);
            let (clients, pairs, accounts) = table_sizes(&throttle);
            largest = (
                largest.0.max(clients),
                largest.1.max(pairs),
                largest.2.max(accounts),
            );
        }

        assert_eq!(largest, (8, 8, 8));
    }

    #[test]
    fn a_table_full_of_running_waits_refuses_new_keys_instead_of_evicting() {
        let throttle = LoginThrottle::with_capacity(ThrottleConfig::default(), 4);
        let (client, start) = (ip("203.0.113.9"), Instant::now());
        for i in 0..4 {
            for _ in 0..4 {
                fail(&throttle, &format!("user{i}"), client, start);
            }
        }

        let while_all_wait = throttle.check("user4", client, start);
        let once_the_waits_passed = throttle.check("user4", client, start + secs(1));
        let evicted_pair_next = throttle.check("user0", client, start + secs(1));

        assert_eq!(retry_after(while_all_wait), FULL_RETRY_AFTER);
        assert_eq!(once_the_waits_passed, Ok(()));
        assert_eq!(evicted_pair_next, Ok(()));
        assert!(table_sizes(&throttle).1 <= 4);
    }

    #[test]
    fn an_absurd_lock_duration_is_clamped_to_a_day_and_still_locks() {
        let config = ThrottleConfig {
            free_failures: 0,
            max_delay: secs(1_000_000_000_000),
            account_window: secs(1_000_000_000_000),
            ..ThrottleConfig::default()
        };
        let throttle = LoginThrottle::new(config);
        let client = ip("203.0.113.9");
        let mut now = Instant::now();

        let mut wait = Duration::ZERO;
        for _ in 0..40 {
            fail(&throttle, ALICE, client, now);
            wait = retry_after(throttle.check(ALICE, client, now));
            now += wait;
        }

        assert_eq!(wait, MAX_DELAY);
        assert_eq!(throttle.config.account_window, MAX_ACCOUNT_WINDOW);
    }

    #[test]
    fn settings_that_would_disable_throttling_are_clamped() {
        let config = ThrottleConfig {
            per_ip_per_minute: 0,
            free_failures: u32::MAX,
            max_delay: Duration::ZERO,
            account_ceiling: 0,
            account_window: Duration::ZERO,
        };

        let clamped = config.clamped();

        assert_eq!(
            clamped,
            ThrottleConfig {
                per_ip_per_minute: 1,
                free_failures: MAX_FREE_FAILURES,
                max_delay: MIN_DELAY,
                account_ceiling: 1,
                account_window: MIN_ACCOUNT_WINDOW,
            }
        );
        assert_eq!(
            ThrottleConfig::default().clamped(),
            ThrottleConfig::default()
        );
    }

    #[test]
    fn a_huge_failure_count_waits_max_delay_without_overflow() {
        let config = ThrottleConfig::default();

        let waits = [64, 1_000, u32::MAX].map(|failures| config.delay_after(failures));

        assert_eq!(waits, [config.max_delay; 3]);
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let waits = [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_millis(1_200),
            secs(3),
        ];

        let answers = waits.map(|wait| Throttled::after(wait).retry_after);

        assert_eq!(answers, [secs(1), secs(1), secs(2), secs(3)]);
    }
}

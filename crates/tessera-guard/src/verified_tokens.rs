//! The guard's cache of verified tokens: a client sends the same access token with every
//! request for up to its whole lifetime, and the signature check (~50 µs for Ed25519) is
//! nearly all of what a protected request costs, so a token whose signature and claims
//! have passed once is remembered, keyed by the whole token string.
//!
//! A hit only skips the signature and the parsing: [`crate::Guard`] still checks the
//! clock rules (`exp`, `nbf`, `iat` with the validator's leeway) and the ended sessions
//! on every request. Each cache belongs to one trusted key set; when a key leaves the
//! set, the guard starts an empty cache, so no token signed by it is served from here.
//!
//! Memory stays bounded: a fixed number of entries, tokens longer than
//! [`MAX_CACHED_TOKEN_BYTES`] are not kept, expired entries are dropped when room is
//! needed, and when the cache is full of live tokens a new one is simply not kept.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tessera_token::{AccessClaims, MAX_LEEWAY_SECS};

/// Entries held by default: about 6 MiB at most with tokens of the longest kept size.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 4096;
/// Longest token kept, in bytes. Tessera's access tokens are under 600 bytes; a longer
/// token is validated in full every time rather than let one entry cost more memory.
pub const MAX_CACHED_TOKEN_BYTES: usize = 1024;
/// Independent locks, so that requests on different cores rarely wait for each other.
const SHARDS: usize = 16;
/// A full shard looks for expired entries at most this often, so that a cache full of
/// live tokens does not scan itself on every miss.
const SWEEP_EVERY_SECS: i64 = 1;

/// Tokens whose signature and claims have been verified, with their claims.
pub(crate) struct VerifiedTokens {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    /// Keyed by the whole token under foldhash, seeded at random per shard: several
    /// times faster than SipHash over a 500-byte token, and only tokens whose
    /// signature verified are ever inserted, so no client chooses the keys.
    claims: HashMap<Box<[u8]>, AccessClaims, foldhash::fast::RandomState>,
    /// When this shard may next look for expired entries (Unix seconds).
    next_sweep: i64,
}

impl VerifiedTokens {
    /// A cache of about `capacity` entries; 0 keeps nothing.
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        Self {
            shards,
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    /// An empty cache of the same capacity.
    pub(crate) fn emptied(&self) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: self.per_shard,
        }
    }

    /// The claims of `token` if it was verified before.
    pub(crate) fn get(&self, token: &[u8]) -> Option<AccessClaims> {
        if self.per_shard == 0 || token.len() > MAX_CACHED_TOKEN_BYTES {
            return None;
        }
        self.shard(token).claims.get(token).cloned()
    }

    /// Remembers that `token` passed validation with `claims`, if there is room.
    pub(crate) fn insert(&self, token: &str, claims: &AccessClaims, now: i64) {
        if self.per_shard == 0 || token.len() > MAX_CACHED_TOKEN_BYTES {
            return;
        }
        let mut shard = self.shard(token.as_bytes());
        if shard.claims.len() >= self.per_shard && now >= shard.next_sweep {
            shard.next_sweep = now.saturating_add(SWEEP_EVERY_SECS);
            // The widest leeway any validator allows: past it no validator accepts the
            // token, whatever leeway this one was given.
            let leeway = i64::try_from(MAX_LEEWAY_SECS).unwrap_or(i64::MAX);
            shard
                .claims
                .retain(|_, claims| now < claims.exp.saturating_add(leeway));
        }
        if shard.claims.len() < self.per_shard {
            shard.claims.insert(token.as_bytes().into(), claims.clone());
        }
    }

    /// How many tokens are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        (0..SHARDS)
            .map(|index| {
                self.shards[index]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .claims
                    .len()
            })
            .sum()
    }

    /// The shard of `token`, chosen by its last character: a character of the
    /// signature, spread evenly over the base64url alphabet by the signing algorithm,
    /// so no second hash of the whole string is needed.
    fn shard(&self, token: &[u8]) -> MutexGuard<'_, Shard> {
        let last = token.last().copied().unwrap_or(0);
        // Each operation is one lookup, insert or retain, so a panic elsewhere while a
        // lock was held cannot leave a shard half-changed: poisoning is ignored.
        self.shards[usize::from(last) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Never the tokens: they are bearer credentials.
impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("capacity", &self.per_shard.saturating_mul(SHARDS))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_token::Audience;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://auth.example".to_owned(),
            sub: "user".to_owned(),
            aud: Audience::One("tessera".to_owned()),
            exp,
            iat: exp - 900,
            nbf: exp - 900,
            jti: "jti".to_owned(),
            sid: "session".to_owned(),
            scope: None,
            roles: Vec::new(),
        }
    }

    /// A token-like string whose last character picks shard `shard`.
    fn token(number: usize, shard: usize) -> String {
        let last = (b'A'..=b'z')
            .find(|byte| usize::from(*byte) % SHARDS == shard)
            .map_or('A', char::from);
        format!("header.claims{number}.signature{last}")
    }

    #[test]
    fn a_full_cache_keeps_no_more_tokens() {
        let cache = VerifiedTokens::new(SHARDS * 2);

        for number in 0..10 {
            cache.insert(&token(number, 3), &claims(2_000_000_000), 1_900_000_000);
        }

        assert_eq!(cache.len(), 2);
        assert!(cache.get(token(0, 3).as_bytes()).is_some());
        assert!(cache.get(token(9, 3).as_bytes()).is_none());
    }

    #[test]
    fn expired_entries_make_room_for_new_ones() {
        let cache = VerifiedTokens::new(SHARDS);
        let now = 1_900_000_000;
        cache.insert(&token(1, 5), &claims(now + 60), now);

        let leeway = i64::try_from(MAX_LEEWAY_SECS).unwrap();
        cache.insert(&token(2, 5), &claims(now + 900), now + 60 + leeway);

        assert!(cache.get(token(1, 5).as_bytes()).is_none());
        assert!(cache.get(token(2, 5).as_bytes()).is_some());
    }

    #[test]
    fn long_tokens_are_not_kept() {
        let cache = VerifiedTokens::new(64);
        let long = format!("{}.x.y", "a".repeat(MAX_CACHED_TOKEN_BYTES));

        cache.insert(&long, &claims(2_000_000_000), 1_900_000_000);

        assert_eq!(cache.len(), 0);
        assert!(cache.get(long.as_bytes()).is_none());
    }

    #[test]
    fn a_cache_of_capacity_zero_keeps_nothing() {
        let cache = VerifiedTokens::new(0);

        cache.insert("a.b.c", &claims(2_000_000_000), 1_900_000_000);

        assert!(cache.get(b"a.b.c").is_none());
    }

    #[test]
    fn debug_output_shows_no_token() {
        let cache = VerifiedTokens::new(64);
        cache.insert("secret.token.value", &claims(2_000_000_000), 1_900_000_000);

        let shown = format!("{cache:?}");

        assert!(!shown.contains("secret"), "{shown}");
    }
}

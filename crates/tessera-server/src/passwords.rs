//! Password hashing: Argon2id with OWASP's parameters, computed on the blocking pool and
//! never more at once than there are cores, so a login flood queues here instead of
//! starving the async workers that check tokens. The queue is bounded too: past it a
//! caller is turned away at once with [`PasswordError::Busy`] (answer 503 with
//! `Retry-After`) instead of waiting behind a flood and holding its connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tessera_token::Secret;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// OWASP Password Storage Cheat Sheet, Argon2id: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Callers allowed to wait per hashing thread when no queue length is given: at
/// ~25 ms a hash, a full queue drains in about 1.6 s.
const DEFAULT_QUEUE_PER_THREAD: usize = 64;

/// Verified instead of a real hash when the username is unknown, so that an unknown
/// user costs the same time as a wrong password. Its digest is random bytes, not the
/// hash of any password, so nothing verifies against it.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$\
    c2FsdHNhbHRzYWx0c2FsdA$ZbE3bJ6VKeMZbRvb8cY0oCFcMdFDc5rXdk4U7bDuU6Y";

/// Why no hash was computed. `hash` and `verify` return it inside their
/// `anyhow::Error`; find it with `error.downcast_ref::<PasswordError>()`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PasswordError {
    /// Every hashing thread is busy and the queue is full: try again shortly.
    #[error("password hashing is busy; try again shortly")]
    Busy,
}

impl PasswordError {
    /// Whether the caller should be told to come back later (503 with `Retry-After`).
    pub(crate) fn is_busy(&self) -> bool {
        matches!(self, Self::Busy)
    }
}

/// Hashes and verifies passwords, a bounded number at a time, with a bounded number
/// waiting.
#[derive(Debug, Clone)]
pub struct Passwords {
    /// Callers admitted: computing or waiting to compute (`parallel + queue`).
    admitted: Arc<Semaphore>,
    /// Hashes computing at once (`parallel`).
    computing: Arc<Semaphore>,
    hashes: Arc<AtomicU64>,
    verifications: Arc<AtomicU64>,
}

impl Passwords {
    /// At most `parallel` hashes run at once, and `64 × parallel` callers wait.
    pub fn new(parallel: usize) -> Self {
        let parallel = parallel.max(1);
        Self::with_queue(parallel, parallel.saturating_mul(DEFAULT_QUEUE_PER_THREAD))
    }

    /// At most `parallel` hashes run at once and at most `queue` callers wait for
    /// one of them; any further caller gets [`PasswordError::Busy`] at once.
    pub(crate) fn with_queue(parallel: usize, queue: usize) -> Self {
        let parallel = parallel.clamp(1, Semaphore::MAX_PERMITS);
        let admitted = parallel.saturating_add(queue).min(Semaphore::MAX_PERMITS);
        Self {
            admitted: Arc::new(Semaphore::new(admitted)),
            computing: Arc::new(Semaphore::new(parallel)),
            hashes: Arc::new(AtomicU64::new(0)),
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The PHC string of a fresh Argon2id hash of `password`.
    pub async fn hash(&self, password: Secret<String>) -> anyhow::Result<String> {
        let hashes = Arc::clone(&self.hashes);
        self.run(move || {
            hashes.fetch_add(1, Ordering::Relaxed);
            argon2()?
                .hash_password(password.expose().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))
        })
        .await
    }

    /// Whether `password` matches `hash`; with no hash, a dummy is verified so that
    /// the answer takes as long as for a real user.
    pub async fn verify(
        &self,
        password: Secret<String>,
        hash: Option<String>,
    ) -> anyhow::Result<bool> {
        let verifications = Arc::clone(&self.verifications);
        self.run(move || {
            let hash = hash.as_deref().unwrap_or(DUMMY_HASH);
            verifications.fetch_add(1, Ordering::Relaxed);
            let matches = argon2()?
                .verify_password(password.expose().as_bytes(), hash)
                .is_ok();
            Ok(matches)
        })
        .await
    }

    /// Hashes computed since start (sign-up, password change), for metrics and tests.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by tests; metrics will read it")
    )]
    pub(crate) fn hashes_computed(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    /// Verifications computed since start, the dummy ones included: one per
    /// evaluated login, whether or not the user exists.
    pub(crate) fn verifications_computed(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let admission = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| anyhow::Error::new(PasswordError::Busy))?;
        let computing = Arc::clone(&self.computing)
            .acquire_owned()
            .await
            .context("password pool closed")?;
        // The permits move into the blocking task: a caller that goes away (client
        // disconnected, request timed out) cannot free them while the hash still
        // runs, or more than `parallel` hashes would run at once.
        let permits: (OwnedSemaphorePermit, OwnedSemaphorePermit) = (admission, computing);
        tokio::task::spawn_blocking(move || {
            let _permits = permits;
            work()
        })
        .await
        .context("password task failed")?
    }
}

fn argon2() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret<String> {
        Secret::new(text.to_owned())
    }

    #[tokio::test]
    async fn a_hash_verifies_its_own_password_only() {
        let passwords = Passwords::new(2);

        let hash = passwords.hash(secret("correct horse")).await.unwrap();

        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            passwords
                .verify(secret("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify(secret("wrong horse"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_dummy_hash_uses_the_same_parameters_and_matches_nothing() {
        let passwords = Passwords::new(1);
        let fresh = passwords.hash(secret("anything")).await.unwrap();
        let params = |hash: &str| hash.split('$').nth(3).map(str::to_owned);

        assert_eq!(params(DUMMY_HASH), params(&fresh));
        assert!(!passwords.verify(secret("password"), None).await.unwrap());
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[tokio::test]
    async fn an_unknown_user_costs_exactly_one_verification_like_a_known_one() {
        let passwords = Passwords::new(1);
        let hash = passwords.hash(secret("correct horse")).await.unwrap();

        passwords.verify(secret("guess"), None).await.unwrap();
        let after_unknown = passwords.verifications_computed();
        passwords.verify(secret("guess"), Some(hash)).await.unwrap();
        let after_known = passwords.verifications_computed();

        assert_eq!(after_unknown, 1);
        assert_eq!(after_known, 2);
        assert_eq!(passwords.hashes_computed(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_turns_callers_away_without_computing() {
        let passwords = Passwords::with_queue(1, 1);
        // A hash in progress, as `run` would hold it: admitted and computing.
        let running = (
            Arc::clone(&passwords.admitted).try_acquire_owned().unwrap(),
            Arc::clone(&passwords.computing)
                .try_acquire_owned()
                .unwrap(),
        );
        let queued = tokio::spawn({
            let passwords = passwords.clone();
            async move { passwords.verify(secret("guess"), None).await }
        });
        while passwords.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }

        let turned_away = passwords.verify(secret("guess"), None).await;
        let turned_away_hash = passwords.hash(secret("new password")).await;
        drop(running);
        let queued = queued.await.unwrap();

        let error = turned_away.unwrap_err();
        assert_eq!(
            error.downcast_ref::<PasswordError>(),
            Some(&PasswordError::Busy)
        );
        assert!(turned_away_hash.unwrap_err().is::<PasswordError>());
        assert!(!queued.unwrap());
        assert_eq!(passwords.verifications_computed(), 1);
        assert_eq!(passwords.hashes_computed(), 0);
    }

    #[tokio::test]
    async fn a_drained_queue_admits_callers_again() {
        let passwords = Passwords::with_queue(1, 0);
        let running = (
            Arc::clone(&passwords.admitted).try_acquire_owned().unwrap(),
            Arc::clone(&passwords.computing)
                .try_acquire_owned()
                .unwrap(),
        );
        let while_busy = passwords.verify(secret("guess"), None).await;

        drop(running);
        let after = passwords.verify(secret("guess"), None).await;

        assert!(while_busy.unwrap_err().is::<PasswordError>());
        assert!(!after.unwrap());
        assert_eq!(passwords.verifications_computed(), 1);
    }

    #[test]
    fn the_default_queue_holds_sixty_four_callers_per_thread() {
        let passwords = Passwords::new(2);

        assert_eq!(passwords.computing.available_permits(), 2);
        assert_eq!(passwords.admitted.available_permits(), 2 + 128);
    }
}

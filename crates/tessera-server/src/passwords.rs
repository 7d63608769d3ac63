//! Password hashing: Argon2id with OWASP's parameters, on a few threads of its own, one
//! per core, each reusing one 19 MiB block of memory for every hash. A login flood
//! queues here instead of starving the async workers that check tokens, and memory stays
//! at threads × 19 MiB instead of growing with every allocator arena that once held a
//! hash. The queue is bounded too: past it a caller is turned away at once with
//! [`PasswordError::Busy`] (answer 503 with `Retry-After`) instead of waiting behind a
//! flood and holding its connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use anyhow::Context as _;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tessera_token::Secret;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// OWASP Password Storage Cheat Sheet, Argon2id: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;
/// Salt and digest lengths, in bytes (the argon2 crate's recommendations).
const SALT_BYTES: usize = 16;
const DIGEST_BYTES: usize = 32;

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

/// One piece of work for a hashing thread.
enum Work {
    Hash(Secret<String>),
    Verify(Secret<String>, Option<String>),
}

/// What a hashing thread answers.
enum Outcome {
    Hashed(String),
    Verified(bool),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<anyhow::Result<Outcome>>,
    /// Held until the work is done, even if the caller has gone: the queue bound
    /// counts work, not waiting callers.
    _admission: OwnedSemaphorePermit,
}

/// Hashes and verifies passwords on a fixed set of threads, with a bounded number of
/// callers waiting.
#[derive(Debug, Clone)]
pub struct Passwords {
    /// Callers admitted: computing or waiting to compute (`threads + queue`).
    admitted: Arc<Semaphore>,
    /// How many may be admitted at once, and how many of them compute at once.
    capacity: usize,
    threads: usize,
    jobs: mpsc::Sender<Job>,
    hashes: Arc<AtomicU64>,
    verifications: Arc<AtomicU64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Passwords {
    /// `threads` hashing threads, and `64 × threads` callers may wait.
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let threads = threads.max(1);
        Self::with_queue(threads, threads.saturating_mul(DEFAULT_QUEUE_PER_THREAD))
    }

    /// `threads` hashing threads, and at most `queue` callers waiting for one of them;
    /// any further caller gets [`PasswordError::Busy`] at once.
    pub(crate) fn with_queue(threads: usize, queue: usize) -> anyhow::Result<Self> {
        let threads = threads.clamp(1, 64);
        let admitted = threads.saturating_add(queue).min(Semaphore::MAX_PERMITS);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let hashes = Arc::new(AtomicU64::new(0));
        let verifications = Arc::new(AtomicU64::new(0));
        for index in 0..threads {
            let worker = Worker {
                jobs: Arc::clone(&receiver),
                memory: Vec::new(),
                hashes: Arc::clone(&hashes),
                verifications: Arc::clone(&verifications),
            };
            std::thread::Builder::new()
                .name(format!("tessera-hash-{index}"))
                .spawn(move || {
                    if index > 0 {
                        hash_only_when_idle();
                    }
                    worker.run();
                })
                .context("cannot start a password hashing thread")?;
        }
        Ok(Self {
            admitted: Arc::new(Semaphore::new(admitted)),
            capacity: admitted,
            threads,
            jobs,
            hashes,
            verifications,
        })
    }

    /// The PHC string of a fresh Argon2id hash of `password`.
    pub async fn hash(&self, password: Secret<String>) -> anyhow::Result<String> {
        match self.submit(Work::Hash(password)).await? {
            Outcome::Hashed(hash) => Ok(hash),
            Outcome::Verified(_) => anyhow::bail!("hashing thread answered a verification"),
        }
    }

    /// Whether `password` matches `hash`; with no hash, a dummy is verified so that
    /// the answer takes as long as for a real user.
    pub async fn verify(
        &self,
        password: Secret<String>,
        hash: Option<String>,
    ) -> anyhow::Result<bool> {
        match self.submit(Work::Verify(password, hash)).await? {
            Outcome::Verified(matches) => Ok(matches),
            Outcome::Hashed(_) => anyhow::bail!("hashing thread answered a hash"),
        }
    }

    /// Hashes computed since start (sign-up, password change), for metrics and tests.
    pub(crate) fn hashes_computed(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    /// Verifications computed since start, the dummy ones included: one per
    /// evaluated login, whether or not the user exists.
    pub(crate) fn verifications_computed(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Callers waiting for a hashing thread right now (those being computed not
    /// counted), for the queue-depth gauge.
    pub(crate) fn queue_depth(&self) -> usize {
        let admitted = self
            .capacity
            .saturating_sub(self.admitted.available_permits());
        admitted.saturating_sub(self.threads)
    }

    async fn submit(&self, work: Work) -> anyhow::Result<Outcome> {
        let admission = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| anyhow::Error::new(PasswordError::Busy))?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                work,
                reply,
                _admission: admission,
            })
            .map_err(|_| anyhow::anyhow!("password hashing threads have stopped"))?;
        answer
            .await
            .context("a password hashing thread stopped mid-work")?
    }
}

/// One hashing thread: takes jobs until every `Passwords` handle is gone.
struct Worker {
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// Argon2's working memory, allocated once and reused by every hash.
    memory: Vec<Block>,
    hashes: Arc<AtomicU64>,
    verifications: Arc<AtomicU64>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let job = match self.jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => return,
            };
            let Ok(job) = job else {
                return;
            };
            let outcome = match job.work {
                Work::Hash(password) => {
                    self.hashes.fetch_add(1, Ordering::Relaxed);
                    self.hash(&password).map(Outcome::Hashed)
                }
                Work::Verify(password, hash) => {
                    self.verifications.fetch_add(1, Ordering::Relaxed);
                    let hash = hash.as_deref().unwrap_or(DUMMY_HASH);
                    self.verify(&password, hash).map(Outcome::Verified)
                }
            };
            // The caller may have gone; the work is done either way.
            let _ = job.reply.send(outcome);
        }
    }

    fn hash(&mut self, password: &Secret<String>) -> anyhow::Result<String> {
        let params = params()?;
        let mut salt = [0u8; SALT_BYTES];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut digest = [0u8; DIGEST_BYTES];
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let memory = self.memory_for(&params);
        argon2
            .hash_password_into_with_memory(
                password.expose().as_bytes(),
                &salt,
                &mut digest,
                memory,
            )
            .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)
                .map_err(|error| anyhow::anyhow!("parameters: {error}"))?,
            salt: Some(Salt::new(&salt).map_err(|error| anyhow::anyhow!("salt: {error}"))?),
            hash: Some(Output::new(&digest).map_err(|error| anyhow::anyhow!("digest: {error}"))?),
        };
        Ok(phc.to_string())
    }

    /// Recomputes the hash with the stored hash's own algorithm, version, parameters
    /// and salt, and compares in constant time.
    fn verify(&mut self, password: &Secret<String>, stored: &str) -> anyhow::Result<bool> {
        let parsed = PasswordHash::new(stored)
            .map_err(|error| anyhow::anyhow!("stored hash is not a PHC string: {error}"))?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
            .map_err(|error| anyhow::anyhow!("stored hash algorithm: {error}"))?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|error| anyhow::anyhow!("stored hash version: {error}"))?
            .unwrap_or_default();
        let params = Params::try_from(&parsed)
            .map_err(|error| anyhow::anyhow!("stored hash parameters: {error}"))?;
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            anyhow::bail!("stored hash has no salt or digest");
        };
        let mut digest = vec![0u8; expected.len()];
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let memory = self.memory_for(&params);
        if argon2
            .hash_password_into_with_memory(
                password.expose().as_bytes(),
                salt.as_ref(),
                &mut digest,
                memory,
            )
            .is_err()
        {
            // An input argon2 refuses (a password too long, say) matches nothing.
            return Ok(false);
        }
        let computed = Output::new(&digest).map_err(|error| anyhow::anyhow!("digest: {error}"))?;
        // `Output` compares in constant time.
        Ok(computed == *expected)
    }

    /// The reused working memory, grown (once) when a stored hash asks for more.
    fn memory_for(&mut self, params: &Params) -> &mut [Block] {
        let blocks = params.block_count();
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        &mut self.memory[..blocks]
    }
}

/// Puts the calling hashing thread under `SCHED_IDLE` (Linux only): it then runs only
/// when no other thread wants its core, and a woken worker takes the core at once. At
/// normal priority, even niced, a login flood keeps every core busy and a protected
/// request waits for the end of a hashing time slice (p99 0.2 ms idle, 2.4 ms during the
/// flood, on two cores; 0.25 ms with every hashing thread idle-scheduled). With all
/// threads but the first idle-scheduled, the kernel places a woken worker on a core
/// whose hashing gives way, while the first thread keeps logins going at a normal share
/// when other work fills the machine. A refusal costs only latency, so it is logged,
/// not fatal.
fn hash_only_when_idle() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let set = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            idle,
        );
        if let Err(error) = set {
            tracing::warn!(%error, "cannot give a password hashing thread the idle policy");
        }
    }
}

fn params() -> anyhow::Result<Params> {
    Params::new(MEMORY_KIB, PASSES, LANES, Some(DIGEST_BYTES))
        .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret<String> {
        Secret::new(text.to_owned())
    }

    #[tokio::test]
    async fn a_hash_verifies_its_own_password_only() {
        let passwords = Passwords::new(2).unwrap();

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
        let passwords = Passwords::new(1).unwrap();
        let fresh = passwords.hash(secret("anything")).await.unwrap();
        let params = |hash: &str| hash.split('$').nth(3).map(str::to_owned);

        assert_eq!(params(DUMMY_HASH), params(&fresh));
        assert!(!passwords.verify(secret("password"), None).await.unwrap());
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[tokio::test]
    async fn an_unknown_user_costs_exactly_one_verification_like_a_known_one() {
        let passwords = Passwords::new(1).unwrap();
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
        let passwords = Passwords::with_queue(1, 1).unwrap();
        // Every admission taken, as by one hash running and one waiting.
        let full = Arc::clone(&passwords.admitted)
            .try_acquire_many_owned(2)
            .unwrap();

        let turned_away = passwords.verify(secret("guess"), None).await;
        let turned_away_hash = passwords.hash(secret("new password")).await;
        drop(full);
        let admitted_again = passwords.verify(secret("guess"), None).await;

        let error = turned_away.unwrap_err();
        assert_eq!(
            error.downcast_ref::<PasswordError>(),
            Some(&PasswordError::Busy)
        );
        assert!(turned_away_hash.unwrap_err().is::<PasswordError>());
        assert!(!admitted_again.unwrap());
        assert_eq!(passwords.verifications_computed(), 1);
        assert_eq!(passwords.hashes_computed(), 0);
    }

    #[tokio::test]
    async fn hashes_are_standard_phc_strings_the_argon2_crate_verifies() {
        use argon2::password_hash::PasswordVerifier as _;
        let passwords = Passwords::new(1).unwrap();

        let hash = passwords.hash(secret("correct horse")).await.unwrap();

        let standard = Argon2::default();
        assert!(
            standard
                .verify_password(b"correct horse", hash.as_str())
                .is_ok()
        );
        assert!(
            standard
                .verify_password(b"wrong horse", hash.as_str())
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_hash_made_with_other_parameters_still_verifies() {
        use argon2::password_hash::PasswordHasher as _;
        let passwords = Passwords::new(1).unwrap();
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32 * 1024, 3, 1, None).unwrap(),
        );
        let stored = other.hash_password(b"correct horse").unwrap().to_string();

        let right = passwords
            .verify(secret("correct horse"), Some(stored.clone()))
            .await;
        let wrong = passwords.verify(secret("wrong horse"), Some(stored)).await;

        assert!(right.unwrap());
        assert!(!wrong.unwrap());
    }

    #[test]
    fn the_default_queue_holds_sixty_four_callers_per_thread() {
        let passwords = Passwords::new(2).unwrap();

        assert_eq!(passwords.admitted.available_permits(), 2 + 128);
    }
}

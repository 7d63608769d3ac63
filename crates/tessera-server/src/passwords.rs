//! Password hashing: Argon2id with OWASP's parameters, on a few threads of its own, one
//! per core, each reusing one 19 MiB block of memory for every hash. A login flood
//! queues here instead of starving the async workers that check tokens, and memory stays
//! at threads × 19 MiB instead of growing with every allocator arena that once held a
//! hash. The queue is bounded too: past it a caller is turned away at once with
//! [`PasswordError::Busy`] (answer 503 with `Retry-After`) instead of waiting behind a
//! flood and holding its connection.
//!
//! Hashing gives way to request handling: every hashing thread runs under Linux's
//! `SCHED_IDLE`, so a woken async worker takes its core at once and a login flood does
//! not delay token checks. Under `SCHED_IDLE` a thread gets almost no CPU while other
//! work fills the machine, so a supervisor thread watches the jobs in progress and lifts
//! a thread that has been on one job far longer than a hash takes back to normal
//! priority until that job is done: logins slow down under load but never stall.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::time::{Duration, Instant};

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

/// How often the supervisor looks for starved hashing threads.
const SUPERVISION_TICK: Duration = Duration::from_millis(50);
/// A job is starved once it has run this many times as long as the fastest hash seen...
const PATIENCE_FACTOR: u64 = 4;
/// ...and at least this long, so that a hash slowed only by request handling, or by
/// larger parameters of an older stored hash, stays idle-scheduled.
const MIN_PATIENCE: Duration = Duration::from_millis(100);

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
    /// The hashing threads' shared state, which tests inspect.
    #[cfg(test)]
    crew: Arc<Crew>,
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
        let crew = Arc::new(Crew::new(threads));
        let scheduling = start_supervisor(Arc::downgrade(&crew))?;
        for index in 0..threads {
            let worker = Worker {
                jobs: Arc::clone(&receiver),
                memory: Vec::new(),
                hashes: Arc::clone(&hashes),
                verifications: Arc::clone(&verifications),
                crew: Arc::clone(&crew),
                index,
                scheduling,
            };
            std::thread::Builder::new()
                .name(format!("tessera-hash-{index}"))
                .spawn(move || worker.run())
                .context("cannot start a password hashing thread")?;
        }
        Ok(Self {
            admitted: Arc::new(Semaphore::new(admitted)),
            capacity: admitted,
            threads,
            jobs,
            hashes,
            verifications,
            #[cfg(test)]
            crew,
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

    /// Times a starved hashing thread was lifted to normal priority, for tests.
    #[cfg(test)]
    pub(crate) fn lifts(&self) -> u64 {
        self.crew.lifts.load(Ordering::Relaxed)
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
    crew: Arc<Crew>,
    /// This thread's place in `crew.threads`.
    index: usize,
    scheduling: Scheduling,
}

impl Worker {
    fn run(mut self) {
        self.take_policy();
        loop {
            let job = match self.jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => return,
            };
            let Ok(job) = job else {
                return;
            };
            let started = self.begin_job();
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
            self.end_job(started);
            // The caller may have gone; the work is done either way.
            let _ = job.reply.send(outcome);
        }
    }

    /// Sets the scheduling this thread starts with, and makes it known to the supervisor.
    fn take_policy(&self) {
        match self.scheduling {
            Scheduling::IdleLiftedWhenStarved => {
                if let Some(slot) = self.crew.threads.get(self.index) {
                    let _ = slot.native.set(sched::current());
                }
            }
            Scheduling::IdleButFirst if self.index > 0 => {
                if let Err(error) = sched::set_idle(sched::current()) {
                    warn_once(
                        &error,
                        "cannot give a password hashing thread the idle policy",
                    );
                }
            }
            Scheduling::IdleButFirst | Scheduling::Unchanged => {}
        }
    }

    /// Publishes the job's start for the supervisor, then goes under `SCHED_IDLE`: in
    /// this order, a thread starved as soon as it gives way is already seen as busy.
    fn begin_job(&self) -> Instant {
        let started = Instant::now();
        if self.scheduling != Scheduling::IdleLiftedWhenStarved {
            return started;
        }
        if let Some(slot) = self.crew.threads.get(self.index) {
            slot.job_started
                .store(self.crew.since_epoch(started), Ordering::Release);
        }
        if let Err(error) = sched::set_idle(sched::current()) {
            warn_once(
                &error,
                "cannot give a password hashing thread the idle policy",
            );
        }
        started
    }

    /// Back at normal priority before the job is marked done and the thread waits for
    /// the next one: a thread woken under `SCHED_IDLE` on a busy machine could sit
    /// unseen, holding a job it has not yet marked as started.
    fn end_job(&self, started: Instant) {
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.crew.fastest_job.fetch_min(took, Ordering::Relaxed);
        if self.scheduling != Scheduling::IdleLiftedWhenStarved {
            return;
        }
        if let Err(error) = sched::set_normal(sched::current()) {
            warn_once(&error, "cannot lift a password hashing thread");
        }
        if let Some(slot) = self.crew.threads.get(self.index) {
            slot.job_started.store(0, Ordering::Release);
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

/// How the hashing threads are scheduled, decided once when `Passwords` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheduling {
    /// Every thread runs under `SCHED_IDLE`; the supervisor lifts a starved one to
    /// normal priority until its job ends.
    IdleLiftedWhenStarved,
    /// The kernel lets a thread into `SCHED_IDLE` but not back out (no `CAP_SYS_NICE`
    /// and an `RLIMIT_NICE` of 0, the default for an unprivileged service): the first
    /// thread stays at normal priority so that logins keep a share of a busy machine.
    IdleButFirst,
    /// Threads keep the scheduling they start with: not Linux, the kernel refused
    /// `SCHED_IDLE`, or the service runs under a policy other than `SCHED_OTHER`, which
    /// the operator chose.
    Unchanged,
}

/// What the hashing threads publish and the supervisor reads.
#[derive(Debug)]
struct Crew {
    /// Origin of the job start times below.
    epoch: Instant,
    threads: Vec<HashingThread>,
    /// Duration of the fastest job so far, in nanoseconds: what a hash costs with a core
    /// to itself, which waiting for a core never shortens.
    fastest_job: AtomicU64,
    /// Times a starved thread was lifted to normal priority.
    lifts: AtomicU64,
}

#[derive(Debug)]
struct HashingThread {
    /// The thread's handle for changing its policy, once it has started.
    native: OnceLock<sched::NativeId>,
    /// When the current job started, in nanoseconds since `Crew::epoch`; 0 between jobs.
    job_started: AtomicU64,
}

impl Crew {
    fn new(threads: usize) -> Self {
        Self {
            epoch: Instant::now(),
            threads: (0..threads)
                .map(|_| HashingThread {
                    native: OnceLock::new(),
                    job_started: AtomicU64::new(0),
                })
                .collect(),
            fastest_job: AtomicU64::new(u64::MAX),
            lifts: AtomicU64::new(0),
        }
    }

    /// Nanoseconds from the epoch to `instant`, never 0 (which means "no job").
    fn since_epoch(&self, instant: Instant) -> u64 {
        let nanos = instant.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
    }

    /// How long a job may run before its thread counts as starved.
    fn patience(&self) -> u64 {
        let floor = u64::try_from(MIN_PATIENCE.as_nanos()).unwrap_or(u64::MAX);
        match self.fastest_job.load(Ordering::Relaxed) {
            u64::MAX => floor,
            fastest => fastest.saturating_mul(PATIENCE_FACTOR).max(floor),
        }
    }

    /// Lifts every thread starved on its current job to normal priority, each job
    /// once; `lifted` holds, per thread, the start of the last job lifted. A lift that
    /// lands just after its thread moved on to a new job lifts that job instead, and the
    /// thread is back under `SCHED_IDLE` at the start of the one after.
    fn lift_starved(&self, lifted: &mut [u64]) {
        let now = self.since_epoch(Instant::now());
        let patience = self.patience();
        for (thread, lifted) in self.threads.iter().zip(lifted.iter_mut()) {
            let started = thread.job_started.load(Ordering::Acquire);
            if started == 0 || started == *lifted || now.saturating_sub(started) < patience {
                continue;
            }
            let Some(native) = thread.native.get() else {
                continue;
            };
            *lifted = started;
            match sched::set_normal(*native) {
                Ok(()) => {
                    self.lifts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("lifted a starved password hashing thread to normal priority");
                }
                Err(error) => warn_once(&error, "cannot lift a starved password hashing thread"),
            }
        }
    }
}

/// Starts the supervisor thread, which first tries the scheduling on itself and
/// returns what it found; with `SCHED_IDLE` usable both ways it then watches the crew
/// every tick, until every `Passwords` handle and hashing thread is gone.
fn start_supervisor(crew: Weak<Crew>) -> anyhow::Result<Scheduling> {
    if !cfg!(target_os = "linux") {
        return Ok(Scheduling::Unchanged);
    }
    let (found, scheduling) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("tessera-hash-watch".to_owned())
        .spawn(move || {
            let scheduling = sched::probe();
            let _ = found.send(scheduling);
            if scheduling != Scheduling::IdleLiftedWhenStarved {
                return;
            }
            let mut lifted = Vec::new();
            loop {
                std::thread::sleep(SUPERVISION_TICK);
                let Some(crew) = crew.upgrade() else {
                    return;
                };
                lifted.resize(crew.threads.len(), 0);
                crew.lift_starved(&mut lifted);
            }
        })
        .context("cannot start the password hashing supervisor")?;
    Ok(scheduling.recv().unwrap_or(Scheduling::Unchanged))
}

/// Logs a refused scheduling change once per process: a refusal costs only latency
/// (or, for a lift, login speed on a busy machine), and hashing goes on at whatever
/// priority the thread has.
fn warn_once(error: &dyn std::fmt::Display, message: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(%error, "{message}");
    }
}

/// Scheduling policy changes through the `thread-priority` crate.
#[cfg(target_os = "linux")]
mod sched {
    use thread_priority::ThreadPriority;
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id, thread_schedule_policy_param,
    };

    use super::Scheduling;

    pub(super) type NativeId = thread_priority::unix::ThreadId;

    const IDLE: ThreadSchedulePolicy =
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    const OTHER: ThreadSchedulePolicy =
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);

    pub(super) fn current() -> NativeId {
        thread_native_id()
    }

    pub(super) fn policy(thread: NativeId) -> Option<ThreadSchedulePolicy> {
        thread_schedule_policy_param(thread)
            .ok()
            .map(|(policy, _)| policy)
    }

    pub(super) fn set_idle(thread: NativeId) -> Result<(), thread_priority::Error> {
        set(thread, IDLE)
    }

    pub(super) fn set_normal(thread: NativeId) -> Result<(), thread_priority::Error> {
        set(thread, OTHER)
    }

    /// After setting a normal policy the crate also sets the calling thread's nice
    /// value (to 0, the only static priority these policies take), which may be refused
    /// after the policy itself changed: the policy read back tells what took.
    fn set(thread: NativeId, policy: ThreadSchedulePolicy) -> Result<(), thread_priority::Error> {
        let set = set_thread_priority_and_policy(thread, ThreadPriority::Min, policy);
        match (set, self::policy(thread)) {
            (_, Some(now)) if now == policy => Ok(()),
            (Err(error), _) => Err(error),
            (Ok(()), _) => Err(thread_priority::Error::Priority(
                "the policy did not change",
            )),
        }
    }

    /// Tries `SCHED_IDLE` and back on the calling thread, which must stay normal only
    /// if the way back works.
    pub(super) fn probe() -> Scheduling {
        let me = current();
        if policy(me) != Some(OTHER) {
            return Scheduling::Unchanged;
        }
        if let Err(error) = set_idle(me) {
            super::warn_once(
                &error,
                "cannot give password hashing threads the idle policy",
            );
            return Scheduling::Unchanged;
        }
        if let Err(error) = set_normal(me) {
            super::warn_once(
                &error,
                "password hashing threads cannot leave the idle policy; the first stays at \
                 normal priority",
            );
            return Scheduling::IdleButFirst;
        }
        Scheduling::IdleLiftedWhenStarved
    }
}

/// Elsewhere than Linux the threads keep the scheduling they start with.
#[cfg(not(target_os = "linux"))]
mod sched {
    use super::Scheduling;

    pub(super) type NativeId = ();

    pub(super) fn current() -> NativeId {}

    pub(super) fn set_idle(_thread: NativeId) -> Result<(), &'static str> {
        Err("scheduling policies are changed on Linux only")
    }

    pub(super) fn set_normal(_thread: NativeId) -> Result<(), &'static str> {
        Err("scheduling policies are changed on Linux only")
    }

    pub(super) fn probe() -> Scheduling {
        Scheduling::Unchanged
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

    /// Tests that load every core, or that need the cores free, run one at a time.
    static CORES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// The scheduling policy of the first hashing thread, read from the kernel.
    fn first_thread_policy(passwords: &Passwords) -> thread_priority::unix::ThreadSchedulePolicy {
        let native = passwords.crew.threads[0].native.get().unwrap();
        sched::policy(*native).unwrap()
    }

    fn idle() -> thread_priority::unix::ThreadSchedulePolicy {
        use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
    }

    /// A stored hash that takes about ten standard hashes to verify.
    fn slow_hash() -> String {
        use argon2::password_hash::PasswordHasher as _;
        let slow = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(MEMORY_KIB, 10 * PASSES, LANES, None).unwrap(),
        );
        slow.hash_password(b"correct horse").unwrap().to_string()
    }

    /// Spins one normal-priority thread per core until `stop` is set, or for 20 s at most;
    /// returns once every one of them is spinning.
    fn fill_every_core(stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let spinning = Arc::new(std::sync::Barrier::new(cores + 1));
        let spinners = (0..cores)
            .map(|_| {
                let (stop, spinning) = (Arc::clone(stop), Arc::clone(&spinning));
                std::thread::spawn(move || {
                    spinning.wait();
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        spinning.wait();
        spinners
    }

    /// Verifies a slow hash on `passwords`, and answers whether its thread went under
    /// `SCHED_IDLE` during the job.
    async fn idle_during_a_job(passwords: &Passwords) -> bool {
        let verifying = {
            let passwords = passwords.clone();
            let slow = slow_hash();
            tokio::spawn(async move { passwords.verify(secret("correct horse"), Some(slow)).await })
        };
        let mut seen_idle = false;
        for _ in 0..2_000 {
            let busy = passwords.crew.threads[0]
                .job_started
                .load(Ordering::Acquire)
                != 0;
            if busy && first_thread_policy(passwords) == idle() {
                seen_idle = true;
                break;
            }
            if verifying.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(verifying.await.unwrap().unwrap());
        seen_idle
    }

    #[tokio::test]
    async fn a_hashing_thread_computes_under_the_idle_policy_and_waits_at_normal() {
        let _cores = CORES.lock().await;
        let passwords = Passwords::new(1).unwrap();
        assert_eq!(sched::probe(), Scheduling::IdleLiftedWhenStarved);
        passwords.hash(secret("warm up")).await.unwrap();

        let idle_during_job = idle_during_a_job(&passwords).await;
        let waiting = first_thread_policy(&passwords);

        assert!(idle_during_job, "the job never ran under SCHED_IDLE");
        assert_ne!(waiting, idle());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_hashing_thread_starved_by_other_work_is_lifted_until_its_job_ends() {
        let _cores = CORES.lock().await;
        let passwords = Passwords::new(1).unwrap();
        passwords.hash(secret("warm up")).await.unwrap();
        let lifts_before = passwords.lifts();
        let stop = Arc::new(AtomicBool::new(false));

        // A job of ten hashes' work: long enough to be starved even if the kernel takes
        // a few milliseconds to spread the spinners over the cores.
        let slow = slow_hash();
        let spinners = fill_every_core(&stop);
        let hashing = {
            let passwords = passwords.clone();
            tokio::spawn(async move { passwords.verify(secret("correct horse"), Some(slow)).await })
        };
        // The job seen under SCHED_IDLE, then at normal priority on two polls in a row
        // (not just in the moment the thread lifts itself as the job ends).
        let mut idle_job = 0;
        let mut lifted_polls = 0;
        // Bounded at 20 s so that a broken build fails instead of hanging; the
        // assertions are on the lift, not on the time taken.
        for _ in 0..20_000 {
            let started = || {
                passwords.crew.threads[0]
                    .job_started
                    .load(Ordering::Acquire)
            };
            let job = started();
            let policy = first_thread_policy(&passwords);
            if job != 0 && job == started() {
                if policy == idle() {
                    idle_job = job;
                } else if job == idle_job {
                    lifted_polls += 1;
                }
            }
            if lifted_polls >= 2 || hashing.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let hashed = tokio::time::timeout(Duration::from_secs(20), hashing).await;
        let lifts_during_load = passwords.lifts() - lifts_before;
        stop.store(true, Ordering::Relaxed);
        for spinner in spinners {
            spinner.join().unwrap();
        }
        let idle_again = idle_during_a_job(&passwords).await;

        assert!(hashed.unwrap().unwrap().unwrap());
        assert!(
            lifted_polls >= 2,
            "the starved job never ran at normal priority"
        );
        assert!(
            lifts_during_load >= 1,
            "the starved thread was never lifted"
        );
        assert!(idle_again, "the next job did not run under SCHED_IDLE");
    }

    #[test]
    fn the_supervisor_stops_once_every_handle_is_gone() {
        let passwords = Passwords::new(1).unwrap();
        let crew = Arc::downgrade(&passwords.crew);

        drop(passwords);
        let mut gone = false;
        for _ in 0..500 {
            if crew.strong_count() == 0 {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }

        assert!(
            gone,
            "a hashing thread or the supervisor still holds the crew"
        );
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

//! Tessera's HTTP service: routes, storage, sessions and configuration. [`Server::bind`]
//! turns a [`ServerConfig`] into a listening socket with everything behind it (data dir,
//! database: SQLite in the data dir or PostgreSQL at `database_url`, signing key);
//! [`Server::serve`] answers until shut down.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = tessera_server::ServerConfig::default();
//! let server = tessera_server::Server::bind(config).await?;
//! server.serve(tessera_server::shutdown_signal()).await
//! # }
//! ```

pub mod admin;
mod audit;
pub mod backup;
mod client_ip;
mod clock;
pub mod config;
mod connections;
mod cookies;
mod current_user;
mod error;
pub mod key_admin;
mod key_ring;
mod key_store;
mod keystore;
mod master_key;
mod openapi;
mod origin;
mod passwords;
mod request_trace;
mod revocations;
mod routes;
mod sessions;
mod state;
pub mod store;
mod successor;
mod telemetry;
mod throttle;
mod throttle_shared;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use sha2::Digest as _;
use tessera_guard::Guard;
use tessera_token::{KeyAlgorithm, SigningKey, Validator, ValidatorConfig};
use tokio::net::TcpListener;

pub use config::{ConfigLayer, ServerConfig};
/// The request parsers, for the fuzz targets in `fuzz/` only.
#[doc(hidden)]
pub use routes::fuzzing;

use crate::key_ring::{KeyPolicy, KeyRing};
use crate::key_store::{DatabaseKeys, FolderKeys, KeyStore};
use crate::master_key::MasterKey;
use crate::passwords::Passwords;
use crate::revocations::Revocations;
use crate::state::AppState;
use crate::telemetry::Telemetry;
use crate::throttle::{LoginThrottle, ThrottleConfig};
use crate::throttle_shared::{DEFAULT_PREFIX, SharedThrottle, Throttle};

/// The SQLite database file inside the data dir, used when no `database_url` is set.
pub(crate) const DATABASE_FILE: &str = "tessera.db";
/// The folder of signing keys inside the data dir.
pub const KEYS_DIR: &str = "keys";
/// How often sessions ended elsewhere (another instance, the admin command) are read.
const REVOCATION_POLL_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
/// How often old audit events are deleted.
const AUDIT_PRUNE_PERIOD: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// How often the key folder is checked for rotations and expiries.
const KEY_REFRESH_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// A bound, ready server.
pub struct Server {
    listener: TcpListener,
    background: Background,
    passwords: Passwords,
    router: axum::Router,
    keys: Arc<KeyRing>,
    header_read_timeout: std::time::Duration,
    /// Held while the server runs: one server per data dir.
    _data_lock: std::fs::File,
    base_url: String,
    data_dir: PathBuf,
    /// Which database serves, for the start-up line; no password.
    database: String,
}

impl Server {
    /// Prepares the data dir (database, migrations, signing key), binds the listen
    /// address, and builds the routes. Nothing is served until [`Server::serve`].
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        // Bind first: a taken port should not leave a new, empty data dir behind.
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "cannot listen on {}: is another server using it? pick another address \
                 with --listen",
                config.listen
            )
        })?;
        keystore::create_private_dir(&config.data_dir)?;
        let data_dir = config
            .data_dir
            .canonicalize()
            .with_context(|| format!("cannot open data dir {}", config.data_dir.display()))?;
        keystore::check_private_dir(&data_dir)?;
        let data_lock = lock_data_dir(&data_dir)?;
        let store_handle =
            store::open(config.database_url.as_ref(), &data_dir.join(DATABASE_FILE)).await?;

        let database = match &config.database_url {
            Some(url) => format!("PostgreSQL at {}", url.redacted()),
            None => "SQLite".to_owned(),
        };
        let bound = listener.local_addr()?;
        let issuer_url = config.issuer_for(bound);

        let keys = Arc::new(
            open_key_ring(&config, &data_dir, &issuer_url, Arc::clone(&store_handle)).await?,
        );
        let config_header_timeout = config.header_read_timeout;
        let config_audit_retention = config.audit_retention;
        let config_idle_timeout = config.session_idle_timeout;
        let hashing_threads = std::thread::available_parallelism().map_or(1, usize::from);
        let horizon = key_admin::retain_secs(&config);
        let revocations = Arc::new(Revocations::new(horizon));
        let passwords = Passwords::new(hashing_threads)?;
        let introspection = match &config.introspection_secret_file {
            Some(file) => {
                let secret = read_secret_file(file, "introspection_secret_file")?;
                // It travels as a bearer credential: a final newline is not part of it.
                Some(<[u8; 32]>::from(sha2::Sha256::digest(secret.trim_ascii())))
            }
            None => None,
        };
        let metrics_token = match &config.metrics_token_file {
            Some(file) => {
                let secret = read_secret_file(file, "metrics_token_file")?;
                Some(<[u8; 32]>::from(sha2::Sha256::digest(secret.trim_ascii())))
            }
            None => None,
        };
        let telemetry = Arc::new(Telemetry::new()?);
        let throttle = Arc::new(match &config.redis_url {
            Some(url) => Throttle::Shared(
                SharedThrottle::connect(url.expose(), DEFAULT_PREFIX, ThrottleConfig::default())
                    .await
                    .with_context(|| format!("cannot use Redis at {}", url.redacted()))?,
            ),
            None => Throttle::Local(LoginThrottle::new(ThrottleConfig::default())),
        });
        let state = AppState::from(state::SharedState {
            store: Arc::clone(&store_handle),
            guard: keys.guard(),
            keys: Arc::clone(&keys),
            passwords: passwords.clone(),
            revocations: Arc::clone(&revocations),
            throttle: Arc::clone(&throttle),
            introspection,
            config: Arc::new(config),
            issuer_url: Arc::from(issuer_url.as_str()),
            telemetry: Arc::clone(&telemetry),
            metrics_token,
        });
        let background = Background {
            store: store_handle,
            throttle,
            revocations,
            audit_retention: config_audit_retention,
            telemetry,
            session_idle_timeout: config_idle_timeout,
        };
        Ok(Self {
            listener,
            background,
            passwords,
            router: routes::router(state),
            keys,
            header_read_timeout: config_header_timeout,
            _data_lock: data_lock,
            base_url: base_url(bound),
            data_dir,
            database,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// How many password verifications have been computed so far, the dummy ones for
    /// unknown users included; the returned function keeps counting after `serve`.
    /// Proves, by counting rather than timing, that every login costs one hash.
    pub fn verification_counter(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let passwords = self.passwords.clone();
        move || passwords.verifications_computed()
    }

    /// `http://` URL of the bound address.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and closes
    /// the database.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(
            "listening on {}, data in {}, database: {}",
            self.base_url,
            self.data_dir.display(),
            self.database
        );
        let store = Arc::clone(&self.background.store);
        let key_refresh = tokio::spawn(key_ring::keep_fresh(self.keys, KEY_REFRESH_PERIOD));
        let pushed_ends = self.background.store.ended_pushes().map(|pushes| {
            tokio::spawn(revocations::follow_pushes(
                pushes,
                Arc::clone(&self.background.revocations),
            ))
        });
        let revocation_feed = tokio::spawn(revocations::keep_in_step(
            Arc::clone(&self.background.store),
            self.background.revocations,
            REVOCATION_POLL_PERIOD,
        ));
        let throttle_pruning = tokio::spawn(prune_throttle(self.background.throttle));
        let session_count = tokio::spawn(telemetry::keep_open_sessions_counted(
            Arc::clone(&self.background.store),
            self.background.telemetry,
            self.background.session_idle_timeout,
            telemetry::OPEN_SESSIONS_PERIOD,
        ));
        let audit_pruning = tokio::spawn(prune_audit(
            self.background.store,
            self.background.audit_retention,
        ));
        connections::serve(
            self.listener,
            self.router,
            self.header_read_timeout,
            shutdown,
        )
        .await;
        key_refresh.abort();
        revocation_feed.abort();
        if let Some(pushed_ends) = pushed_ends {
            pushed_ends.abort();
        }
        audit_pruning.abort();
        throttle_pruning.abort();
        session_count.abort();
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Work that runs beside the listener while the server serves.
struct Background {
    store: Arc<dyn store::Store>,
    throttle: Arc<Throttle>,
    revocations: Arc<Revocations>,
    audit_retention: std::time::Duration,
    telemetry: Arc<Telemetry>,
    session_idle_timeout: std::time::Duration,
}

/// Forgets idle throttling entries every minute, so memory follows current traffic.
async fn prune_throttle(throttle: Arc<Throttle>) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        ticks.tick().await;
        throttle.prune();
    }
}

/// Deletes audit events past their retention, hourly.
async fn prune_audit(store: Arc<dyn store::Store>, retention: std::time::Duration) {
    let mut ticks = tokio::time::interval(AUDIT_PRUNE_PERIOD);
    loop {
        ticks.tick().await;
        let retention = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let before = clock::now().saturating_sub(retention);
        match store.prune_audit(before).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "old audit events deleted"),
            Err(error) => tracing::warn!(%error, "cannot prune audit events"),
        }
    }
}

/// Takes the data dir's lock file, so that a second server on the same data dir stops
/// at start-up instead of racing the first over keys and sessions.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another Tessera server is using {}; stop it or give this one another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

async fn open_key_ring(
    config: &ServerConfig,
    data_dir: &std::path::Path,
    issuer_url: &str,
    store: Arc<dyn store::Store>,
) -> anyhow::Result<KeyRing> {
    let hmac = match (&config.hmac_secret_file, config.alg) {
        (Some(file), KeyAlgorithm::HS256) => Some(read_hmac_secret(file)?),
        _ => None,
    };
    let policy = KeyPolicy {
        algorithm: config.alg,
        hmac,
        retain_secs: key_admin::retain_secs(config),
        rotate_every: config.key_rotation_interval,
        activation_delay: config.key_activation_delay,
        hmac_since: (config.alg == KeyAlgorithm::HS256).then(clock::now),
    };
    let mut validation = ValidatorConfig::new(issuer_url, &config.audience);
    validation.leeway_secs = config.leeway.as_secs();
    validation.max_token_bytes = config.max_token_bytes;
    KeyRing::open(
        key_store_for(config, data_dir, store).await?,
        policy,
        issuer_url,
        &config.audience,
        |trusted| Ok(Guard::new(Validator::new(trusted, validation)?)),
        clock::now(),
    )
    .await
}

/// Where the signing keys are kept: sealed in the database when a master key is
/// configured (required with PostgreSQL, where instances share them), otherwise as
/// files in the data dir. A database that holds no keys yet takes over the folder's.
pub(crate) async fn key_store_for(
    config: &ServerConfig,
    data_dir: &std::path::Path,
    store: Arc<dyn store::Store>,
) -> anyhow::Result<Arc<dyn KeyStore>> {
    let folder = FolderKeys::new(data_dir.join(KEYS_DIR));
    let Some(file) = &config.master_key_file else {
        if config.database_url.is_some() {
            anyhow::bail!(
                "with PostgreSQL the signing keys are kept in the database, sealed under a \
                 master key: set master_key_file (TESSERA_MASTER_KEY_FILE) to a 0600 file \
                 of at least 32 random bytes, the same file on every instance \
                 (e.g. `head -c 32 /dev/urandom > master.key; chmod 600 master.key`)"
            );
        }
        return Ok(Arc::new(folder));
    };
    let secret = read_secret_file(file, "master_key_file")?;
    let database = DatabaseKeys::new(store, Arc::new(MasterKey::derive(&secret)?));
    let imported = database.import_if_empty(&folder).await?;
    if imported > 0 {
        tracing::info!(
            imported,
            "signing keys copied from the key folder into the database"
        );
    }
    Ok(Arc::new(database))
}

/// The HS256 secret: the file's bytes as they are, owner-only, at least 32 of them.
fn read_hmac_secret(file: &std::path::Path) -> anyhow::Result<SigningKey> {
    let secret = read_secret_file(file, "hmac_secret_file")?;
    SigningKey::hmac(&secret).map_err(|_| anyhow::anyhow!("cannot use the HS256 secret"))
}

/// A secret file's bytes as they are: owner-only, and at least 32 of them.
fn read_secret_file(
    file: &std::path::Path,
    key: &str,
) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata =
        std::fs::metadata(file).with_context(|| format!("cannot read {key} {}", file.display()))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        anyhow::bail!(
            "{key} {} can be read by other users; run `chmod 600 {}`",
            file.display(),
            file.display()
        );
    }
    let secret = zeroize::Zeroizing::new(std::fs::read(file)?);
    if secret.len() < tessera_token::MIN_HMAC_SECRET_BYTES {
        anyhow::bail!(
            "{key} {} holds {} bytes; use at least {} random bytes \
             (e.g. `head -c 32 /dev/urandom > FILE`)",
            file.display(),
            secret.len(),
            tessera_token::MIN_HMAC_SECRET_BYTES
        );
    }
    Ok(secret)
}

fn base_url(bound: SocketAddr) -> String {
    format!("http://{bound}")
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

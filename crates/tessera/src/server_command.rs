//! `tessera server`: reads the configuration layers, sets up logging, and runs the
//! service until SIGINT or SIGTERM. Also home of the configuration flags, which
//! `tessera keys` shares.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use tessera_server::config::LogFormat;
use tessera_server::{ConfigLayer, Server, ServerConfig};
use tracing_subscriber::EnvFilter;

/// Flags of `tessera server`.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print the effective configuration (all layers applied) as TOML and exit
    #[arg(long)]
    print_config: bool,
}

/// The configuration flags shared by `tessera server` and `tessera keys`. Each overrides
/// its `TESSERA_*` variable, which overrides the config file, which overrides the
/// default.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// TOML config file [env: TESSERA_CONFIG]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [env: TESSERA_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Folder for the signing keys, and the SQLite database unless --database-url
    /// names another [env: TESSERA_DATA_DIR] [default: ./tessera-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL database to use instead of SQLite, postgres://USER@HOST:PORT/DB
    /// [env: TESSERA_DATABASE_URL] [default: SQLite in the data dir]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Redis URL (redis://HOST:PORT) for login throttling shared by every instance
    /// [env: TESSERA_REDIS_URL] [default: none: each instance throttles on its own]
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Access-token lifetime, such as 15m or 5s [env: TESSERA_ACCESS_TTL] [default: 15m]
    #[arg(long, value_name = "DURATION")]
    access_ttl: Option<String>,
    /// Public URL put in `iss` [env: TESSERA_ISSUER] [default: from the listen address]
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// Audience put in `aud` [env: TESSERA_AUDIENCE] [default: tessera]
    #[arg(long, value_name = "NAME")]
    audience: Option<String>,
    /// Clock-skew allowance, at most 30s [env: TESSERA_LEEWAY] [default: 10s]
    #[arg(long, value_name = "DURATION")]
    leeway: Option<String>,
    /// Sessions unused this long cannot renew [env: TESSERA_SESSION_IDLE_TIMEOUT]
    /// [default: 14days]
    #[arg(long, value_name = "DURATION")]
    session_idle_timeout: Option<String>,
    /// Sessions end this long after login [env: TESSERA_SESSION_LIFETIME]
    /// [default: 90days]
    #[arg(long, value_name = "DURATION")]
    session_lifetime: Option<String>,
    /// Signing algorithm: EdDSA, ES256, RS256 or HS256 [env: TESSERA_ALG]
    /// [default: EdDSA]
    #[arg(long, value_name = "ALG")]
    alg: Option<String>,
    /// File with the HS256 secret, at least 32 bytes, mode 0600
    /// [env: TESSERA_HMAC_SECRET_FILE]
    #[arg(long, value_name = "FILE")]
    hmac_secret_file: Option<PathBuf>,
    /// Make a new signing key when the newest is this old, or `off`
    /// [env: TESSERA_KEY_ROTATION_INTERVAL] [default: 90days]
    #[arg(long, value_name = "DURATION")]
    key_rotation_interval: Option<String>,
    /// How long a new key is published before it signs
    /// [env: TESSERA_KEY_ACTIVATION_DELAY] [default: 10m]
    #[arg(long, value_name = "DURATION")]
    key_activation_delay: Option<String>,
    /// Longest access token read, in bytes [env: TESSERA_MAX_TOKEN_BYTES]
    /// [default: 8192]
    #[arg(long, value_name = "BYTES")]
    max_token_bytes: Option<u64>,
    /// Disconnect clients that take longer to send their request headers
    /// [env: TESSERA_HEADER_READ_TIMEOUT] [default: 10s]
    #[arg(long, value_name = "DURATION")]
    header_read_timeout: Option<String>,
    /// A spent refresh token retried within this time gets the same successor pair;
    /// 0s turns the window off [env: TESSERA_REFRESH_GRACE] [default: 10s]
    #[arg(long, value_name = "DURATION")]
    refresh_grace: Option<String>,
    /// Comma-separated IPs and CIDRs of proxies whose X-Forwarded-For is believed
    /// [env: TESSERA_TRUSTED_PROXIES] [default: none]
    #[arg(long, value_name = "LIST")]
    trusted_proxies: Option<String>,
    /// Audit events older than this are deleted [env: TESSERA_AUDIT_RETENTION]
    /// [default: 90days]
    #[arg(long, value_name = "DURATION")]
    audit_retention: Option<String>,
    /// File with the credential resource servers send to /oauth/introspect as a bearer
    /// token (0600, at least 32 bytes); the endpoint is off without it
    /// [env: TESSERA_INTROSPECTION_SECRET_FILE]
    #[arg(long, value_name = "FILE")]
    introspection_secret_file: Option<PathBuf>,
    /// File with the master key (0600, at least 32 random bytes) that seals signing keys
    /// kept in the database; required with PostgreSQL [env: TESSERA_MASTER_KEY_FILE]
    /// [default: none: keys are files in the data dir]
    #[arg(long, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// Comma-separated origins of single-page apps allowed to call the API with
    /// bearer tokens (CORS) [env: TESSERA_CORS_ORIGINS] [default: none]
    #[arg(long, value_name = "ORIGINS")]
    cors_origins: Option<String>,
    /// File with the bearer token /metrics asks for (0600, at least 32 bytes)
    /// [env: TESSERA_METRICS_TOKEN_FILE] [default: none: /metrics is open]
    #[arg(long, value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
    /// Log lines as text or json [env: TESSERA_LOG_FORMAT] [default: text]
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

impl ConfigArgs {
    /// The effective configuration: defaults, file, environment, these flags.
    pub(crate) fn load(self) -> anyhow::Result<ServerConfig> {
        let (file, flags) = self.into_layers();
        let env = ConfigLayer::from_env(|key| std::env::var(key).ok())?;
        Ok(ServerConfig::load(file.as_deref(), env, flags)?)
    }

    fn into_layers(self) -> (Option<PathBuf>, ConfigLayer) {
        let file = self
            .config
            .or_else(|| std::env::var_os("TESSERA_CONFIG").map(PathBuf::from));
        let flags = ConfigLayer {
            listen: self.listen,
            data_dir: self.data_dir,
            database_url: self.database_url,
            redis_url: self.redis_url,
            access_ttl: self.access_ttl,
            issuer: self.issuer,
            audience: self.audience,
            leeway: self.leeway,
            session_idle_timeout: self.session_idle_timeout,
            session_lifetime: self.session_lifetime,
            alg: self.alg,
            hmac_secret_file: self.hmac_secret_file,
            key_rotation_interval: self.key_rotation_interval,
            key_activation_delay: self.key_activation_delay,
            max_token_bytes: self.max_token_bytes,
            header_read_timeout: self.header_read_timeout,
            refresh_grace: self.refresh_grace,
            trusted_proxies: self.trusted_proxies,
            audit_retention: self.audit_retention,
            introspection_secret_file: self.introspection_secret_file,
            master_key_file: self.master_key_file,
            cors_origins: self.cors_origins,
            metrics_token_file: self.metrics_token_file,
            log_format: self.log_format,
        };
        (file, flags)
    }
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(config.log_format);
    let server = Server::bind(config)
        .await
        .context("Tessera could not start")?;
    server.serve(tessera_server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr, as text (coloured on a terminal) or as one JSON object a line;
/// `RUST_LOG` picks the levels (default: info for Tessera).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields at the top level, beside the request span's (method,
        // route, request id, user id), so a collector reads them without nesting.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

//! Server configuration, loaded once in layers: built-in defaults, then a TOML file
//! (`--config` / `TESSERA_CONFIG`), then `TESSERA_*` environment variables, then
//! command-line flags. Every value is checked here, so a bad one stops start-up with a
//! message that says how to fix it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tessera_token::KeyAlgorithm;

/// Longest access-token lifetime accepted: a day. Longer defeats short-lived tokens.
const MAX_ACCESS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The effective configuration of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder holding the signing keys, and the SQLite database unless
    /// `database_url` names another.
    pub data_dir: PathBuf,
    /// The PostgreSQL database to use instead of the SQLite file in the data dir.
    pub database_url: Option<DatabaseUrl>,
    /// Redis, when logins are throttled across instances; without it each instance
    /// throttles on its own.
    pub redis_url: Option<RedisUrl>,
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// The `iss` of issued tokens; derived from the bound address when unset.
    pub issuer: Option<String>,
    /// The `aud` of issued tokens.
    pub audience: String,
    /// Clock-skew allowance when validating tokens, at most 30 s.
    pub leeway: Duration,
    /// A session unused for this long can no longer be renewed.
    pub session_idle_timeout: Duration,
    /// A session ends this long after login, used or not.
    pub session_lifetime: Duration,
    /// The algorithm access tokens are signed with.
    pub alg: KeyAlgorithm,
    /// File holding the HS256 secret (at least 32 bytes); required for HS256 only.
    pub hmac_secret_file: Option<PathBuf>,
    /// A new signing key is made when the newest is this old; `None` never rotates.
    pub key_rotation_interval: Option<Duration>,
    /// How long a new key is published before it starts signing.
    pub key_activation_delay: Duration,
    /// Longest access token read, in bytes; longer ones are refused unread.
    pub max_token_bytes: usize,
    /// A client must send its request headers within this time or is disconnected.
    pub header_read_timeout: Duration,
    /// A spent refresh token presented again within this time gets the same successor
    /// pair; zero turns the window off.
    pub refresh_grace: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Audit events older than this are deleted.
    pub audit_retention: Duration,
    /// File holding the credential resource servers present to the introspection
    /// endpoint; without it the endpoint is off.
    pub introspection_secret_file: Option<PathBuf>,
    /// File holding the master key that seals signing keys kept in the database; with
    /// it, keys live in the database (required with PostgreSQL, so that instances share
    /// them), without it in the data dir's key folder.
    pub master_key_file: Option<PathBuf>,
    /// Origins (`scheme://host[:port]`) of single-page apps allowed to call the API
    /// cross-origin with bearer tokens.
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// File holding the bearer token `/metrics` asks for; without it `/metrics` is
    /// open to anyone who can reach the listen address.
    pub metrics_token_file: Option<PathBuf>,
    /// How log lines are written: text for people, JSON for log collectors.
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The name used in the file, the environment and the flag.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }

    fn parse(value: &str) -> Result<Self, ConfigError> {
        match value.trim() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(ConfigError::Value {
                key: "log_format",
                value: value.to_owned(),
                hint: "use text or json".to_owned(),
            }),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./tessera-data"),
            database_url: None,
            redis_url: None,
            access_ttl: Duration::from_secs(15 * 60),
            issuer: None,
            audience: "tessera".to_owned(),
            leeway: Duration::from_secs(10),
            session_idle_timeout: Duration::from_secs(14 * 24 * 60 * 60),
            session_lifetime: Duration::from_secs(90 * 24 * 60 * 60),
            alg: KeyAlgorithm::EdDSA,
            hmac_secret_file: None,
            key_rotation_interval: Some(Duration::from_secs(90 * 24 * 60 * 60)),
            key_activation_delay: Duration::from_secs(10 * 60),
            max_token_bytes: tessera_token::DEFAULT_MAX_TOKEN_BYTES,
            header_read_timeout: Duration::from_secs(10),
            refresh_grace: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            audit_retention: Duration::from_secs(90 * 24 * 60 * 60),
            introspection_secret_file: None,
            master_key_file: None,
            cors_origins: Vec::new(),
            metrics_token_file: None,
            log_format: LogFormat::Text,
        }
    }
}

/// A PostgreSQL connection URL (`postgres://` or `postgresql://`). Its `Debug` form
/// and [`DatabaseUrl::redacted`] hide the password, so it can be logged and printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

/// What replaces a password when a database URL is shown.
const REDACTED: &str = "REDACTED";

impl DatabaseUrl {
    /// Accepts PostgreSQL URLs only: the SQLite database is the data dir's own file,
    /// chosen by leaving `database_url` unset.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| text.len() > scheme.len() && text.starts_with(scheme));
        if !postgres || text.contains(char::is_whitespace) {
            return Err(ConfigError::Value {
                key: "database_url",
                value: Self(text.to_owned()).redacted(),
                hint: "give a PostgreSQL URL such as postgres://tessera@127.0.0.1:5432/tessera \
                       (postgres:// or postgresql://), or leave it unset for SQLite in the \
                       data dir"
                    .to_owned(),
            });
        }
        Ok(Self(text.to_owned()))
    }

    /// The URL as given, password included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password (in the user part or a `password=` parameter)
    /// replaced by `REDACTED`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

/// `url` with any password (in the user part or a `password=` parameter) replaced by
/// `REDACTED`.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return REDACTED.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_part, host)) => match user_part.split_once(':') {
            Some((user, _password)) => format!("{user}:{REDACTED}@{host}"),
            None => format!("{user_part}@{host}"),
        },
        None => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = query
                .split_once('#')
                .map_or((query, None), |(q, f)| (q, Some(f)));
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => format!("password={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{path}?{}{fragment}", query.join("&"))
        }
        None => path.to_owned(),
    };
    format!("{}{authority}{path}", &url[..scheme_end])
}

/// A Redis URL (`redis://` or `rediss://`), shown with its password hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Accepts `redis://` and `rediss://` (TLS) URLs.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let redis = ["redis://", "rediss://"]
            .iter()
            .any(|scheme| text.len() > scheme.len() && text.starts_with(scheme));
        if !redis || text.contains(char::is_whitespace) {
            return Err(ConfigError::Value {
                key: "redis_url",
                value: redact_url(text),
                hint: "give a Redis URL such as redis://127.0.0.1:6379 (redis:// or \
                       rediss://), or leave it unset to throttle logins per instance"
                    .to_owned(),
            });
        }
        Ok(Self(text.to_owned()))
    }

    /// The URL as given, password included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `REDACTED`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.redacted()).finish()
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// One layer of configuration: every field optional, values as written by the user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// `listen`
    pub listen: Option<String>,
    /// `data_dir`
    pub data_dir: Option<PathBuf>,
    /// `database_url`: `postgres://…`; absent means SQLite in the data dir
    pub database_url: Option<String>,
    /// `redis_url`: `redis://…`; absent means per-instance login throttling
    pub redis_url: Option<String>,
    /// `access_ttl`, a human duration such as `15m`
    pub access_ttl: Option<String>,
    /// `issuer`
    pub issuer: Option<String>,
    /// `audience`
    pub audience: Option<String>,
    /// `leeway`, a human duration
    pub leeway: Option<String>,
    /// `session_idle_timeout`, a human duration
    pub session_idle_timeout: Option<String>,
    /// `session_lifetime`, a human duration
    pub session_lifetime: Option<String>,
    /// `alg`: EdDSA, ES256, RS256 or HS256
    pub alg: Option<String>,
    /// `hmac_secret_file`
    pub hmac_secret_file: Option<PathBuf>,
    /// `key_rotation_interval`, a human duration, or `off`
    pub key_rotation_interval: Option<String>,
    /// `key_activation_delay`, a human duration
    pub key_activation_delay: Option<String>,
    /// `max_token_bytes`
    pub max_token_bytes: Option<u64>,
    /// `header_read_timeout`, a human duration
    pub header_read_timeout: Option<String>,
    /// `refresh_grace`, a human duration
    pub refresh_grace: Option<String>,
    /// `trusted_proxies`, comma-separated IPs and CIDRs
    pub trusted_proxies: Option<String>,
    /// `audit_retention`, a human duration
    pub audit_retention: Option<String>,
    /// `introspection_secret_file`
    pub introspection_secret_file: Option<PathBuf>,
    /// `master_key_file`
    pub master_key_file: Option<PathBuf>,
    /// `cors_origins`, comma-separated
    pub cors_origins: Option<String>,
    /// `metrics_token_file`
    pub metrics_token_file: Option<PathBuf>,
    /// `log_format`: text or json
    pub log_format: Option<String>,
}

/// The environment variable of each key, in the order of [`ConfigLayer`]'s fields.
pub const ENV_KEYS: [(&str, &str); 24] = [
    ("listen", "TESSERA_LISTEN"),
    ("data_dir", "TESSERA_DATA_DIR"),
    ("database_url", "TESSERA_DATABASE_URL"),
    ("redis_url", "TESSERA_REDIS_URL"),
    ("access_ttl", "TESSERA_ACCESS_TTL"),
    ("issuer", "TESSERA_ISSUER"),
    ("audience", "TESSERA_AUDIENCE"),
    ("leeway", "TESSERA_LEEWAY"),
    ("session_idle_timeout", "TESSERA_SESSION_IDLE_TIMEOUT"),
    ("session_lifetime", "TESSERA_SESSION_LIFETIME"),
    ("alg", "TESSERA_ALG"),
    ("hmac_secret_file", "TESSERA_HMAC_SECRET_FILE"),
    ("key_rotation_interval", "TESSERA_KEY_ROTATION_INTERVAL"),
    ("key_activation_delay", "TESSERA_KEY_ACTIVATION_DELAY"),
    ("max_token_bytes", "TESSERA_MAX_TOKEN_BYTES"),
    ("header_read_timeout", "TESSERA_HEADER_READ_TIMEOUT"),
    ("refresh_grace", "TESSERA_REFRESH_GRACE"),
    ("trusted_proxies", "TESSERA_TRUSTED_PROXIES"),
    ("audit_retention", "TESSERA_AUDIT_RETENTION"),
    (
        "introspection_secret_file",
        "TESSERA_INTROSPECTION_SECRET_FILE",
    ),
    ("master_key_file", "TESSERA_MASTER_KEY_FILE"),
    ("cors_origins", "TESSERA_CORS_ORIGINS"),
    ("metrics_token_file", "TESSERA_METRICS_TOKEN_FILE"),
    ("log_format", "TESSERA_LOG_FORMAT"),
];

/// A configuration value that cannot be used, with the fix in the message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is invalid.
    #[error("invalid {key} {value:?}: {hint}")]
    Value {
        /// The key, as spelled in the file.
        key: &'static str,
        /// The value given.
        value: String,
        /// How to fix it.
        hint: String,
    },
}

impl ConfigLayer {
    /// Reads a TOML file layer.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // The full message names the line, the column and the key at fault.
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: format!("{error}\n(durations are strings such as \"15m\")"),
        })
    }

    /// Reads the `TESSERA_*` variables from `lookup` (the process environment in
    /// production, a map in tests).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| {
            ENV_KEYS
                .iter()
                .find(|(name, _)| *name == key)
                .and_then(|(_, variable)| lookup(variable))
                .filter(|value| !value.is_empty())
        };
        let max_token_bytes = get("max_token_bytes")
            .map(|value| {
                value.trim().parse::<u64>().map_err(|_| ConfigError::Value {
                    key: "max_token_bytes",
                    value,
                    hint: "give a number of bytes such as 8192".to_owned(),
                })
            })
            .transpose()?;
        Ok(Self {
            listen: get("listen"),
            data_dir: get("data_dir").map(PathBuf::from),
            database_url: get("database_url"),
            redis_url: get("redis_url"),
            access_ttl: get("access_ttl"),
            issuer: get("issuer"),
            audience: get("audience"),
            leeway: get("leeway"),
            session_idle_timeout: get("session_idle_timeout"),
            session_lifetime: get("session_lifetime"),
            alg: get("alg"),
            hmac_secret_file: get("hmac_secret_file").map(PathBuf::from),
            key_rotation_interval: get("key_rotation_interval"),
            key_activation_delay: get("key_activation_delay"),
            max_token_bytes,
            header_read_timeout: get("header_read_timeout"),
            refresh_grace: get("refresh_grace"),
            trusted_proxies: get("trusted_proxies"),
            audit_retention: get("audit_retention"),
            introspection_secret_file: get("introspection_secret_file").map(PathBuf::from),
            master_key_file: get("master_key_file").map(PathBuf::from),
            cors_origins: get("cors_origins"),
            metrics_token_file: get("metrics_token_file").map(PathBuf::from),
            log_format: get("log_format"),
        })
    }

    /// Applies this layer on top of `config`.
    pub fn apply(self, config: &mut ServerConfig) -> Result<(), ConfigError> {
        if let Some(listen) = self.listen {
            config.listen = parse_listen(&listen)?;
        }
        if let Some(data_dir) = self.data_dir {
            config.data_dir = data_dir;
        }
        if let Some(url) = self.database_url {
            config.database_url = Some(DatabaseUrl::parse(&url)?);
        }
        if let Some(url) = self.redis_url {
            config.redis_url = Some(RedisUrl::parse(&url)?);
        }
        if let Some(ttl) = self.access_ttl {
            config.access_ttl = parse_duration("access_ttl", &ttl)?;
        }
        if let Some(issuer) = self.issuer {
            config.issuer = Some(issuer);
        }
        if let Some(audience) = self.audience {
            config.audience = audience;
        }
        if let Some(leeway) = self.leeway {
            config.leeway = parse_duration("leeway", &leeway)?;
        }
        if let Some(idle) = self.session_idle_timeout {
            config.session_idle_timeout = parse_duration("session_idle_timeout", &idle)?;
        }
        if let Some(lifetime) = self.session_lifetime {
            config.session_lifetime = parse_duration("session_lifetime", &lifetime)?;
        }
        if let Some(alg) = self.alg {
            config.alg =
                KeyAlgorithm::from_jose_name(alg.trim()).ok_or_else(|| ConfigError::Value {
                    key: "alg",
                    value: alg.clone(),
                    hint: "use EdDSA, ES256, RS256 or HS256 (exact spelling)".to_owned(),
                })?;
        }
        if let Some(file) = self.hmac_secret_file {
            config.hmac_secret_file = Some(file);
        }
        if let Some(interval) = self.key_rotation_interval {
            config.key_rotation_interval = match interval.trim() {
                "off" | "never" => None,
                text => Some(parse_duration("key_rotation_interval", text)?)
                    .filter(|every| !every.is_zero()),
            };
        }
        if let Some(delay) = self.key_activation_delay {
            config.key_activation_delay = parse_duration("key_activation_delay", &delay)?;
        }
        if let Some(timeout) = self.header_read_timeout {
            config.header_read_timeout = parse_duration("header_read_timeout", &timeout)?;
        }
        if let Some(grace) = self.refresh_grace {
            config.refresh_grace = parse_duration("refresh_grace", &grace)?;
        }
        if let Some(proxies) = self.trusted_proxies {
            config.trusted_proxies =
                crate::client_ip::parse_trusted_proxies(&proxies).map_err(|hint| {
                    ConfigError::Value {
                        key: "trusted_proxies",
                        value: proxies.clone(),
                        hint,
                    }
                })?;
        }
        if let Some(retention) = self.audit_retention {
            config.audit_retention = parse_duration("audit_retention", &retention)?;
        }
        if let Some(origins) = self.cors_origins {
            config.cors_origins = parse_origins(&origins)?;
        }
        if let Some(file) = self.introspection_secret_file {
            config.introspection_secret_file = Some(file);
        }
        if let Some(file) = self.master_key_file {
            config.master_key_file = Some(file);
        }
        if let Some(bytes) = self.max_token_bytes {
            config.max_token_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(file) = self.metrics_token_file {
            config.metrics_token_file = Some(file);
        }
        if let Some(format) = self.log_format {
            config.log_format = LogFormat::parse(&format)?;
        }
        Ok(())
    }
}

impl ServerConfig {
    /// Builds the configuration from its layers, lowest priority first, and checks it.
    pub fn load(
        file: Option<&Path>,
        env: ConfigLayer,
        flags: ConfigLayer,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(path) = file {
            ConfigLayer::from_file(path)?.apply(&mut config)?;
        }
        env.apply(&mut config)?;
        flags.apply(&mut config)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that are each well-formed but unsafe or inconsistent.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let secs = human_duration;
        if self.access_ttl < Duration::from_secs(1) || self.access_ttl > MAX_ACCESS_TTL {
            return Err(ConfigError::Value {
                key: "access_ttl",
                value: secs(self.access_ttl),
                hint: "use a lifetime between 1s and 24h, such as 15m".to_owned(),
            });
        }
        if self.leeway.as_secs() > tessera_token::MAX_LEEWAY_SECS {
            return Err(ConfigError::Value {
                key: "leeway",
                value: secs(self.leeway),
                hint: "use at most 30s".to_owned(),
            });
        }
        if self.session_lifetime < self.access_ttl {
            return Err(ConfigError::Value {
                key: "session_lifetime",
                value: secs(self.session_lifetime),
                hint: "sessions must outlive access tokens: use at least access_ttl".to_owned(),
            });
        }
        if self.session_idle_timeout < self.access_ttl {
            return Err(ConfigError::Value {
                key: "session_idle_timeout",
                value: secs(self.session_idle_timeout),
                hint: "use at least access_ttl, such as 14days".to_owned(),
            });
        }
        if self.header_read_timeout < Duration::from_secs(1)
            || self.header_read_timeout > Duration::from_secs(300)
        {
            return Err(ConfigError::Value {
                key: "header_read_timeout",
                value: secs(self.header_read_timeout),
                hint: "use 1s to 5m".to_owned(),
            });
        }
        if self.refresh_grace > Duration::from_secs(60) {
            return Err(ConfigError::Value {
                key: "refresh_grace",
                value: secs(self.refresh_grace),
                hint: "use at most 60s (0s turns the window off)".to_owned(),
            });
        }
        if !(1024..=65536).contains(&self.max_token_bytes) {
            return Err(ConfigError::Value {
                key: "max_token_bytes",
                value: self.max_token_bytes.to_string(),
                hint: "use 1024 to 65536 bytes".to_owned(),
            });
        }
        if self.alg == KeyAlgorithm::HS256 && self.hmac_secret_file.is_none() {
            return Err(ConfigError::Value {
                key: "alg",
                value: "HS256".to_owned(),
                hint: "HS256 needs hmac_secret_file: a 0600 file of at least 32 random \
                       bytes (e.g. `head -c 32 /dev/urandom > secret`)"
                    .to_owned(),
            });
        }
        if self
            .key_rotation_interval
            .is_some_and(|every| every <= self.key_activation_delay)
        {
            return Err(ConfigError::Value {
                key: "key_rotation_interval",
                value: secs(self.key_rotation_interval.unwrap_or_default()),
                hint: "rotate less often than key_activation_delay, or say off".to_owned(),
            });
        }
        if self.audience.trim().is_empty() {
            return Err(ConfigError::Value {
                key: "audience",
                value: self.audience.clone(),
                hint: "give a non-empty audience such as tessera".to_owned(),
            });
        }
        if let Some(issuer) = &mut self.issuer {
            let trimmed = issuer.trim_end_matches('/');
            if !(trimmed.starts_with("https://") || trimmed.starts_with("http://"))
                || trimmed.contains(char::is_whitespace)
            {
                return Err(ConfigError::Value {
                    key: "issuer",
                    value: issuer.clone(),
                    hint: "give the public URL, such as https://auth.example.com".to_owned(),
                });
            }
            *issuer = trimmed.to_owned();
        }
        Ok(())
    }

    /// The effective configuration as TOML, in the file's own keys. It holds no
    /// secret: HS256, introspection and metrics secrets are only named by their files,
    /// and the database URL's password is replaced by `REDACTED`.
    pub fn to_toml(&self) -> String {
        let duration = human_duration;
        let path = |value: &Option<PathBuf>| value.as_ref().map(|path| path.display().to_string());
        let mut table = toml::Table::new();
        let mut put = |key: &str, value: toml::Value| {
            table.insert(key.to_owned(), value);
        };
        put("listen", self.listen.to_string().into());
        put("data_dir", self.data_dir.display().to_string().into());
        if let Some(url) = &self.database_url {
            put("database_url", url.redacted().into());
        }
        if let Some(url) = &self.redis_url {
            put("redis_url", url.redacted().into());
        }
        put("access_ttl", duration(self.access_ttl).into());
        if let Some(issuer) = &self.issuer {
            put("issuer", issuer.clone().into());
        }
        put("audience", self.audience.clone().into());
        put("leeway", duration(self.leeway).into());
        put(
            "session_idle_timeout",
            duration(self.session_idle_timeout).into(),
        );
        put("session_lifetime", duration(self.session_lifetime).into());
        put("alg", self.alg.jose_name().into());
        if let Some(file) = path(&self.hmac_secret_file) {
            put("hmac_secret_file", file.into());
        }
        put(
            "key_rotation_interval",
            self.key_rotation_interval
                .map_or_else(|| "off".to_owned(), duration)
                .into(),
        );
        put(
            "key_activation_delay",
            duration(self.key_activation_delay).into(),
        );
        put(
            "max_token_bytes",
            i64::try_from(self.max_token_bytes)
                .unwrap_or(i64::MAX)
                .into(),
        );
        put(
            "header_read_timeout",
            duration(self.header_read_timeout).into(),
        );
        put("refresh_grace", duration(self.refresh_grace).into());
        let proxies: Vec<String> = self
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        put("trusted_proxies", proxies.join(",").into());
        put("audit_retention", duration(self.audit_retention).into());
        if let Some(file) = path(&self.introspection_secret_file) {
            put("introspection_secret_file", file.into());
        }
        if let Some(file) = path(&self.master_key_file) {
            put("master_key_file", file.into());
        }
        let origins: Vec<&str> = self
            .cors_origins
            .iter()
            .filter_map(|origin| origin.to_str().ok())
            .collect();
        put("cors_origins", origins.join(",").into());
        if let Some(file) = path(&self.metrics_token_file) {
            put("metrics_token_file", file.into());
        }
        put("log_format", self.log_format.name().into());
        toml::to_string(&table).unwrap_or_default()
    }

    /// The issuer for a server bound to `bound`: the configured one, or an http URL
    /// of the bound address (an unspecified address reads as `localhost`).
    pub fn issuer_for(&self, bound: SocketAddr) -> String {
        if let Some(issuer) = &self.issuer {
            return issuer.clone();
        }
        if bound.ip().is_unspecified() {
            format!("http://localhost:{}", bound.port())
        } else {
            format!("http://{bound}")
        }
    }
}

/// A duration in the largest whole unit that expresses it (`90days`, `15m`, `10s`),
/// as people write them in the file; parse_duration reads it back.
fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}days", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Value {
        key: "listen",
        value: value.to_owned(),
        hint: "give an IP address and port, such as 127.0.0.1:8080 or [::1]:8080".to_owned(),
    })
}

/// Comma-separated origins, each exactly `scheme://host[:port]` as browsers send it.
fn parse_origins(list: &str) -> Result<Vec<axum::http::HeaderValue>, ConfigError> {
    let invalid = |origin: &str| ConfigError::Value {
        key: "cors_origins",
        value: origin.to_owned(),
        hint: "give origins such as https://app.example.com,http://localhost:3000 \
               (scheme, host and port; no path, no *)"
            .to_owned(),
    };
    list.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let authority = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .ok_or_else(|| invalid(origin))?;
            if authority.is_empty() || authority.contains(['/', '*', ' ', '?', '#', '@']) {
                return Err(invalid(origin));
            }
            axum::http::HeaderValue::from_str(origin).map_err(|_| invalid(origin))
        })
        .collect()
}

fn parse_duration(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|_| ConfigError::Value {
        key,
        value: value.to_owned(),
        hint: "give a duration such as 30s, 15m, 2h or 14days".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> ConfigLayer {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        ConfigLayer::from_env(|key| map.get(key).cloned()).unwrap()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config =
            ServerConfig::load(None, ConfigLayer::default(), ConfigLayer::default()).unwrap();

        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./tessera-data"));
        assert_eq!(config.access_ttl, Duration::from_secs(900));
        assert_eq!(config.issuer_for(config.listen), "http://127.0.0.1:8080");
    }

    #[test]
    fn layers_apply_in_order_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tessera.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\naccess_ttl = \"10m\"\nleeway = \"5s\"\n",
        )
        .unwrap();
        let env = env(&[("TESSERA_ACCESS_TTL", "5m"), ("TESSERA_LEEWAY", "7s")]);
        let flags = ConfigLayer {
            leeway: Some("3s".to_owned()),
            ..ConfigLayer::default()
        };

        let config = ServerConfig::load(Some(&file), env, flags).unwrap();

        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.access_ttl, Duration::from_secs(300));
        assert_eq!(config.leeway, Duration::from_secs(3));
    }

    #[test]
    fn bad_values_are_refused_with_a_hint() {
        for (variable, value) in [
            ("TESSERA_ACCESS_TTL", "forever"),
            ("TESSERA_ACCESS_TTL", "0s"),
            ("TESSERA_ACCESS_TTL", "2days"),
            ("TESSERA_LEEWAY", "31s"),
            ("TESSERA_LISTEN", "localhost"),
            ("TESSERA_ISSUER", "auth.example.com"),
            ("TESSERA_ALG", "none"),
            ("TESSERA_ALG", "eddsa"),
            ("TESSERA_ALG", "HS256"),
            ("TESSERA_MAX_TOKEN_BYTES", "100"),
            ("TESSERA_KEY_ROTATION_INTERVAL", "1m"),
            ("TESSERA_LOG_FORMAT", "yaml"),
        ] {
            let error = ServerConfig::load(None, env(&[(variable, value)]), ConfigLayer::default())
                .unwrap_err();
            assert!(
                matches!(error, ConfigError::Value { .. }),
                "{variable}={value}"
            );
        }
    }

    #[test]
    fn the_printed_configuration_loads_back_to_the_same_settings() {
        let flags = ConfigLayer {
            access_ttl: Some("5m".to_owned()),
            trusted_proxies: Some("10.0.0.0/8".to_owned()),
            key_rotation_interval: Some("off".to_owned()),
            ..ConfigLayer::default()
        };
        let config = ServerConfig::load(None, ConfigLayer::default(), flags).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("printed.toml");

        std::fs::write(&file, config.to_toml()).unwrap();
        let reloaded =
            ServerConfig::load(Some(&file), ConfigLayer::default(), ConfigLayer::default())
                .unwrap();

        assert_eq!(reloaded.to_toml(), config.to_toml());
        assert_eq!(reloaded.access_ttl, Duration::from_secs(300));
        assert_eq!(reloaded.key_rotation_interval, None);
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tessera.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();

        let error = ServerConfig::load(Some(&file), ConfigLayer::default(), ConfigLayer::default())
            .unwrap_err();

        assert!(error.to_string().contains("lisen"));
    }

    #[test]
    fn a_postgres_url_from_the_environment_chooses_postgres() {
        let url = "postgresql://tessera:s3cret@db.internal:5432/tessera";

        let config = ServerConfig::load(
            None,
            env(&[("TESSERA_DATABASE_URL", url)]),
            ConfigLayer::default(),
        )
        .unwrap();

        assert_eq!(config.database_url.unwrap().expose(), url);
    }

    #[test]
    fn database_urls_other_than_postgres_are_refused_saying_what_is_accepted() {
        for url in [
            "sqlite://tessera.db",
            "mysql://db/tessera",
            "postgres://",
            "db:5432",
        ] {
            let error = ServerConfig::load(
                None,
                env(&[("TESSERA_DATABASE_URL", url)]),
                ConfigLayer::default(),
            )
            .unwrap_err();

            assert!(error.to_string().contains("postgres://"), "{url}: {error}");
        }
    }

    #[test]
    fn the_printed_database_url_hides_its_password() {
        let flags = ConfigLayer {
            database_url: Some(
                "postgres://tessera:s3cret@db:5432/tessera?sslmode=disable&password=other"
                    .to_owned(),
            ),
            ..ConfigLayer::default()
        };
        let config = ServerConfig::load(None, ConfigLayer::default(), flags).unwrap();

        let printed = config.to_toml();

        assert!(!printed.contains("s3cret") && !printed.contains("other"));
        assert!(printed.contains(
            "postgres://tessera:REDACTED@db:5432/tessera?sslmode=disable&password=REDACTED"
        ));
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn an_unspecified_listen_address_gives_a_localhost_issuer() {
        let config = ServerConfig::default();

        let issuer = config.issuer_for("0.0.0.0:8080".parse().unwrap());

        assert_eq!(issuer, "http://localhost:8080");
    }
}

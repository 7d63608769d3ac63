//! The harness the server's integration tests share: each test app is a real server
//! on a free loopback port with a fresh data dir, served by a task of the test's
//! runtime. With `TESSERA_TEST_DATABASE_URL` set to a PostgreSQL server
//! (`postgres://postgres@127.0.0.1:5432/test`), each app also gets a fresh database
//! of its own there, dropped with the app; unset, the app uses SQLite in its data dir.
//! So every test runs unchanged on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tessera_server::config::DatabaseUrl;
use tessera_server::{Server, ServerConfig, key_admin};

/// The PostgreSQL server to make test databases on; unset means SQLite.
pub const DATABASE_VARIABLE: &str = "TESSERA_TEST_DATABASE_URL";
/// Every test database's name starts with this, and only those are ever dropped.
const DATABASE_PREFIX: &str = "tessera_t_";
/// Test databases older than this are left over from a run that was killed.
const LEFTOVER_AGE: Duration = Duration::from_secs(60 * 60);

/// A running server and a client for it; the server's database and data dir go
/// when this is dropped.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub http: reqwest::Client,
    /// The configuration the server was started with.
    pub config: ServerConfig,
    /// Password verifications computed so far (see `Server::verification_counter`).
    pub verifications: Arc<dyn Fn() -> u64 + Send + Sync>,
    _setup: TestSetup,
}

impl TestApp {
    /// `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Starts a server with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_in(|_, _| {}).await
}

/// Starts a server after `adjust` has changed its test configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestApp {
    spawn_app_in(|config, _| adjust(config)).await
}

/// Starts a server after `adjust` has changed its test configuration; `adjust` also
/// gets a scratch folder for files the configuration names (secrets).
pub async fn spawn_app_in(adjust: impl FnOnce(&mut ServerConfig, &Path)) -> TestApp {
    let mut setup = TestSetup::new().await;
    adjust(&mut setup.config, setup.scratch.path());
    setup.spawn().await
}

/// What a test server needs before it starts: a configuration listening on a free
/// loopback port, its scratch folder (the data dir is `data` inside), and its
/// database when testing on PostgreSQL.
pub struct TestSetup {
    pub config: ServerConfig,
    scratch: tempfile::TempDir,
    database: Option<TestDatabase>,
}

impl TestSetup {
    /// A fresh data dir and, on PostgreSQL, a fresh database.
    pub async fn new() -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let database = TestDatabase::create_if_asked().await;
        // PostgreSQL keeps the signing keys in the database, sealed under a master key.
        let master_key_file = database.as_ref().map(|_| {
            use std::os::unix::fs::PermissionsExt as _;
            let file = scratch.path().join("master.key");
            // Two random UUIDs: 244 random bits, plenty for a test.
            let secret = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()].map(uuid::Uuid::into_bytes);
            std::fs::write(&file, secret.concat()).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            file
        });
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: scratch.path().join("data"),
            database_url: database.as_ref().map(TestDatabase::url),
            master_key_file,
            ..ServerConfig::default()
        };
        Self {
            config,
            scratch,
            database,
        }
    }

    /// A scratch folder for files the configuration names.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// Makes the server's signing key before it starts, as a file in the data dir's key
    /// folder, for white-box tests that sign with it. With PostgreSQL the server takes
    /// the folder's keys into its empty database at its first start, so the file and
    /// the database hold the same key.
    pub async fn with_key_on_disk(self) -> Self {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.config.data_dir)
            .unwrap();
        let folder_only = ServerConfig {
            database_url: None,
            master_key_file: None,
            ..self.config.clone()
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        key_admin::rotate(&folder_only, Some(Duration::ZERO), now as i64)
            .await
            .unwrap();
        self
    }

    /// Binds and serves; the server lives until the test's runtime ends.
    pub async fn spawn(self) -> TestApp {
        let server = Server::bind(self.config.clone()).await.unwrap();
        let base = server.base_url().to_owned();
        let verifications = Arc::new(server.verification_counter());
        tokio::spawn(server.serve(std::future::pending()));
        TestApp {
            base,
            http: reqwest::Client::new(),
            config: self.config.clone(),
            verifications,
            _setup: self,
        }
    }
}

/// A database made for one test app on the PostgreSQL server of
/// `TESSERA_TEST_DATABASE_URL`, dropped when this is.
pub struct TestDatabase {
    /// The server URL as given, for administrative statements.
    server_url: String,
    name: String,
    /// The URL of this database.
    url: String,
}

impl TestDatabase {
    /// A new database when `TESSERA_TEST_DATABASE_URL` is set, else none.
    pub async fn create_if_asked() -> Option<Self> {
        let server_url = std::env::var(DATABASE_VARIABLE)
            .ok()
            .filter(|url| !url.is_empty())?;
        let mut connection = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|error| panic!("cannot reach {DATABASE_VARIABLE}: {error}"));
        drop_leftovers(&mut connection).await;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let random = uuid::Uuid::new_v4().simple().to_string();
        // Only digits, `_` and hex: safe to write into the statement.
        let name = format!("{DATABASE_PREFIX}{created}_{}", &random[..12]);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        Some(Self {
            url: with_database(&server_url, &name),
            server_url,
            name,
        })
    }

    /// Its URL, for the server's `database_url`.
    pub fn url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.url).unwrap()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection to it of the test's own, beside the server's pool.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread of
        // its own with a small runtime does the work. FORCE ends the connections the
        // server's pool still holds.
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&server_url).await?;
                drop_database(&mut connection, &name).await?;
                connection.close().await
            })
        });
        if let Ok(Err(error)) = dropping.join() {
            eprintln!("cannot drop test database {}: {error}", self.name);
        }
    }
}

/// Drops test databases left by runs that were killed before they could: only names
/// with the test prefix and a creation time over an hour ago, so databases of runs
/// going on beside this one stay.
async fn drop_leftovers(connection: &mut PgConnection) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    SWEPT.call_once(|| first = true);
    if !first {
        return;
    }
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(DATABASE_PREFIX)
            .fetch_all(&mut *connection)
            .await
            .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (name,) in names {
        let Some(created) = creation_time(&name) else {
            continue;
        };
        if now.saturating_sub(created) > LEFTOVER_AGE.as_secs() {
            let _ = drop_database(connection, &name).await;
        }
    }
}

async fn drop_database(connection: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    assert!(creation_time(name).is_some(), "not a test database: {name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(connection)
    .await?;
    Ok(())
}

/// When a test database was made, read from its name (`tessera_t_<secs>_<hex>`);
/// `None` for any other name.
fn creation_time(name: &str) -> Option<u64> {
    let (created, random) = name.strip_prefix(DATABASE_PREFIX)?.split_once('_')?;
    let well_formed = !created.is_empty()
        && created.bytes().all(|byte| byte.is_ascii_digit())
        && random.len() == 12
        && random.bytes().all(|byte| byte.is_ascii_hexdigit());
    well_formed.then(|| created.parse().ok()).flatten()
}

/// `server_url` with its database replaced by `name`, its parameters kept.
fn with_database(server_url: &str, name: &str) -> String {
    let (base, query) = server_url
        .split_once('?')
        .map_or((server_url, ""), |(base, query)| (base, query));
    let authority_start = base.find("://").unwrap() + 3;
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..path_start])
}

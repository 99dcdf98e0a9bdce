//! Named connections: the process-wide [`ConnectionManager`] that maps names such as
//! `"bank_db_1"` to connection pools, in the manner of Rails' `database.yml` and Django's
//! `DATABASES`.
//!
//! Guarantees: the backend is chosen at run time from the URL scheme (`sqlite:`, `postgres:`,
//! `mysql:`/`mariadb:`); a URL's password never appears in `Debug`, `Display`, errors or logs;
//! an unknown name is an error that lists the configured names; looking a name up takes no lock.

use crate::error::{Error, Result};
use arc_swap::ArcSwap;
use serde::Deserialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The database engines a connection can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite (a file, or `sqlite::memory:`).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Backend {
    /// The backend a URL names by its scheme.
    ///
    /// ```
    /// use activerecord::Backend;
    ///
    /// assert_eq!(Backend::from_url("postgres://app@db/bank"), Some(Backend::Postgres));
    /// assert_eq!(Backend::from_url("mariadb://root@127.0.0.1/bank"), Some(Backend::MySql));
    /// assert_eq!(Backend::from_url("sqlite://bank.db?mode=rwc"), Some(Backend::Sqlite));
    /// assert_eq!(Backend::from_url("oracle://x"), None);
    /// ```
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url.split(':').next()?;
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "mysql" | "mariadb" => Some(Backend::MySql),
            _ => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
            Backend::MySql => "MySQL/MariaDB",
        })
    }
}

/// A connection URL whose password is never shown.
///
/// `Debug` and `Display` print the URL with the password replaced by `***`.
///
/// ```
/// use activerecord::DatabaseUrl;
///
/// let url = DatabaseUrl::from("postgres://app:s3cret@db.internal:5432/bank");
/// assert_eq!(url.to_string(), "postgres://app:***@db.internal:5432/bank");
/// assert!(!format!("{url:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The full URL, password included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The password, if the URL has one.
    fn password(&self) -> Option<String> {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
            .filter(|p| !p.is_empty())
    }

    /// `text` with every occurrence of this URL's password (raw or percent-encoded) masked.
    pub(crate) fn redact(&self, text: &str) -> String {
        match self.password() {
            Some(password) => {
                let decoded = percent_encoding::percent_decode_str(&password)
                    .decode_utf8_lossy()
                    .into_owned();
                let mut out = text.replace(&password, "***");
                if !decoded.is_empty() {
                    out = out.replace(&decoded, "***");
                }
                out
            }
            None => text.to_owned(),
        }
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl(url.to_owned())
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut parsed) if parsed.password().is_some() => {
                // Cannot fail: the URL already has a password, so it can have another.
                let _ = parsed.set_password(Some("***"));
                f.write_str(parsed.as_str())
            }
            Ok(_) => f.write_str(&self.0),
            // An unparsable URL may still hold a password after the scheme: show only the scheme.
            Err(_) => write!(f, "{}:<unparsable URL>", self.0.split(':').next().unwrap_or("")),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// How to open one named connection: its URL and its pool settings.
///
/// In a TOML file (see [`ConnectionManager::configure_from_toml`]) each connection is a table
/// under `[databases]`; every field but `url` may be left out.
///
/// ```
/// use activerecord::DatabaseConfig;
/// use std::time::Duration;
///
/// let config = DatabaseConfig::new("sqlite://bank1.db?mode=rwc")
///     .max_connections(4)
///     .acquire_timeout(Duration::from_secs(2));
/// assert_eq!(config.max_connections, 4);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The connection URL; the scheme picks the backend.
    pub url: DatabaseUrl,
    /// The most connections the pool opens (default 10; 1 for `sqlite::memory:`, whose
    /// connections would otherwise each see a different empty database).
    #[serde(default = "DatabaseConfig::default_max_connections")]
    pub max_connections: u32,
    /// Connections kept open even when idle (default 0).
    #[serde(default)]
    pub min_connections: u32,
    /// How long to wait for a free connection before [`Error::PoolTimeout`], in milliseconds
    /// (default 30 000).
    #[serde(default = "DatabaseConfig::default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Ping each connection when it is taken from the pool (default false: a ping is a round trip
    /// on every operation; a broken connection is reported as [`Error::ConnectionLost`] instead).
    #[serde(default)]
    pub test_before_acquire: bool,
    /// SQLite only: how long a writer waits for the database lock, in milliseconds
    /// (default 5 000).
    #[serde(default = "DatabaseConfig::default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
}

impl DatabaseConfig {
    /// A configuration with default pool settings.
    pub fn new(url: impl Into<DatabaseUrl>) -> Self {
        DatabaseConfig {
            url: url.into(),
            max_connections: Self::default_max_connections(),
            min_connections: 0,
            acquire_timeout_ms: Self::default_acquire_timeout_ms(),
            test_before_acquire: false,
            busy_timeout_ms: Self::default_busy_timeout_ms(),
        }
    }

    /// Sets [`max_connections`](Self::max_connections).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets [`min_connections`](Self::min_connections).
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// Sets the acquire timeout.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// Sets [`test_before_acquire`](Self::test_before_acquire).
    pub fn test_before_acquire(mut self, test: bool) -> Self {
        self.test_before_acquire = test;
        self
    }

    fn default_max_connections() -> u32 {
        10
    }
    fn default_acquire_timeout_ms() -> u64 {
        30_000
    }
    fn default_busy_timeout_ms() -> u64 {
        5_000
    }
}

/// The pool behind a connection name.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// A handle to one configured connection pool. Cheap to clone.
///
/// As an [`Executor`](crate::Executor) it runs each statement on its own pooled connection in
/// autocommit mode, even inside a transaction scope: to take part in a scope, pass the scope's
/// `tx`, or use [`ConnectionManager::using`] or [`Ambient`](crate::Ambient).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{Backend, ConnectionManager};
///
/// let db = ConnectionManager::configure("handle_doc", "sqlite::memory:").await?;
/// assert_eq!(db.name(), "handle_doc");
/// assert_eq!(db.backend(), Backend::Sqlite);
/// db.execute("CREATE TABLE t (x INTEGER)").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Database {
    inner: Arc<DatabaseInner>,
}

struct DatabaseInner {
    name: String,
    url: DatabaseUrl,
    pool: Pool,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.inner.name)
            .field("backend", &self.backend())
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Database {
    /// The name it was configured under.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its backend.
    pub fn backend(&self) -> Backend {
        match self.inner.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
            Pool::MySql(_) => Backend::MySql,
        }
    }

    /// Its URL, password masked when displayed.
    pub fn url(&self) -> &DatabaseUrl {
        &self.inner.url
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The sqlx pool, when the backend is SQLite: to drop down to raw sqlx.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.inner.pool {
            Pool::Sqlite(pool) => Some(pool),
            _ => None,
        }
    }

    /// The sqlx pool, when the backend is PostgreSQL: to drop down to raw sqlx.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.inner.pool {
            Pool::Postgres(pool) => Some(pool),
            _ => None,
        }
    }

    /// The sqlx pool, when the backend is MySQL/MariaDB: to drop down to raw sqlx.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// let db = activerecord::ConnectionManager::configure("raw_doc", "sqlite::memory:").await?;
    /// assert!(db.mysql_pool().is_none());
    /// let one: (i64,) = sqlx::query_as("SELECT 1").fetch_one(db.sqlite_pool().unwrap()).await.unwrap();
    /// assert_eq!(one.0, 1);
    /// # Ok(()) }
    /// ```
    pub fn mysql_pool(&self) -> Option<&MySqlPool> {
        match &self.inner.pool {
            Pool::MySql(pool) => Some(pool),
            _ => None,
        }
    }

    /// Runs SQL text with no parameters (DDL, set-up scripts); several statements separated by
    /// `;` are allowed. Never put values into this text: use models or queries, which bind them.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        use crate::Executor as _;
        self.target(None)?.execute_text(sql).await
    }

    /// Closes the pool: waits for connections in use to come back, then closes them all.
    pub async fn close(&self) {
        match &self.inner.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
            Pool::MySql(p) => p.close().await,
        }
    }

    /// Opens the pool described by `config` and checks that one connection can be made.
    pub(crate) async fn open(name: &str, config: &DatabaseConfig) -> Result<Database> {
        let url = config.url.expose();
        let backend = Backend::from_url(url).ok_or_else(|| Error::Configuration {
            connection: name.to_owned(),
            message: format!(
                "unsupported URL scheme in {}: expected sqlite:, postgres:, postgresql:, mysql: or mariadb:",
                config.url
            ),
            source: None,
        })?;
        let setup_error = |what: &str, e: sqlx::Error| Error::Configuration {
            connection: name.to_owned(),
            message: config.url.redact(&format!("{what} {} failed: {e}", config.url)),
            source: None,
        };
        let acquire_timeout = Duration::from_millis(config.acquire_timeout_ms);
        macro_rules! pool_options {
            ($options:ty) => {
                <$options>::new()
                    .max_connections(config.max_connections)
                    .min_connections(config.min_connections)
                    .acquire_timeout(acquire_timeout)
                    .test_before_acquire(config.test_before_acquire)
            };
        }
        let pool = match backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| setup_error("parsing", e))?
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_millis(config.busy_timeout_ms))
                    .foreign_keys(true);
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let max = if in_memory { 1 } else { config.max_connections };
                let pool = pool_options!(SqlitePoolOptions)
                    .max_connections(max)
                    // An in-memory database lives only as long as its one connection.
                    .idle_timeout(if in_memory {
                        None
                    } else {
                        Some(Duration::from_secs(600))
                    })
                    .max_lifetime(if in_memory {
                        None
                    } else {
                        Some(Duration::from_secs(1800))
                    })
                    .connect_with(options)
                    .await
                    .map_err(|e| setup_error("connecting to", e))?;
                Pool::Sqlite(pool)
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url).map_err(|e| setup_error("parsing", e))?;
                let pool = pool_options!(PgPoolOptions)
                    .connect_with(options)
                    .await
                    .map_err(|e| setup_error("connecting to", e))?;
                Pool::Postgres(pool)
            }
            Backend::MySql => {
                // sqlx knows only the `mysql` scheme; MariaDB speaks the same protocol.
                let url = url
                    .strip_prefix("mariadb:")
                    .map_or(url.to_owned(), |rest| format!("mysql:{rest}"));
                let options = MySqlConnectOptions::from_str(&url).map_err(|e| setup_error("parsing", e))?;
                let pool = pool_options!(MySqlPoolOptions)
                    .connect_with(options)
                    .await
                    .map_err(|e| setup_error("connecting to", e))?;
                Pool::MySql(pool)
            }
        };
        tracing::debug!(connection = name, url = %config.url, %backend, "connection configured");
        Ok(Database {
            inner: Arc::new(DatabaseInner {
                name: name.to_owned(),
                url: config.url.clone(),
                pool,
            }),
        })
    }
}

type Registry = BTreeMap<String, Database>;

static REGISTRY: LazyLock<ArcSwap<Registry>> = LazyLock::new(|| ArcSwap::from_pointee(Registry::new()));

/// The process-wide registry of named connections.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{ConnectionManager, Error};
///
/// ConnectionManager::configure("manager_doc", "sqlite::memory:").await?;
/// let db = ConnectionManager::get("manager_doc")?;
/// assert_eq!(db.name(), "manager_doc");
///
/// let err = ConnectionManager::get("manager_dco").unwrap_err();
/// assert!(err.to_string().contains("manager_doc"), "the error lists what is configured");
/// ConnectionManager::close("manager_doc").await;
/// # Ok(()) }
/// ```
pub struct ConnectionManager;

impl ConnectionManager {
    /// Opens a pool for `url` with default settings and registers it as `name`, replacing (and
    /// closing) any pool already registered under that name.
    pub async fn configure(name: &str, url: impl Into<DatabaseUrl>) -> Result<Database> {
        Self::configure_with(name, DatabaseConfig::new(url)).await
    }

    /// Opens a pool described by `config` and registers it as `name`.
    pub async fn configure_with(name: &str, config: DatabaseConfig) -> Result<Database> {
        let database = Database::open(name, &config).await?;
        let previous = REGISTRY.rcu(|registry| {
            let mut registry = Registry::clone(registry);
            registry.insert(name.to_owned(), database.clone());
            registry
        });
        if let Some(old) = previous.get(name) {
            old.close().await;
        }
        Ok(database)
    }

    /// Configures every connection of a TOML file, returning them in name order.
    ///
    /// ```toml
    /// [databases.bank_db_1]
    /// url = "sqlite://bank1.db?mode=rwc"
    ///
    /// [databases.bank_db_2]
    /// url = "postgres://app@localhost/bank2"
    /// max_connections = 20
    /// acquire_timeout_ms = 5000
    /// ```
    pub async fn configure_from_toml(path: impl AsRef<Path>) -> Result<Vec<Database>> {
        let path = path.as_ref();
        let file_error =
            |message: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| Error::Configuration {
                connection: path.display().to_string(),
                message,
                source,
            };
        let text = std::fs::read_to_string(path)
            .map_err(|e| file_error(format!("cannot read the file: {e}"), Some(Box::new(e))))?;
        let configs = parse_toml(&text).map_err(|message| file_error(message, None))?;
        Self::configure_all(configs).await
    }

    /// Configures connections from environment variables:
    /// `ACTIVERECORD_<NAME>_URL` (required) and, optionally, `ACTIVERECORD_<NAME>_MAX_CONNECTIONS`
    /// and `ACTIVERECORD_<NAME>_ACQUIRE_TIMEOUT_MS`. The connection is named `<name>` in lower case:
    /// `ACTIVERECORD_BANK_DB_1_URL` configures `bank_db_1`.
    pub async fn configure_from_env() -> Result<Vec<Database>> {
        let configs = configs_from_env(std::env::vars()).map_err(|(name, message)| Error::Configuration {
            connection: name,
            message,
            source: None,
        })?;
        Self::configure_all(configs).await
    }

    async fn configure_all(configs: BTreeMap<String, DatabaseConfig>) -> Result<Vec<Database>> {
        let mut opened = Vec::with_capacity(configs.len());
        for (name, config) in configs {
            opened.push(Self::configure_with(&name, config).await?);
        }
        Ok(opened)
    }

    /// The connection registered as `name`.
    pub fn get(name: &str) -> Result<Database> {
        let registry = REGISTRY.load();
        registry.get(name).cloned().ok_or_else(|| Error::UnknownConnection {
            name: name.to_owned(),
            configured: registry.keys().cloned().collect(),
        })
    }

    /// The names of every configured connection, sorted.
    pub fn names() -> Vec<String> {
        REGISTRY.load().keys().cloned().collect()
    }

    /// Forgets `name` and closes its pool. Does nothing for an unknown name.
    pub async fn close(name: &str) {
        let previous = REGISTRY.rcu(|registry| {
            let mut registry = Registry::clone(registry);
            registry.remove(name);
            registry
        });
        if let Some(old) = previous.get(name) {
            old.close().await;
        }
    }

    /// Forgets and closes every connection.
    pub async fn close_all() {
        let previous = REGISTRY.swap(Arc::new(Registry::new()));
        for database in previous.values() {
            database.close().await;
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    databases: BTreeMap<String, DatabaseConfig>,
}

fn parse_toml(text: &str) -> std::result::Result<BTreeMap<String, DatabaseConfig>, String> {
    let file: TomlFile = toml::from_str(text).map_err(|e| format!("invalid configuration: {e}"))?;
    Ok(file.databases)
}

const ENV_PREFIX: &str = "ACTIVERECORD_";

fn configs_from_env(
    vars: impl Iterator<Item = (String, String)>,
) -> std::result::Result<BTreeMap<String, DatabaseConfig>, (String, String)> {
    let vars: BTreeMap<String, String> = vars.filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    let mut configs = BTreeMap::new();
    for (key, url) in &vars {
        let Some(upper) = key.strip_prefix(ENV_PREFIX).and_then(|k| k.strip_suffix("_URL")) else {
            continue;
        };
        let name = upper.to_lowercase();
        let mut config = DatabaseConfig::new(url.as_str());
        let number = |suffix: &str| -> std::result::Result<Option<u64>, (String, String)> {
            let var = format!("{ENV_PREFIX}{upper}_{suffix}");
            vars.get(&var)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| (name.clone(), format!("{var} must be a whole number, not {v:?}")))
                })
                .transpose()
        };
        if let Some(max) = number("MAX_CONNECTIONS")? {
            config.max_connections = u32::try_from(max).unwrap_or(u32::MAX);
        }
        if let Some(ms) = number("ACQUIRE_TIMEOUT_MS")? {
            config.acquire_timeout_ms = ms;
        }
        configs.insert(name, config);
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_raw_and_encoded_passwords() {
        let url = DatabaseUrl::from("mysql://root:p%40ss@127.0.0.1:3306/bank");
        assert_eq!(url.to_string(), "mysql://root:***@127.0.0.1:3306/bank");
        assert_eq!(url.redact("bad password p%40ss / p@ss"), "bad password *** / ***");
        let no_password = DatabaseUrl::from("sqlite://bank.db");
        assert_eq!(no_password.to_string(), "sqlite://bank.db");
    }

    #[test]
    fn toml_lists_connections_with_defaults() {
        let configs = parse_toml(
            "[databases.a]\nurl = \"sqlite::memory:\"\n[databases.b]\nurl = \"postgres://u:pw@h/db\"\nmax_connections = 3\n",
        )
        .unwrap();
        assert_eq!(configs["a"].max_connections, 10);
        assert_eq!(configs["b"].max_connections, 3);
        assert!(!format!("{:?}", configs["b"]).contains("pw"));
    }

    #[test]
    fn toml_rejects_unknown_keys() {
        let err = parse_toml("[databases.a]\nurl = \"sqlite::memory:\"\nmax_conections = 3\n").unwrap_err();
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn env_names_are_lower_case_with_options() {
        let vars = [
            ("ACTIVERECORD_BANK_DB_1_URL", "sqlite::memory:"),
            ("ACTIVERECORD_BANK_DB_1_MAX_CONNECTIONS", "4"),
            ("ACTIVERECORD_LEDGER_URL", "postgres://x@y/z"),
            ("UNRELATED", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let configs = configs_from_env(vars.into_iter()).unwrap();
        assert_eq!(configs.keys().collect::<Vec<_>>(), ["bank_db_1", "ledger"]);
        assert_eq!(configs["bank_db_1"].max_connections, 4);
    }

    #[test]
    fn env_rejects_bad_numbers() {
        let vars = [
            ("ACTIVERECORD_A_URL", "sqlite::memory:"),
            ("ACTIVERECORD_A_MAX_CONNECTIONS", "many"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let (name, message) = configs_from_env(vars.into_iter()).unwrap_err();
        assert_eq!(name, "a");
        assert!(message.contains("ACTIVERECORD_A_MAX_CONNECTIONS"), "{message}");
    }
}

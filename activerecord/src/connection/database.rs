//! [`Database`]: one configured connection pool, opened with an eager connection attempt that
//! reports why a server cannot be reached.

use super::config::{DatabaseConfig, pick, split_sqlite_url};
use super::control::Control;
use super::url::DatabaseUrl;
use super::waits::{self, WriterLock};
use crate::backend::{Backend, probe_markers};
use crate::error::{ConnectFailure, Error, Result};
use sqlx::Connection as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The typed error for a connection attempt that failed.
fn connect_error(name: &str, url: &DatabaseUrl, address: String, source: sqlx::Error) -> Error {
    let cause = match &source {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ConnectFailure::Refused { address }
        }
        sqlx::Error::Tls(_) => ConnectFailure::Tls,
        sqlx::Error::Database(db) => crate::backend::connect_failure(db.as_ref(), address),
        _ => ConnectFailure::Other,
    };
    let raw = source.to_string();
    let detail = url.redact(&raw);
    Error::Connect {
        connection: name.to_owned(),
        cause,
        // The driver's error stays reachable unless its text would show a password.
        source: (detail == raw && {
            let debug = format!("{source:?}");
            url.redact(&debug) == debug
        })
        .then(|| Box::new(source)),
        detail,
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
/// `tx`, or use [`ConnectionManager::using`](crate::ConnectionManager::using) or [`Ambient`](crate::Ambient).
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
    /// SQLite: the database file, resolved when the pool opened.
    sqlite_file: Option<PathBuf>,
    /// Whether the marker table exists: found when the pool opened, or created by
    /// `migrate::run` since.
    markers: AtomicBool,
    /// How long a statement of a unit of work over several databases waits for a lock here.
    lock_timeout: Duration,
    /// SQLite: how long a statement waits for the file's lock.
    busy_timeout: Duration,
    control: Control,
    /// SQLite: the file's write lock among this process's scopes.
    writer_lock: Option<Arc<WriterLock>>,
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

    /// SQLite: the database's file (for `sqlite::memory:`, a name of its own), so that two
    /// connection names for one file are recognised as one writer.
    pub(crate) fn sqlite_file(&self) -> Option<&Path> {
        self.inner.sqlite_file.as_deref()
    }

    /// Whether units of work leave commit markers here (the marker table exists).
    pub(crate) fn markers_enabled(&self) -> bool {
        self.inner.markers.load(Ordering::Relaxed)
    }

    /// How long a statement of a unit of work over several databases waits for a row lock here
    /// (see [`DatabaseConfig::lock_timeout`]).
    pub(crate) fn lock_timeout(&self) -> Duration {
        self.inner.lock_timeout
    }

    /// Records that the marker table exists (its migration ran).
    pub(crate) fn enable_markers(&self) {
        self.inner.markers.store(true, Ordering::Relaxed);
    }

    /// SQLite: the file's write lock among this process's scopes.
    pub(super) fn writer_lock(&self) -> &Arc<WriterLock> {
        self.inner
            .writer_lock
            .as_ref()
            .expect("only SQLite write transactions wait for the file's write lock")
    }

    /// SQLite: how long a statement waits for the file's lock (see
    /// [`DatabaseConfig::busy_timeout`]).
    pub(crate) fn busy_timeout(&self) -> Duration {
        self.inner.busy_timeout
    }

    pub(super) fn control_slot(&self) -> &Control {
        &self.inner.control
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

    /// Closes the pool: waits for connections in use to come back, then closes them all.
    pub async fn close(&self) {
        match &self.inner.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
            Pool::MySql(p) => p.close().await,
        }
    }

    /// Opens the pool described by `config`. Unless the configuration is lazy, first makes one
    /// connection outside the pool, so that a failure is reported at once with its cause
    /// ([`Error::Connect`]) instead of as a pool timeout.
    pub(crate) async fn open(name: &str, config: &DatabaseConfig) -> Result<Database> {
        let url = config.url.expose();
        let config_error = |message: String| Error::Configuration {
            connection: name.to_owned(),
            message: config.url.redact(&message),
            source: None,
        };
        let backend = Backend::from_url(url).ok_or_else(|| {
            config_error(format!(
                "unsupported URL scheme in {}: expected sqlite:, postgres:, postgresql:, mysql: or mariadb:",
                config.url
            ))
        })?;
        let parse_error = |e: sqlx::Error| config_error(format!("parsing {} failed: {e}", config.url));
        if backend != Backend::Sqlite && (config.synchronous.is_some() || config.journal_mode.is_some()) {
            return Err(config_error(format!(
                "synchronous and journal_mode apply to SQLite only, and {} is a {backend} URL: remove them",
                config.url
            )));
        }
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
        // Found by the probe; a lazy pool leaves no markers until `migrate::run` runs on it.
        let mut markers = false;
        // One connection outside the pool (sqlx's pool would retry a refused connection until the
        // acquire timeout and then report only that it timed out), then the pool.
        macro_rules! open_pool {
            ($pool_options:expr, $connection:ty, $options:expr, $address:expr) => {{
                let options = $options;
                if config.lazy {
                    $pool_options.connect_lazy_with(options)
                } else {
                    match <$connection>::connect_with(&options).await {
                        Ok(mut connection) => {
                            use sqlx::Executor as _;
                            markers = connection
                                .fetch_optional(sqlx::AssertSqlSafe(probe_markers()))
                                .await
                                .is_ok();
                            // Only a probe: a failed goodbye changes nothing.
                            let _ = connection.close().await;
                        }
                        Err(e) => return Err(connect_error(name, &config.url, $address, e)),
                    }
                    // The probe proved the settings; the pool opens its connections as they are
                    // needed, instead of connecting a second time now.
                    $pool_options.connect_lazy_with(options)
                }
            }};
        }
        let mut sqlite_file = None;
        let pool = match backend {
            Backend::Sqlite => {
                let parsed = split_sqlite_url(url).map_err(config_error)?;
                let synchronous = pick("synchronous", config.synchronous, parsed.synchronous).map_err(config_error)?;
                let journal_mode =
                    pick("journal_mode", config.journal_mode, parsed.journal_mode).map_err(config_error)?;
                let options = SqliteConnectOptions::from_str(&parsed.url)
                    .map_err(parse_error)?
                    .journal_mode(journal_mode.to_sqlx())
                    .synchronous(synchronous.to_sqlx())
                    .busy_timeout(Duration::from_millis(config.busy_timeout_ms))
                    .foreign_keys(true);
                let in_memory = parsed.url.contains(":memory:") || parsed.url.contains("mode=memory");
                let max = if in_memory { 1 } else { config.max_connections };
                let pool_options = pool_options!(SqlitePoolOptions)
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
                    });
                let file = options.get_filename().to_owned();
                let path = file.display().to_string();
                let pool = open_pool!(pool_options, sqlx::SqliteConnection, options, path.clone());
                // Resolved once, after the probe created the file: two names for one file are one
                // writer. An in-memory database belongs to its name alone.
                sqlite_file = Some(if in_memory {
                    PathBuf::from(format!("memory:{name}"))
                } else {
                    std::fs::canonicalize(&file)
                        .or_else(|_| std::path::absolute(&file))
                        .unwrap_or(file)
                });
                Pool::Sqlite(pool)
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url).map_err(parse_error)?;
                let address = server_address(options.get_socket(), options.get_host(), options.get_port());
                Pool::Postgres(open_pool!(
                    pool_options!(PgPoolOptions),
                    sqlx::PgConnection,
                    options,
                    address.clone()
                ))
            }
            Backend::MySql => {
                // sqlx knows only the `mysql` scheme; MariaDB speaks the same protocol.
                let url = url
                    .strip_prefix("mariadb:")
                    .map_or(url.to_owned(), |rest| format!("mysql:{rest}"));
                let options = MySqlConnectOptions::from_str(&url).map_err(parse_error)?;
                let address = server_address(options.get_socket(), options.get_host(), options.get_port());
                Pool::MySql(open_pool!(
                    pool_options!(MySqlPoolOptions),
                    sqlx::MySqlConnection,
                    options,
                    address.clone()
                ))
            }
        };
        tracing::debug!(connection = name, url = %config.url, %backend, lazy = config.lazy, "connection configured");
        Ok(Database {
            inner: Arc::new(DatabaseInner {
                name: name.to_owned(),
                url: config.url.clone(),
                pool,
                markers: AtomicBool::new(markers),
                lock_timeout: config.get_lock_timeout(),
                busy_timeout: config.get_busy_timeout(),
                control: Control::default(),
                writer_lock: sqlite_file.as_deref().map(waits::writer_lock),
                sqlite_file,
            }),
        })
    }
}

/// Where a server connection goes: its Unix socket, else `host:port`.
fn server_address(socket: Option<&std::path::PathBuf>, host: &str, port: u16) -> String {
    match socket {
        Some(path) => path.display().to_string(),
        None if host.contains(':') => format!("[{host}]:{port}"),
        None => format!("{host}:{port}"),
    }
}

//! Named connections: the process-wide [`ConnectionManager`] that maps names such as
//! `"bank_db_1"` to connection pools, in the manner of Rails' `database.yml` and Django's
//! `DATABASES`.
//!
//! Guarantees: the backend is chosen at run time from the URL scheme (`sqlite:`, `postgres:`,
//! `mysql:`/`mariadb:`); a URL's password never appears in `Debug`, `Display`, errors or logs;
//! an unknown name is an error that lists the configured names; looking a name up takes no lock.

use crate::error::{ConnectFailure, Error, Result};
use arc_swap::ArcSwap;
use serde::Deserialize;
use sqlx::Connection as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
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

    /// `text` with every occurrence of this URL's password (raw or percent-encoded) masked, and
    /// any other `scheme://user:password@` password too (see [`redact_secrets`]).
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut known = Vec::new();
        if let Some(password) = self.password() {
            known.push(password);
        }
        redact_known(text, &[self.0.as_str()], known)
    }
}

/// `text` with the password of every `scheme://user:password@` it holds masked, whether or not
/// the URL parses (a configuration error may quote a malformed one), and every password found that
/// way in `sources` (the texts the error was built from) masked wherever it appears, raw or
/// percent-decoded. Errs on the side of masking too much: from the first `:` after `scheme://` to
/// the last `@` of the line.
pub(crate) fn redact_secrets(text: &str, sources: &[&str]) -> String {
    redact_known(text, sources, Vec::new())
}

fn redact_known(text: &str, sources: &[&str], mut known: Vec<String>) -> String {
    for source in sources.iter().copied().chain([text]) {
        for line in source.lines() {
            for span in password_spans(line) {
                known.push(line[span].to_owned());
            }
        }
    }
    let decoded: Vec<String> = known
        .iter()
        .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
        .collect();
    known.extend(decoded);
    known.retain(|p| !p.is_empty() && p != "***");
    // Longest first, so that a password containing another is masked whole.
    known.sort_by_key(|p| std::cmp::Reverse(p.len()));
    known.dedup();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut last = 0;
        for span in password_spans(line) {
            out.push_str(&line[last..span.start]);
            out.push_str("***");
            last = span.end;
        }
        out.push_str(&line[last..]);
    }
    for password in &known {
        out = out.replace(password.as_str(), "***");
    }
    out
}

/// The byte ranges of `line` that hold the password of a `scheme://user:password@host`: from
/// the `:` after the user name to the last `@` of the line.
fn password_spans(line: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(found) = line[from..].find("://") {
        let user_start = from + found + 3;
        let rest = &line[user_start..];
        let user_end = rest.find(|c: char| matches!(c, ':' | '@' | '/' | '"' | '\'') || c.is_whitespace());
        from = user_start;
        if let Some(user_len) = user_end.filter(|&u| rest[u..].starts_with(':')) {
            let start = user_start + user_len + 1;
            if let Some(at) = line.rfind('@').filter(|&at| at > start) {
                spans.push(start..at);
                from = at;
            }
        }
    }
    spans
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
/// Built with [`DatabaseConfig::new`] and its builder methods, read with the `get_` methods. In a
/// TOML file (see [`ConnectionManager::configure_from_toml`]) each connection is a table under
/// `[databases]` whose keys are the builder methods' names (`acquire_timeout_ms` and
/// `busy_timeout_ms` in milliseconds); every key but `url` may be left out. The whole list, with
/// the environment variables that set the same things, is in `docs/configuration.md`.
///
/// ```
/// use activerecord::{DatabaseConfig, Synchronous};
/// use std::time::Duration;
///
/// let config = DatabaseConfig::new("sqlite://bank1.db?mode=rwc")
///     .max_connections(4)
///     .acquire_timeout(Duration::from_secs(2))
///     .synchronous(Synchronous::Normal);
/// assert_eq!(config.get_max_connections(), 4);
/// assert_eq!(config.get_acquire_timeout(), Duration::from_secs(2));
/// assert_eq!(config.get_synchronous(), Some(Synchronous::Normal));
/// assert!(!config.get_lazy());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    url: DatabaseUrl,
    #[serde(default = "DatabaseConfig::default_max_connections")]
    max_connections: u32,
    #[serde(default)]
    min_connections: u32,
    #[serde(default = "DatabaseConfig::default_acquire_timeout_ms")]
    acquire_timeout_ms: u64,
    #[serde(default)]
    test_before_acquire: bool,
    #[serde(default = "DatabaseConfig::default_busy_timeout_ms")]
    busy_timeout_ms: u64,
    #[serde(default)]
    lazy: bool,
    #[serde(default)]
    synchronous: Option<Synchronous>,
    #[serde(default)]
    journal_mode: Option<JournalMode>,
}

impl DatabaseConfig {
    /// A configuration with default pool settings.
    ///
    /// ```
    /// let config = activerecord::DatabaseConfig::new("postgres://app:s3cret@db/bank");
    /// assert_eq!(config.get_max_connections(), 10);
    /// assert_eq!(config.get_url().to_string(), "postgres://app:***@db/bank");
    /// ```
    pub fn new(url: impl Into<DatabaseUrl>) -> Self {
        DatabaseConfig {
            url: url.into(),
            max_connections: Self::default_max_connections(),
            min_connections: 0,
            acquire_timeout_ms: Self::default_acquire_timeout_ms(),
            test_before_acquire: false,
            busy_timeout_ms: Self::default_busy_timeout_ms(),
            lazy: false,
            synchronous: None,
            journal_mode: None,
        }
    }

    /// The most connections the pool opens (default 10; always 1 for an in-memory SQLite
    /// database, whose connections would otherwise each see a different empty database).
    ///
    /// ```
    /// let config = activerecord::DatabaseConfig::new("sqlite::memory:").max_connections(3);
    /// assert_eq!(config.get_max_connections(), 3);
    /// ```
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Connections kept open even when idle (default 0).
    ///
    /// ```
    /// let config = activerecord::DatabaseConfig::new("sqlite::memory:").min_connections(1);
    /// assert_eq!(config.get_min_connections(), 1);
    /// ```
    #[must_use]
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// How long to wait for a free connection before [`Error::PoolTimeout`] (default 30 s; TOML
    /// key `acquire_timeout_ms`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = activerecord::DatabaseConfig::new("sqlite::memory:").acquire_timeout(Duration::from_secs(2));
    /// assert_eq!(config.get_acquire_timeout(), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// Pings each connection when it is taken from the pool (default false: a ping is a round trip
    /// on every operation; a broken connection is reported as [`Error::ConnectionLost`] instead).
    ///
    /// ```
    /// let config = activerecord::DatabaseConfig::new("sqlite::memory:").test_before_acquire(true);
    /// assert!(config.get_test_before_acquire());
    /// ```
    #[must_use]
    pub fn test_before_acquire(mut self, test: bool) -> Self {
        self.test_before_acquire = test;
        self
    }

    /// SQLite only: how long a writer waits for the database lock (default 5 s; TOML key
    /// `busy_timeout_ms`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = activerecord::DatabaseConfig::new("sqlite::memory:").busy_timeout(Duration::from_secs(1));
    /// assert_eq!(config.get_busy_timeout(), Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// Opens no connection when configured (default false). By default configuring makes one
    /// connection first, outside the pool, so that a refused connection, rejected credentials or
    /// a missing database are reported at once as [`Error::Connect`], with their cause. A lazy
    /// pool configures without a server; its first connection is made when first used, and a
    /// failure then surfaces as [`Error::PoolTimeout`] after the acquire timeout.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, DatabaseConfig};
    ///
    /// // Nothing listens on port 1: a lazy pool configures all the same.
    /// let config = DatabaseConfig::new("postgres://app@127.0.0.1:1/bank").lazy(true);
    /// assert!(config.get_lazy());
    /// ConnectionManager::configure_with("lazy_doc", config).await?;
    /// ConnectionManager::close("lazy_doc").await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// SQLite only: when a commit waits for the disk (`PRAGMA synchronous`; default
    /// [`Synchronous::Full`]). Also settable as the URL parameter `synchronous=normal`; setting
    /// both to different values is a configuration error. What each value survives is in
    /// `docs/configuration.md`.
    ///
    /// ```
    /// use activerecord::{DatabaseConfig, Synchronous};
    /// let config = DatabaseConfig::new("sqlite://bank.db?mode=rwc").synchronous(Synchronous::Normal);
    /// assert_eq!(config.get_synchronous(), Some(Synchronous::Normal));
    /// ```
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = Some(synchronous);
        self
    }

    /// SQLite only: how the database keeps its rollback journal (`PRAGMA journal_mode`; default
    /// [`JournalMode::Wal`]). Also settable as the URL parameter `journal_mode=delete`; setting
    /// both to different values is a configuration error.
    ///
    /// ```
    /// use activerecord::{DatabaseConfig, JournalMode};
    /// let config = DatabaseConfig::new("sqlite://bank.db?mode=rwc").journal_mode(JournalMode::Delete);
    /// assert_eq!(config.get_journal_mode(), Some(JournalMode::Delete));
    /// ```
    #[must_use]
    pub fn journal_mode(mut self, mode: JournalMode) -> Self {
        self.journal_mode = Some(mode);
        self
    }

    /// The connection URL; its scheme picks the backend.
    pub fn get_url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// See [`max_connections`](Self::max_connections).
    pub fn get_max_connections(&self) -> u32 {
        self.max_connections
    }

    /// See [`min_connections`](Self::min_connections).
    pub fn get_min_connections(&self) -> u32 {
        self.min_connections
    }

    /// See [`acquire_timeout`](Self::acquire_timeout).
    pub fn get_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    /// See [`test_before_acquire`](Self::test_before_acquire).
    pub fn get_test_before_acquire(&self) -> bool {
        self.test_before_acquire
    }

    /// See [`busy_timeout`](Self::busy_timeout).
    pub fn get_busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout_ms)
    }

    /// See [`lazy`](Self::lazy).
    pub fn get_lazy(&self) -> bool {
        self.lazy
    }

    /// The `synchronous` set through [`synchronous`](Self::synchronous) or TOML (`None`: the URL's
    /// parameter, else FULL).
    pub fn get_synchronous(&self) -> Option<Synchronous> {
        self.synchronous
    }

    /// The `journal_mode` set through [`journal_mode`](Self::journal_mode) or TOML (`None`: the
    /// URL's parameter, else WAL).
    pub fn get_journal_mode(&self) -> Option<JournalMode> {
        self.journal_mode
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

/// SQLite's `PRAGMA synchronous`: when a commit waits for the disk. See `docs/configuration.md`
/// for what each survives.
///
/// ```
/// use activerecord::Synchronous;
/// assert_eq!("normal".parse::<Synchronous>().unwrap(), Synchronous::Normal);
/// assert_eq!(Synchronous::Full.to_string(), "FULL");
/// assert!("fast".parse::<Synchronous>().unwrap_err().contains("OFF, NORMAL, FULL, EXTRA"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Synchronous {
    /// No waiting for the disk: fastest, and an operating system crash or power loss can corrupt
    /// the database.
    Off,
    /// In WAL mode, commits survive an application crash; a power loss may roll back the last
    /// ones (never corrupts).
    Normal,
    /// Every commit is on disk before it returns: survives an application crash and a power loss.
    #[default]
    Full,
    /// Like FULL, and also syncs the directory after deleting a rollback journal.
    Extra,
}

/// SQLite's `PRAGMA journal_mode`: how the database keeps what a transaction changed until it
/// commits.
///
/// ```
/// use activerecord::JournalMode;
/// assert_eq!("WAL".parse::<JournalMode>().unwrap(), JournalMode::Wal);
/// assert_eq!(JournalMode::Delete.to_string(), "DELETE");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum JournalMode {
    /// Write-ahead log (the default): readers do not block the writer.
    #[default]
    Wal,
    /// A rollback journal file, deleted at each commit.
    Delete,
    /// A rollback journal file, truncated at each commit.
    Truncate,
    /// A rollback journal file, its header zeroed at each commit.
    Persist,
    /// The rollback journal in memory: a crash in the middle of a write can corrupt the database.
    Memory,
    /// No journal: no rollback, and a crash in the middle of a write can corrupt the database.
    Off,
}

macro_rules! pragma_enum {
    ($ty:ident, $what:literal, $($variant:ident => $text:literal),+) => {
        impl $ty {
            fn sql(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.sql())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            /// Case-insensitive; the error names the accepted values.
            fn from_str(text: &str) -> std::result::Result<Self, String> {
                $(if text.eq_ignore_ascii_case($text) {
                    return Ok($ty::$variant);
                })+
                Err(format!(
                    concat!($what, " must be one of ", $($text, ", ",)+ "not {:?}"),
                    text
                ))
            }
        }

        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(text: String) -> std::result::Result<Self, String> {
                text.parse()
            }
        }
    };
}

pragma_enum!(Synchronous, "synchronous", Off => "OFF", Normal => "NORMAL", Full => "FULL", Extra => "EXTRA");
pragma_enum!(
    JournalMode, "journal_mode",
    Wal => "WAL", Delete => "DELETE", Truncate => "TRUNCATE", Persist => "PERSIST", Memory => "MEMORY", Off => "OFF"
);

impl Synchronous {
    fn to_sqlx(self) -> SqliteSynchronous {
        match self {
            Synchronous::Off => SqliteSynchronous::Off,
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Extra => SqliteSynchronous::Extra,
        }
    }
}

impl JournalMode {
    fn to_sqlx(self) -> SqliteJournalMode {
        match self {
            JournalMode::Wal => SqliteJournalMode::Wal,
            JournalMode::Delete => SqliteJournalMode::Delete,
            JournalMode::Truncate => SqliteJournalMode::Truncate,
            JournalMode::Persist => SqliteJournalMode::Persist,
            JournalMode::Memory => SqliteJournalMode::Memory,
            JournalMode::Off => SqliteJournalMode::Off,
        }
    }
}

/// A SQLite URL without our own query parameters (`synchronous`, `journal_mode`), which sqlx
/// would refuse, and their values.
struct SqliteUrl {
    url: String,
    synchronous: Option<Synchronous>,
    journal_mode: Option<JournalMode>,
}

fn split_sqlite_url(url: &str) -> std::result::Result<SqliteUrl, String> {
    let mut parsed = SqliteUrl {
        url: url.to_owned(),
        synchronous: None,
        journal_mode: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok(parsed);
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "synchronous" => parsed.synchronous = Some(value.parse()?),
            "journal_mode" => parsed.journal_mode = Some(value.parse()?),
            _ => kept.push(pair),
        }
    }
    parsed.url = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok(parsed)
}

/// The value set in the configuration, else in the URL, else the default; both set and different
/// is an error.
fn pick<T: Copy + PartialEq + Default + fmt::Display>(
    key: &str,
    configured: Option<T>,
    in_url: Option<T>,
) -> std::result::Result<T, String> {
    match (configured, in_url) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "{key} is set to {a} in the configuration and to {b} in the URL: set it in one place"
        )),
        (a, b) => Ok(a.or(b).unwrap_or_default()),
    }
}

/// The typed error for a connection attempt that failed.
fn connect_error(name: &str, url: &DatabaseUrl, address: String, source: sqlx::Error) -> Error {
    let cause = match &source {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ConnectFailure::Refused { address }
        }
        sqlx::Error::Tls(_) => ConnectFailure::Tls,
        sqlx::Error::Database(db) => match crate::error::database_code(db.as_ref()).as_str() {
            // PostgreSQL: invalid password, invalid authorization (unknown role, pg_hba refusal);
            // MySQL: access denied (1045, 1698), access denied to the database (1044).
            "28P01" | "28000" | "1045" | "1698" | "1044" => ConnectFailure::Authentication,
            "3D000" | "1049" => ConnectFailure::UnknownDatabase,
            // SQLite's CANTOPEN.
            "14" => ConnectFailure::CannotOpen { path: address },
            _ => ConnectFailure::Other,
        },
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
        // One connection outside the pool (sqlx's pool would retry a refused connection until the
        // acquire timeout and then report only that it timed out), then the pool.
        macro_rules! open_pool {
            ($pool_options:expr, $connection:ty, $options:expr, $address:expr) => {{
                let options = $options;
                if config.lazy {
                    $pool_options.connect_lazy_with(options)
                } else {
                    match <$connection>::connect_with(&options).await {
                        Ok(connection) => {
                            // Only a probe: a failed goodbye changes nothing.
                            let _ = connection.close().await;
                        }
                        Err(e) => return Err(connect_error(name, &config.url, $address, e)),
                    }
                    $pool_options
                        .connect_with(options)
                        .await
                        .map_err(|e| connect_error(name, &config.url, $address, e))?
                }
            }};
        }
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
                let path = options.get_filename().display().to_string();
                Pool::Sqlite(open_pool!(pool_options, sqlx::SqliteConnection, options, path.clone()))
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
/// ConnectionManager::close("manager_doc").await?;
/// # Ok(()) }
/// ```
pub struct ConnectionManager;

impl ConnectionManager {
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
}

// The registry's mechanics. The public methods that change it (`configure*`, `close*`) are in
// `transaction::manage`, because they must first check the calling task's open scopes.

/// Registers `database` under its name; returns the pool it replaces, for the caller to close.
pub(crate) fn register(database: Database) -> Option<Database> {
    let name = database.name().to_owned();
    let previous = REGISTRY.rcu(|registry| {
        let mut registry = Registry::clone(registry);
        registry.insert(name.clone(), database.clone());
        registry
    });
    previous.get(&name).cloned()
}

/// Forgets `name`; returns its pool, for the caller to close.
pub(crate) fn unregister(name: &str) -> Option<Database> {
    let previous = REGISTRY.rcu(|registry| {
        let mut registry = Registry::clone(registry);
        registry.remove(name);
        registry
    });
    previous.get(name).cloned()
}

/// Forgets every connection; returns their pools, for the caller to close.
pub(crate) fn unregister_all() -> Vec<Database> {
    REGISTRY.swap(Arc::new(Registry::new())).values().cloned().collect()
}

/// The connections of a TOML file (see [`ConnectionManager::configure_from_toml`]).
pub(crate) fn configs_from_toml_file(path: &Path) -> Result<BTreeMap<String, DatabaseConfig>> {
    let file_error = |message: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| Error::Configuration {
        connection: path.display().to_string(),
        message,
        source,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| file_error(format!("cannot read the file: {e}"), Some(Box::new(e))))?;
    parse_toml(&text).map_err(|message| file_error(message, None))
}

/// The connections the environment configures (see [`ConnectionManager::configure_from_env`]).
pub(crate) fn configs_from_process_env() -> Result<BTreeMap<String, DatabaseConfig>> {
    configs_from_env(std::env::vars()).map_err(|(name, message)| Error::Configuration {
        connection: name,
        message,
        source: None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    databases: BTreeMap<String, DatabaseConfig>,
}

/// The connections of a TOML text; the error, masked, says what is wrong (a TOML error quotes the
/// offending line, which may hold a URL with its password).
fn parse_toml(text: &str) -> std::result::Result<BTreeMap<String, DatabaseConfig>, String> {
    let file: TomlFile =
        toml::from_str(text).map_err(|e| redact_secrets(&format!("invalid configuration: {e}"), &[text]))?;
    Ok(file.databases)
}

const ENV_PREFIX: &str = "ACTIVERECORD_";

/// The connections of `ACTIVERECORD_<NAME>_*` variables; the error, masked, names the connection
/// and says what is wrong.
fn configs_from_env(
    vars: impl Iterator<Item = (String, String)>,
) -> std::result::Result<BTreeMap<String, DatabaseConfig>, (String, String)> {
    let vars: BTreeMap<String, String> = vars.filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    let values: Vec<&str> = vars.values().map(String::as_str).collect();
    let mut configs = BTreeMap::new();
    for (key, url) in &vars {
        let Some(upper) = key.strip_prefix(ENV_PREFIX).and_then(|k| k.strip_suffix("_URL")) else {
            continue;
        };
        let name = upper.to_lowercase();
        let fail = |message: String| (name.clone(), redact_secrets(&message, &values));
        let get = |suffix: &str| {
            let var = format!("{ENV_PREFIX}{upper}_{suffix}");
            vars.get(&var).map(|value| (var, value.as_str()))
        };
        let number = |suffix: &str| -> std::result::Result<Option<u64>, (String, String)> {
            get(suffix)
                .map(|(var, v)| {
                    v.parse::<u64>()
                        .map_err(|_| fail(format!("{var} must be a whole number, not {v:?}")))
                })
                .transpose()
        };
        let mut config = DatabaseConfig::new(url.as_str());
        if let Some(max) = number("MAX_CONNECTIONS")? {
            config = config.max_connections(u32::try_from(max).unwrap_or(u32::MAX));
        }
        if let Some(min) = number("MIN_CONNECTIONS")? {
            config = config.min_connections(u32::try_from(min).unwrap_or(u32::MAX));
        }
        if let Some(ms) = number("ACQUIRE_TIMEOUT_MS")? {
            config = config.acquire_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = number("BUSY_TIMEOUT_MS")? {
            config = config.busy_timeout(Duration::from_millis(ms));
        }
        if let Some((var, v)) = get("LAZY") {
            let lazy = match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(fail(format!("{var} must be true or false, not {v:?}"))),
            };
            config = config.lazy(lazy);
        }
        if let Some((var, v)) = get("SYNCHRONOUS") {
            config = config.synchronous(v.parse().map_err(|e| fail(format!("{var}: {e}")))?);
        }
        if let Some((var, v)) = get("JOURNAL_MODE") {
            config = config.journal_mode(v.parse().map_err(|e| fail(format!("{var}: {e}")))?);
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
        assert_eq!(configs["a"].get_max_connections(), 10);
        assert_eq!(configs["b"].get_max_connections(), 3);
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
        assert_eq!(configs["bank_db_1"].get_max_connections(), 4);
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

    #[test]
    fn malformed_urls_are_masked_wherever_they_appear() {
        let cases = [
            (
                "x postgres://app:s3cret@db/bank y",
                "x postgres://app:***@db/bank y",
                "s3cret",
            ),
            ("\"mysql://root:p@ss:w0rd@db/b", "\"mysql://root:***@db/b", "w0rd"),
            ("postgres://:pw%40x@h", "postgres://:***@h", "pw"),
            (
                "no userinfo postgres://db:5432/bank",
                "no userinfo postgres://db:5432/bank",
                "\u{0}",
            ),
            (
                "user only postgres://app@db/bank",
                "user only postgres://app@db/bank",
                "\u{0}",
            ),
        ];
        for (text, masked, secret) in cases {
            let out = redact_secrets(text, &[]);
            assert_eq!(out, masked);
            assert!(!out.contains(secret), "{out}");
        }
        // A password found in the source is masked where the message quotes it without its URL.
        let out = redact_secrets("found `p%40ss` and `p@ss`", &["url = postgres://u:p%40ss@h/d"]);
        assert_eq!(out, "found `***` and `***`");
    }

    #[test]
    fn env_sets_every_option() {
        let vars = [
            ("ACTIVERECORD_A_URL", "sqlite::memory:"),
            ("ACTIVERECORD_A_LAZY", "true"),
            ("ACTIVERECORD_A_SYNCHRONOUS", "normal"),
            ("ACTIVERECORD_A_JOURNAL_MODE", "delete"),
            ("ACTIVERECORD_A_MIN_CONNECTIONS", "1"),
            ("ACTIVERECORD_A_BUSY_TIMEOUT_MS", "250"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let configs = configs_from_env(vars.into_iter()).unwrap();
        let a = &configs["a"];
        assert!(a.get_lazy());
        assert_eq!(a.get_synchronous(), Some(Synchronous::Normal));
        assert_eq!(a.get_journal_mode(), Some(JournalMode::Delete));
        assert_eq!(a.get_min_connections(), 1);
        assert_eq!(a.get_busy_timeout(), Duration::from_millis(250));
    }

    #[test]
    fn env_errors_are_typed_and_masked() {
        let vars = [
            ("ACTIVERECORD_A_URL", "postgres://u:envpw@h/d"),
            ("ACTIVERECORD_A_MAX_CONNECTIONS", "postgres://u:envpw@h/d"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let (_, message) = configs_from_env(vars.into_iter()).unwrap_err();
        assert!(!message.contains("envpw"), "{message}");
        let vars = [
            ("ACTIVERECORD_A_URL", "sqlite::memory:"),
            ("ACTIVERECORD_A_SYNCHRONOUS", "fast"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let (_, message) = configs_from_env(vars.into_iter()).unwrap_err();
        assert!(
            message.contains("ACTIVERECORD_A_SYNCHRONOUS") && message.contains("NORMAL"),
            "{message}"
        );
        let vars = [
            ("ACTIVERECORD_A_URL", "sqlite::memory:"),
            ("ACTIVERECORD_A_LAZY", "maybe"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert!(configs_from_env(vars.into_iter()).is_err());
    }

    #[test]
    fn sqlite_urls_lose_only_our_parameters() {
        let parsed = split_sqlite_url("sqlite://b.db?mode=rwc&synchronous=NORMAL&journal_mode=wal").unwrap();
        assert_eq!(parsed.url, "sqlite://b.db?mode=rwc");
        assert_eq!(parsed.synchronous, Some(Synchronous::Normal));
        assert_eq!(parsed.journal_mode, Some(JournalMode::Wal));
        assert_eq!(
            split_sqlite_url("sqlite://b.db?synchronous=off").unwrap().url,
            "sqlite://b.db"
        );
        assert!(split_sqlite_url("sqlite://b.db?journal_mode=wall").is_err());
    }
}

//! How to open one named connection: [`DatabaseConfig`], its SQLite durability settings, and the
//! configuration sources (TOML files, environment variables).
//!
//! Guarantees: every error built from a configuration source is masked (a TOML error quotes the
//! offending line, which may hold a URL with its password); unknown keys and values are errors that
//! list what is accepted.

use super::url::{DatabaseUrl, redact_secrets};
use crate::error::{Error, Result};
use serde::Deserialize;
use sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// How to open one named connection: its URL and its pool settings.
///
/// Built with [`DatabaseConfig::new`] and its builder methods, read with the `get_` methods. In a
/// TOML file (see [`ConnectionManager::configure_from_toml`](crate::ConnectionManager::configure_from_toml)) each connection is a table under
/// `[databases]` whose keys are the builder methods' names (`acquire_timeout_ms`,
/// `busy_timeout_ms` and `lock_timeout_ms` in milliseconds); every key but `url` may be left out. The whole list, with
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
    pub(super) url: DatabaseUrl,
    #[serde(default = "DatabaseConfig::default_max_connections")]
    pub(super) max_connections: u32,
    #[serde(default)]
    pub(super) min_connections: u32,
    #[serde(default = "DatabaseConfig::default_acquire_timeout_ms")]
    pub(super) acquire_timeout_ms: u64,
    #[serde(default)]
    pub(super) test_before_acquire: bool,
    #[serde(default = "DatabaseConfig::default_busy_timeout_ms")]
    pub(super) busy_timeout_ms: u64,
    #[serde(default = "DatabaseConfig::default_lock_timeout_ms")]
    pub(super) lock_timeout_ms: u64,
    #[serde(default)]
    pub(super) lazy: bool,
    #[serde(default)]
    pub(super) synchronous: Option<Synchronous>,
    #[serde(default)]
    pub(super) journal_mode: Option<JournalMode>,
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
            lock_timeout_ms: Self::default_lock_timeout_ms(),
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
    /// `busy_timeout_ms`): a write scope first waits up to this long for the file's write lock
    /// among this process's scopes (joining a unit over several databases: up to its
    /// [`lock_timeout`](Self::lock_timeout)), then `BEGIN IMMEDIATE` waits up to this long for
    /// other processes.
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

    /// How long a statement of a unit of work over several databases waits for a row lock on this
    /// database before it fails with [`Error::LockTimeout`] (default 5 s; TOML key
    /// `lock_timeout_ms`). Each database sees only its half of a wait between two units of work
    /// that lock rows on two databases in opposite orders, so neither can break it: this limit
    /// does (PostgreSQL `lock_timeout`, MySQL/MariaDB `innodb_lock_wait_timeout`, in whole seconds,
    /// rounded up; on SQLite, a write scope joining such a unit waits this long at most for the
    /// file's write lock among this process's scopes). A scope can set its own with
    /// [`Using::lock_timeout`](crate::Using::lock_timeout). Within one process the deadlock
    /// detector usually ends such a wait much sooner (see
    /// [`ConnectionManager::detect_deadlocks`](crate::ConnectionManager::detect_deadlocks)).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = activerecord::DatabaseConfig::new("postgres://app@db/bank").lock_timeout(Duration::from_secs(2));
    /// assert_eq!(config.get_lock_timeout(), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
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

    /// See [`lock_timeout`](Self::lock_timeout).
    pub fn get_lock_timeout(&self) -> Duration {
        Duration::from_millis(self.lock_timeout_ms)
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
    fn default_lock_timeout_ms() -> u64 {
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
    pub(super) fn to_sqlx(self) -> SqliteSynchronous {
        match self {
            Synchronous::Off => SqliteSynchronous::Off,
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Extra => SqliteSynchronous::Extra,
        }
    }
}

impl JournalMode {
    pub(super) fn to_sqlx(self) -> SqliteJournalMode {
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
pub(super) struct SqliteUrl {
    pub(super) url: String,
    pub(super) synchronous: Option<Synchronous>,
    pub(super) journal_mode: Option<JournalMode>,
}

pub(super) fn split_sqlite_url(url: &str) -> std::result::Result<SqliteUrl, String> {
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
pub(super) fn pick<T: Copy + PartialEq + Default + fmt::Display>(
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

/// The connections of a TOML file (see [`ConnectionManager::configure_from_toml`](crate::ConnectionManager::configure_from_toml)).
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

/// The connections the environment configures (see [`ConnectionManager::configure_from_env`](crate::ConnectionManager::configure_from_env)).
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
        if let Some(ms) = number("LOCK_TIMEOUT_MS")? {
            config = config.lock_timeout(Duration::from_millis(ms));
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

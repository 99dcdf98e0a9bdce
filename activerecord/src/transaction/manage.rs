//! The methods of [`ConnectionManager`] that configure and close connections, and shut down.
//!
//! They live above the registry (in `connection`) because they must know the calling task's
//! open transaction scopes: closing a pool waits for every connection to come back, and a scope
//! of the calling task holds one that cannot come back while the task waits, so closing (or
//! replacing) a connection from inside a scope on it would never return. It is refused at once
//! with [`Error::InUse`] instead.

use super::innermost_frame;
use crate::connection::{self, ConnectionManager, Database, DatabaseConfig, DatabaseUrl};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// [`Error::InUse`] when the calling task holds an open scope on `name` (on any connection for
/// `None`).
fn refuse_if_in_scope(name: Option<&str>) -> Result<()> {
    match innermost_frame(name) {
        Some(frame) => Err(Error::InUse {
            connection: frame.participant.name().to_owned(),
        }),
        None => Ok(()),
    }
}

impl ConnectionManager {
    /// Opens a pool for `url` with default settings and registers it as `name`, replacing (and
    /// closing) any pool already registered under that name.
    ///
    /// Unless the configuration is [lazy](DatabaseConfig::lazy), one connection is made first, so
    /// that a server that refuses it, rejected credentials or a missing database are reported at
    /// once as [`Error::Connect`]. Replacing `name` from inside a transaction scope on `name` is
    /// refused with [`Error::InUse`] (the replaced pool could never finish closing); replace it
    /// after the scope ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::ConnectionManager;
    ///
    /// let db = ConnectionManager::configure("configure_doc", "sqlite::memory:").await?;
    /// assert_eq!(db.name(), "configure_doc");
    /// # Ok(()) }
    /// ```
    pub async fn configure(name: &str, url: impl Into<DatabaseUrl>) -> Result<Database> {
        Self::configure_with(name, DatabaseConfig::new(url)).await
    }

    /// Opens a pool described by `config` and registers it as `name`: see
    /// [`configure`](Self::configure).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, DatabaseConfig};
    ///
    /// let config = DatabaseConfig::new("sqlite::memory:").max_connections(1);
    /// let db = ConnectionManager::configure_with("configure_with_doc", config).await?;
    /// assert_eq!(db.name(), "configure_with_doc");
    /// # Ok(()) }
    /// ```
    pub async fn configure_with(name: &str, config: DatabaseConfig) -> Result<Database> {
        refuse_if_in_scope(Some(name))?;
        let database = Database::open(name, &config).await?;
        if let Some(old) = connection::register(database.clone()) {
            old.close().await;
        }
        Ok(database)
    }

    /// Configures every connection of a TOML file, returning them in name order. A syntax error
    /// is an [`Error::Configuration`] whose message never shows a password, even when it quotes a
    /// malformed URL.
    ///
    /// ```toml
    /// [databases.bank_db_1]
    /// url = "sqlite://bank1.db?mode=rwc"
    /// synchronous = "normal"        # SQLite only; also journal_mode, busy_timeout_ms
    ///
    /// [databases.bank_db_2]
    /// url = "postgres://app@localhost/bank2"
    /// max_connections = 20
    /// acquire_timeout_ms = 5000
    /// lazy = true                   # connect on first use, not now
    /// ```
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("databases.toml");
    /// std::fs::write(&path, "[databases.toml_doc]\nurl = \"sqlite::memory:\"\nmax_connections = 1\n").unwrap();
    /// let opened = activerecord::ConnectionManager::configure_from_toml(&path).await?;
    /// assert_eq!(opened[0].name(), "toml_doc");
    /// # Ok(()) }
    /// ```
    pub async fn configure_from_toml(path: impl AsRef<Path>) -> Result<Vec<Database>> {
        Self::configure_all(connection::configs_from_toml_file(path.as_ref())?).await
    }

    /// Configures connections from environment variables: `ACTIVERECORD_<NAME>_URL` (required)
    /// and, optionally, `ACTIVERECORD_<NAME>_` followed by `MAX_CONNECTIONS`, `MIN_CONNECTIONS`,
    /// `ACQUIRE_TIMEOUT_MS`, `BUSY_TIMEOUT_MS`, `LAZY` (`true`/`false`), `SYNCHRONOUS` or
    /// `JOURNAL_MODE`. The connection is named `<name>` in lower case:
    /// `ACTIVERECORD_BANK_DB_1_URL` configures `bank_db_1`.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// // ACTIVERECORD_BANK_DB_1_URL=sqlite://bank1.db?mode=rwc ACTIVERECORD_BANK_DB_1_SYNCHRONOUS=normal
    /// let opened = activerecord::ConnectionManager::configure_from_env().await?;
    /// # Ok(()) }
    /// ```
    pub async fn configure_from_env() -> Result<Vec<Database>> {
        Self::configure_all(connection::configs_from_process_env()?).await
    }

    async fn configure_all(configs: BTreeMap<String, DatabaseConfig>) -> Result<Vec<Database>> {
        for name in configs.keys() {
            refuse_if_in_scope(Some(name))?;
        }
        let mut opened = Vec::with_capacity(configs.len());
        for (name, config) in configs {
            opened.push(Self::configure_with(&name, config).await?);
        }
        Ok(opened)
    }

    /// Forgets `name` and closes its pool, waiting for the connections in use (by other tasks) to
    /// come back. Does nothing for an unknown name.
    ///
    /// Called from inside a transaction scope on `name` it returns [`Error::InUse`] at once and
    /// changes nothing: the scope holds one of the pool's connections until it ends, so the close
    /// would wait for itself. Close after the scope ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, Error};
    ///
    /// ConnectionManager::configure("close_doc", "sqlite::memory:").await?;
    /// let refused = ConnectionManager::using("close_doc")
    ///     .transaction(async |_tx| ConnectionManager::close("close_doc").await)
    ///     .await;
    /// assert!(matches!(refused, Err(Error::InUse { .. })));
    /// ConnectionManager::close("close_doc").await?;
    /// assert!(ConnectionManager::get("close_doc").is_err());
    /// # Ok(()) }
    /// ```
    pub async fn close(name: &str) -> Result<()> {
        refuse_if_in_scope(Some(name))?;
        if let Some(old) = connection::unregister(name) {
            old.close().await;
        }
        Ok(())
    }

    /// Forgets and closes every connection. Called from inside any transaction scope it returns
    /// [`Error::InUse`] at once and changes nothing (see [`close`](Self::close)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// activerecord::ConnectionManager::configure("close_all_doc", "sqlite::memory:").await?;
    /// activerecord::ConnectionManager::close_all().await?;
    /// assert!(activerecord::ConnectionManager::names().is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn close_all() -> Result<()> {
        refuse_if_in_scope(None)?;
        for database in connection::unregister_all() {
            database.close().await;
        }
        Ok(())
    }

    /// Ends the process's use of its databases gracefully: waits for the work still running in
    /// the background (the final commits of a unit of work whose caller stopped waiting, with
    /// their outcome resolution and hooks; the ending of sessions that dropped futures abandoned),
    /// then closes every connection like [`close_all`](Self::close_all). Call it before the
    /// process exits, so that no unit of work is cut off half way through its final commits.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// activerecord::ConnectionManager::configure("shutdown_doc", "sqlite::memory:").await?;
    /// activerecord::ConnectionManager::shutdown().await?;
    /// assert!(activerecord::ConnectionManager::names().is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown() -> Result<()> {
        refuse_if_in_scope(None)?;
        connection::background::settle().await;
        Self::close_all().await
    }

    /// Sets how long a statement of a unit of work over several databases may wait before the
    /// process's deadlock detector looks at what it waits for (default 150 ms); `None` turns
    /// detection off, leaving only the lock-wait limits
    /// ([`DatabaseConfig::lock_timeout`](crate::DatabaseConfig::lock_timeout)).
    ///
    /// The detector finds waits that go round through several databases among this process's
    /// units of work, which no database can see (each sees one plain lock wait): it asks each
    /// database, on its control connection, whom a long-waiting statement waits for, and when the
    /// waits form a cycle it cancels the waiting statement of the youngest unit in it, which gets
    /// [`Error::Deadlock`](crate::Error::Deadlock) and rolls back; the others go on. It costs
    /// nothing while no statement waits that long. See `docs/transactions.md`, "Contention".
    ///
    /// ```
    /// use std::time::Duration;
    /// activerecord::ConnectionManager::detect_deadlocks(Some(Duration::from_millis(100)));
    /// ```
    pub fn detect_deadlocks(after: Option<std::time::Duration>) {
        connection::set_deadlock_threshold(after);
    }
}

//! Everything that differs per database engine. Today: which engines there are and how a URL
//! names one; the SQL text, error codes and value quirks of each engine move here, one file per
//! engine, so that no module above has to `match` on the engine.

use std::fmt;

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

//! SQLite: double-quote-free identifiers (backticks: SQLite takes a double-quoted name that is no
//! column for a string literal), `BEGIN IMMEDIATE` for write scopes, no prepare, result codes,
//! type affinity, and dates as four-digit-year text.

use super::{BranchId, ColumnKind, Dialect, Isolation};
use crate::error::ConnectFailure;
use std::borrow::Cow;

/// SQLite's [`Dialect`].
pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    fn has_single_writer(&self) -> bool {
        true
    }

    fn quote(&self) -> char {
        '`'
    }

    /// Write scopes hold the database's write lock from their start: no row lock to ask for.
    fn for_update(&self) -> &'static str {
        ""
    }

    fn no_limit(&self) -> Option<i64> {
        Some(-1)
    }

    /// SQLite always runs serializable, at least as strict as any level asked for. A deferred
    /// BEGIN that reads and then writes fails at once when another connection wrote in between
    /// (SQLITE_BUSY_SNAPSHOT); taking the write lock up front waits instead.
    fn begin(&self, _: Option<Isolation>, read_only: bool, _: Option<&BranchId>) -> Vec<Cow<'static, str>> {
        if read_only {
            vec!["BEGIN DEFERRED".into(), "PRAGMA query_only = ON".into()]
        } else {
            vec!["BEGIN IMMEDIATE".into()]
        }
    }

    fn end(&self, how: super::Finish, read_only: bool, _: Option<&BranchId>, _: bool) -> Vec<Cow<'static, str>> {
        let mut statements: Vec<Cow<'static, str>> = vec![how.verb().into()];
        if read_only {
            // The pragma belongs to the connection, which goes back to the pool.
            statements.push("PRAGMA query_only = OFF".into());
        }
        statements
    }

    fn can_prepare(&self) -> bool {
        false
    }

    fn prepare(&self, _: &BranchId) -> Vec<Cow<'static, str>> {
        unreachable!("SQLite branches are refused before they begin")
    }

    fn is_value_too_large(&self, _: &str) -> bool {
        false
    }

    fn is_connection_lost(&self, _: &str) -> bool {
        false
    }

    fn is_schema_error(&self, _: &str, message: &str) -> bool {
        message.starts_with("no such table")
            || message.starts_with("no such column")
            || message.contains("has no column named")
    }

    /// LOCKED and BUSY_SNAPSHOT (a snapshot too old to write from).
    fn is_transient(&self, code: &str) -> bool {
        matches!(code, "6" | "517")
    }

    /// BUSY: the file's lock was not free within `busy_timeout`.
    fn is_lock_timeout(&self, code: &str) -> bool {
        code == "5"
    }

    /// CANTOPEN: the file cannot be opened or created.
    fn connect_failure(&self, code: &str, path: String) -> ConnectFailure {
        match code {
            "14" => ConnectFailure::CannotOpen { path },
            _ => ConnectFailure::Other,
        }
    }

    fn is_unknown_branch(&self, _: &str) -> bool {
        false
    }

    fn columns_sql(&self) -> &'static str {
        // An INTEGER PRIMARY KEY is the rowid: never NULL, whatever `notnull` says.
        "SELECT name, type, type, \
         CASE WHEN `notnull` = 0 AND NOT (pk > 0 AND lower(type) = 'integer') THEN 1 ELSE 0 END \
         FROM pragma_table_info(?)"
    }

    fn accepts(&self, kind: ColumnKind, declared: &str) -> bool {
        use ColumnKind as K;
        if declared.is_empty() || declared == "any" {
            return true;
        }
        let affinity = sqlite_affinity(declared);
        match kind {
            K::SmallInt | K::Int | K::BigInt | K::Bool => matches!(affinity, Affinity::Integer | Affinity::Numeric),
            K::Float | K::Double => affinity == Affinity::Real,
            K::Text | K::Decimal => affinity == Affinity::Text,
            K::TimestampTz | K::Timestamp | K::Date => matches!(affinity, Affinity::Text | Affinity::Numeric),
            K::Json => affinity == Affinity::Text || declared == "json",
            K::Bytes | K::Uuid => affinity == Affinity::Blob,
            K::Any => true,
        }
    }

    fn expected(&self, kind: ColumnKind) -> &'static str {
        use ColumnKind as K;
        match kind {
            K::SmallInt | K::Int | K::BigInt => "INTEGER",
            K::Float | K::Double => "REAL",
            K::Bool => "BOOLEAN",
            K::Text | K::Decimal | K::TimestampTz | K::Timestamp | K::Date | K::Json => "TEXT",
            K::Bytes | K::Uuid => "BLOB",
            K::Any => "any type",
        }
    }

    /// Dates are stored as text, which sorts and compares correctly, and which SQLite's date
    /// functions read, only with four-digit years.
    fn date_fits(&self, date: chrono::NaiveDate) -> (bool, &'static str) {
        use chrono::Datelike as _;
        ((0..=9999).contains(&date.year()), "years 0000 to 9999 as text")
    }

    fn migrations(&self) -> sqlx::migrate::Migrator {
        sqlx::migrate!("migrations/sqlite")
    }
}

/// SQLite's type affinity of a declared type (section 3.1 of "Datatypes In SQLite").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

fn sqlite_affinity(declared: &str) -> Affinity {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        Affinity::Integer
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Affinity::Text
    } else if t.contains("BLOB") || t.trim().is_empty() {
        Affinity::Blob
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

//! PostgreSQL: double-quoted identifiers, numbered and typed placeholders, `PREPARE TRANSACTION`,
//! SQLSTATE codes, the exact column types sqlx decodes, and dates from 4714 BC.

use super::{BranchId, ColumnKind, Dialect, Finish, Isolation, PreparedListing};
use crate::error::{ConnectFailure, Error};
use std::borrow::Cow;
use std::fmt::Write as _;

/// PostgreSQL's [`Dialect`].
pub(crate) struct Postgres;

impl Dialect for Postgres {
    fn quote(&self) -> char {
        '"'
    }

    fn push_placeholder(&self, out: &mut String, position: usize) {
        let _ = write!(out, "${position}");
    }

    /// sqlx caches a prepared statement per connection by its SQL text alone, and PostgreSQL fixes
    /// a statement's parameter types when it is prepared: the cast keeps statements that differ in
    /// parameter types apart.
    fn push_parameter_cast(&self, out: &mut String, value_type: Option<&'static str>) {
        if let Some(value_type) = value_type {
            let _ = write!(out, "::{value_type}");
        }
    }

    fn begin(&self, isolation: Option<Isolation>, read_only: bool, _: Option<&BranchId>) -> Vec<Cow<'static, str>> {
        match (isolation, read_only) {
            (None, false) => vec!["BEGIN".into()],
            (isolation, read_only) => {
                let isolation = isolation
                    .map(|i| format!(" ISOLATION LEVEL {}", i.sql()))
                    .unwrap_or_default();
                let access = if read_only { " READ ONLY" } else { "" };
                vec![format!("BEGIN{isolation}{access}").into()]
            }
        }
    }

    fn end(&self, how: Finish, _: bool, branch: Option<&BranchId>, prepared: bool) -> Vec<Cow<'static, str>> {
        match branch {
            Some(branch) if prepared => vec![format!("{} PREPARED '{}'", how.verb(), branch.postgres_gid()).into()],
            _ => vec![how.verb().into()],
        }
    }

    fn prepare(&self, branch: &BranchId) -> Vec<Cow<'static, str>> {
        vec![format!("PREPARE TRANSACTION '{}'", branch.postgres_gid()).into()]
    }

    fn prepared_listing(&self) -> Option<PreparedListing> {
        Some(PreparedListing::IdsLike(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE $1",
        ))
    }

    /// `COMMIT PREPARED` works only from the database the branch was prepared in.
    fn finish_prepared(&self, how: Finish, gtrid: &str, bqual: &str) -> String {
        format!("{} PREPARED '{gtrid}-{bqual}'", how.verb())
    }

    fn prepared_check(&self, branch: &BranchId) -> Option<String> {
        // The gid is made of our own validated id parts: a safe literal.
        Some(format!(
            "SELECT COUNT(*) FROM pg_prepared_xacts WHERE gid = '{}'",
            branch.postgres_gid()
        ))
    }

    fn prepare_frees_session(&self) -> bool {
        true
    }

    /// `max_prepared_transactions` is 0.
    fn prepare_error(&self, connection: &str, error: &sqlx::Error) -> Option<Error> {
        let db = error.as_database_error()?;
        (db.code().as_deref() == Some("55000") && db.message().contains("prepared transactions are disabled")).then(
            || Error::Configuration {
                connection: connection.to_owned(),
                message: "PostgreSQL has max_prepared_transactions = 0, so it cannot take part in two-phase commit: \
                          set max_prepared_transactions (in postgresql.conf) to at least the number of two-phase \
                          scopes run at once, and restart the server"
                    .to_owned(),
                source: None,
            },
        )
    }

    fn aborts_on_error(&self) -> bool {
        true
    }

    fn lock_wait_limit(&self, limit: std::time::Duration) -> Option<String> {
        Some(format!("SET LOCAL lock_timeout = '{}ms'", limit.as_millis().max(1)))
    }

    /// 55P03: lock not available (`lock_timeout`, `NOWAIT`).
    fn is_lock_timeout(&self, code: &str) -> bool {
        code == "55P03"
    }

    fn session_id_query(&self) -> Option<&'static str> {
        Some("SELECT pg_backend_pid()")
    }

    /// Needs the same role as the session's, or membership in `pg_signal_backend`.
    fn terminate_session(&self, session: u64) -> String {
        format!("SELECT pg_terminate_backend({session})")
    }

    /// The statement fails with 57014 and the transaction is aborted.
    fn cancel_statement(&self, session: u64) -> String {
        format!("SELECT pg_cancel_backend({session})")
    }

    /// `pg_blocking_pids` sees the whole cluster; row locks are taken by sessions of the same
    /// database.
    fn lock_waits(&self) -> &'static str {
        "SELECT pid::int8, unnest(pg_blocking_pids(pid))::int8 FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND datname = current_database()"
    }

    fn session_count(&self, session: u64) -> String {
        format!("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {session}")
    }

    /// 22001/22003 (too long, out of range) and 22008 (date/time out of range).
    fn is_value_too_large(&self, code: &str) -> bool {
        matches!(code, "22001" | "22003" | "22008")
    }

    /// Admin shutdown and connection failures (57P01..57P03, 08000, 08003, 08006; not 08P01, a
    /// protocol violation, which retrying would repeat).
    fn is_connection_lost(&self, code: &str) -> bool {
        matches!(code, "08000" | "08003" | "08006" | "57P01" | "57P02" | "57P03")
    }

    /// Undefined table, undefined column.
    fn is_schema_error(&self, code: &str, _: &str) -> bool {
        matches!(code, "42P01" | "42703")
    }

    /// Serialization failure and deadlock.
    fn is_transient(&self, code: &str) -> bool {
        matches!(code, "40001" | "40P01")
    }

    /// Invalid password, invalid authorization (unknown role, pg_hba refusal), unknown database.
    fn connect_failure(&self, code: &str, _: String) -> ConnectFailure {
        match code {
            "28P01" | "28000" => ConnectFailure::Authentication,
            "3D000" => ConnectFailure::UnknownDatabase,
            _ => ConnectFailure::Other,
        }
    }

    /// No prepared transaction with that gid.
    fn is_unknown_branch(&self, code: &str) -> bool {
        code == "42704"
    }

    /// "prepared transaction with identifier ... is busy": another session holds it.
    fn is_branch_busy(&self, code: &str, message: &str) -> bool {
        code == "55000" && message.contains("is busy")
    }

    fn columns_sql(&self) -> &'static str {
        "SELECT column_name::text, udt_name::text, data_type::text, \
         CASE WHEN is_nullable = 'YES' THEN 1 ELSE 0 END::int8 \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1::text"
    }

    fn accepts(&self, kind: ColumnKind, declared: &str) -> bool {
        use ColumnKind as K;
        let accepted: &[&str] = match kind {
            K::SmallInt => &["int2"],
            K::Int => &["int4"],
            K::BigInt => &["int8"],
            K::Float => &["float4"],
            K::Double => &["float8"],
            K::Bool => &["bool"],
            K::Text => &["text", "varchar", "bpchar", "citext"],
            K::Bytes => &["bytea"],
            K::Decimal => &["numeric"],
            K::TimestampTz => &["timestamptz"],
            K::Timestamp => &["timestamp"],
            K::Date => &["date"],
            K::Uuid => &["uuid"],
            K::Json => &["jsonb", "json"],
            K::Any => return true,
        };
        accepted.contains(&declared)
    }

    fn expected(&self, kind: ColumnKind) -> &'static str {
        use ColumnKind as K;
        match kind {
            K::SmallInt => "SMALLINT",
            K::Int => "INTEGER",
            K::BigInt => "BIGINT",
            K::Float => "REAL",
            K::Double => "DOUBLE PRECISION",
            K::Bool => "BOOLEAN",
            K::Text => "TEXT or VARCHAR(n)",
            K::Bytes => "BYTEA",
            K::Decimal => "NUMERIC(p, s)",
            K::TimestampTz => "TIMESTAMPTZ",
            K::Timestamp => "TIMESTAMP",
            K::Date => "DATE",
            K::Uuid => "UUID",
            K::Json => "JSONB or JSON",
            K::Any => "any type",
        }
    }

    /// From 4714-11-24 BC (year -4713 in chrono's numbering); every later date chrono can hold fits.
    fn date_fits(&self, date: chrono::NaiveDate) -> (bool, &'static str) {
        let first = chrono::NaiveDate::from_ymd_opt(-4713, 11, 24).expect("a valid date");
        (date >= first, "from 4714-11-24 BC")
    }

    fn migrations(&self) -> sqlx::migrate::Migrator {
        sqlx::migrate!("migrations/postgres")
    }
}

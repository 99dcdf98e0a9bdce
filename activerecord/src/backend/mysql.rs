//! MySQL and MariaDB: backtick-quoted identifiers, `?` placeholders, `LAST_INSERT_ID()` instead of
//! `RETURNING`, XA branches, error numbers (its SQLSTATEs are too coarse), its column types, and
//! the years 1000 to 9999 that `DATETIME` and `DATE` store.

use super::{BranchId, ColumnKind, Dialect, Finish, Isolation, PreparedListing};
use crate::error::ConnectFailure;
use std::borrow::Cow;

/// MySQL's and MariaDB's [`Dialect`].
pub(crate) struct MySql;

/// "Got a packet bigger than 'max_allowed_packet' bytes". The server closes the connection after
/// it; the pool pings a connection when it comes back and drops a dead one.
const ER_NET_PACKET_TOO_LARGE: &str = "1153";

impl Dialect for MySql {
    fn quote(&self) -> char {
        '`'
    }

    fn insert_defaults(&self) -> &'static str {
        "() VALUES ()"
    }

    fn returns_generated_key(&self) -> bool {
        false
    }

    fn push_upsert(&self, out: &mut String, quoted_key: &str, assignments: &[String]) {
        if assignments.is_empty() {
            out.push_str(&format!(" ON DUPLICATE KEY UPDATE {quoted_key} = {quoted_key}"));
        } else {
            let set: Vec<String> = assignments.iter().map(|c| format!("{c} = VALUES({c})")).collect();
            out.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", set.join(", ")));
        }
    }

    fn no_limit(&self) -> Option<i64> {
        Some(i64::MAX)
    }

    /// XA statements cannot be prepared statements: every statement here is sent as text.
    fn begin(
        &self,
        isolation: Option<Isolation>,
        read_only: bool,
        branch: Option<&BranchId>,
    ) -> Vec<Cow<'static, str>> {
        let mut statements = Vec::new();
        if let Some(level) = isolation {
            statements.push(format!("SET TRANSACTION ISOLATION LEVEL {}", level.sql()).into());
        }
        statements.push(match (branch, read_only) {
            (Some(branch), _) => format!("XA START {}", branch.xa_xid()).into(),
            (None, false) => "START TRANSACTION".into(),
            (None, true) => "START TRANSACTION READ ONLY".into(),
        });
        statements
    }

    fn end(&self, how: Finish, _: bool, branch: Option<&BranchId>, prepared: bool) -> Vec<Cow<'static, str>> {
        let Some(branch) = branch else {
            return vec![how.verb().into()];
        };
        let xid = branch.xa_xid();
        match (prepared, how) {
            (true, _) => vec![format!("XA {} {xid}", how.verb()).into()],
            // Not prepared (phase one failed elsewhere, or the only branch): one phase.
            (false, Finish::Commit) => vec![
                format!("XA END {xid}").into(),
                format!("XA COMMIT {xid} ONE PHASE").into(),
            ],
            (false, Finish::Rollback) => vec![format!("XA END {xid}").into(), format!("XA ROLLBACK {xid}").into()],
        }
    }

    fn prepare(&self, branch: &BranchId) -> Vec<Cow<'static, str>> {
        let xid = branch.xa_xid();
        vec![format!("XA END {xid}").into(), format!("XA PREPARE {xid}").into()]
    }

    fn prepared_listing(&self) -> Option<PreparedListing> {
        Some(PreparedListing::XaRecover)
    }

    fn finish_prepared(&self, how: Finish, gtrid: &str, bqual: &str) -> String {
        format!("XA {} '{gtrid}','{bqual}'", how.verb())
    }

    fn code(&self, db: &dyn sqlx::error::DatabaseError) -> String {
        db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|e| e.number().to_string())
            .unwrap_or_default()
    }

    /// 1406 (data too long), 1264 (out of range) and 1153 (statement larger than
    /// `max_allowed_packet`).
    fn is_value_too_large(&self, code: &str) -> bool {
        matches!(code, "1406" | "1264" | ER_NET_PACKET_TOO_LARGE)
    }

    fn too_large_setting(&self, code: &str) -> Option<&'static str> {
        (code == ER_NET_PACKET_TOO_LARGE).then_some("max_allowed_packet")
    }

    /// 1927 (connection killed) and 2006/2013 (server gone).
    fn is_connection_lost(&self, code: &str) -> bool {
        matches!(code, "1927" | "2006" | "2013")
    }

    /// No such table, unknown column.
    fn is_schema_error(&self, code: &str, _: &str) -> bool {
        matches!(code, "1146" | "1054")
    }

    /// Deadlock (the whole transaction is rolled back).
    fn is_transient(&self, code: &str) -> bool {
        code == "1213"
    }

    /// Access denied (1045, 1698), access denied to the database (1044), unknown database (1049).
    fn connect_failure(&self, code: &str, _: String) -> ConnectFailure {
        match code {
            "1045" | "1698" | "1044" => ConnectFailure::Authentication,
            "1049" => ConnectFailure::UnknownDatabase,
            _ => ConnectFailure::Other,
        }
    }

    /// XAER_NOTA (no such xid) and XA_RBROLLBACK (an empty branch, already rolled back).
    fn is_unknown_branch(&self, code: &str) -> bool {
        matches!(code, "1397" | "1402")
    }

    /// Whole seconds, rounded up: `innodb_lock_wait_timeout` takes nothing finer.
    fn lock_wait_limit(&self, limit: std::time::Duration) -> Option<String> {
        let seconds = limit.as_millis().div_ceil(1000).max(1);
        Some(format!("SET SESSION innodb_lock_wait_timeout = {seconds}"))
    }

    fn lock_wait_default(&self) -> Option<&'static str> {
        Some("SET SESSION innodb_lock_wait_timeout = DEFAULT")
    }

    /// 1213: deadlock; InnoDB rolled the victim's whole transaction back, savepoints included.
    fn rolls_back_transaction(&self, code: &str) -> bool {
        code == "1213"
    }

    /// 1205: lock wait timeout exceeded (only the statement is rolled back).
    fn is_lock_timeout(&self, code: &str) -> bool {
        code == "1205"
    }

    fn session_id_query(&self) -> Option<&'static str> {
        Some("SELECT CONNECTION_ID()")
    }

    /// Needs the same user as the session's, or the CONNECTION ADMIN privilege (SUPER before
    /// MariaDB 10.5.2).
    fn terminate_session(&self, session: u64) -> String {
        format!("KILL CONNECTION {session}")
    }

    /// The statement fails with 1317; the transaction stays open with its earlier writes, so the
    /// caller must roll it back.
    fn cancel_statement(&self, session: u64) -> String {
        format!("KILL QUERY {session}")
    }

    /// InnoDB's lock waits. MariaDB serves these tables from a cache refreshed when it was not
    /// read for 100 ms: a snapshot may be that old.
    fn lock_waits(&self) -> &'static str {
        "SELECT CAST(r.trx_mysql_thread_id AS SIGNED), CAST(b.trx_mysql_thread_id AS SIGNED) \
         FROM information_schema.INNODB_LOCK_WAITS w \
         JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id \
         JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id"
    }

    fn session_count(&self, session: u64) -> String {
        format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {session}")
    }

    /// 1094: unknown thread id.
    fn is_unknown_session(&self, code: &str) -> bool {
        code == "1094"
    }

    fn columns_sql(&self) -> &'static str {
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), CAST(COLUMN_TYPE AS CHAR), \
         CAST(IS_NULLABLE = 'YES' AS SIGNED) \
         FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
    }

    fn accepts(&self, kind: ColumnKind, declared: &str) -> bool {
        use ColumnKind as K;
        let base = declared.split(['(', ' ']).next().unwrap_or_default();
        let unsigned = declared.contains("unsigned");
        let accepted: &[&str] = match kind {
            K::SmallInt => &["tinyint", "smallint"],
            K::Int => &["tinyint", "smallint", "mediumint", "int"],
            K::BigInt => &["tinyint", "smallint", "mediumint", "int", "bigint"],
            K::Bool => &["tinyint", "bit"],
            K::Float => &["float"],
            K::Double => &["double"],
            K::Text => &["char", "varchar", "tinytext", "text", "mediumtext", "longtext"],
            K::Bytes => &["binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"],
            K::Decimal => &["decimal"],
            K::TimestampTz | K::Timestamp => &["datetime", "timestamp"],
            K::Date => &["date"],
            K::Uuid => return declared == "binary(16)",
            K::Json => &["json", "longtext", "mediumtext", "text"],
            K::Any => return true,
        };
        let signed_integer = matches!(kind, K::SmallInt | K::Int | K::BigInt);
        accepted.contains(&base) && !(signed_integer && unsigned)
    }

    fn expected(&self, kind: ColumnKind) -> &'static str {
        use ColumnKind as K;
        match kind {
            K::SmallInt => "SMALLINT",
            K::Int => "INT",
            K::BigInt => "BIGINT",
            K::Float => "FLOAT",
            K::Double => "DOUBLE",
            K::Bool => "BOOLEAN",
            K::Text => "TEXT or VARCHAR(n)",
            K::Bytes => "BLOB or LONGBLOB",
            K::Decimal => "DECIMAL(p, s)",
            K::TimestampTz | K::Timestamp => "DATETIME(6)",
            K::Date => "DATE",
            K::Uuid => "BINARY(16)",
            K::Json => "JSON",
            K::Any => "any type",
        }
    }

    /// The documented supported range of `DATETIME` and `DATE` (MariaDB stores year 10000 as NULL
    /// without an error; earlier years are not guaranteed).
    fn date_fits(&self, date: chrono::NaiveDate) -> (bool, &'static str) {
        use chrono::Datelike as _;
        ((1000..=9999).contains(&date.year()), "years 1000 to 9999")
    }

    fn migrations(&self) -> sqlx::migrate::Migrator {
        sqlx::migrate!("migrations/mysql")
    }
}

//! Everything that differs per database engine, one file per engine: identifier quoting and
//! placeholders, the shapes of the model statements, the text of `BEGIN`, `COMMIT`, savepoints,
//! `PREPARE TRANSACTION` and XA, the listing of prepared branches, the classification of error
//! codes, the column types of each value kind, and the range of dates each engine stores.
//!
//! Each engine implements [`Dialect`]; [`Backend::dialect`] is the one place that matches on the
//! engine. Nothing above this module writes engine-specific SQL or knows an engine's error codes.
//! (The driver types themselves, sqlx's pools, arguments and rows, are matched where values are
//! bound and connections opened: that is the edge between the engines' drivers and us.)

mod mysql;
mod postgres;
mod sqlite;

use crate::error::{ConnectFailure, ConstraintKind, Error};
use std::borrow::Cow;
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

/// Transaction isolation levels. SQLite always runs serializable, which is at least as strict as
/// any level asked for.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{ConnectionManager, Isolation, fetch_column};
///
/// ConnectionManager::configure("isolation_doc", "sqlite::memory:").await?;
/// let answer = ConnectionManager::using("isolation_doc")
///     .isolation(Isolation::Serializable)
///     .read_only()
///     .transaction(async |tx| fetch_column::<i64, _>(tx, "SELECT 42").await)
///     .await?;
/// assert_eq!(answer, [42]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// `READ UNCOMMITTED`
    ReadUncommitted,
    /// `READ COMMITTED`
    ReadCommitted,
    /// `REPEATABLE READ`
    RepeatableRead,
    /// `SERIALIZABLE`
    Serializable,
}

impl Isolation {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "READ UNCOMMITTED",
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// The id of one branch (one database's transaction) of a global transaction: the global id
/// (checked by its maker to be a safe SQL literal), the branch number and, when the unit's
/// outermost database may be its commit point site, a hash of that database's connection name
/// (see [`site_hash`]), so that recovery finds the site from the branch alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BranchId {
    pub(crate) gtrid: String,
    pub(crate) branch: usize,
    pub(crate) site: Option<u32>,
}

impl BranchId {
    /// Branch number `branch` of global transaction `gtrid`.
    pub(crate) fn new(gtrid: &str, branch: usize) -> BranchId {
        BranchId {
            gtrid: gtrid.to_owned(),
            branch,
            site: None,
        }
    }

    /// The same branch, naming the commit point site whose connection name hashes to `site`.
    pub(crate) fn with_site(mut self, site: Option<u32>) -> BranchId {
        self.site = site;
        self
    }

    /// The branch qualifier: `<number>` or `<number>_<site hash, 8 hex digits>`.
    pub(crate) fn bqual(&self) -> String {
        match self.site {
            Some(site) => format!("{}_{site:08x}", self.branch),
            None => self.branch.to_string(),
        }
    }

    /// The site hash a branch qualifier carries, if any.
    pub(crate) fn site_of(bqual: &str) -> Option<u32> {
        let (_, site) = bqual.split_once('_')?;
        u32::from_str_radix(site, 16).ok()
    }

    /// The PostgreSQL gid (one per branch, unique in the cluster).
    pub(crate) fn postgres_gid(&self) -> String {
        format!("{}-{}", self.gtrid, self.bqual())
    }

    /// The XA xid literal: `'gtrid','bqual'`.
    pub(crate) fn xa_xid(&self) -> String {
        format!("'{}','{}'", self.gtrid, self.bqual())
    }
}

/// A stable 32-bit hash (FNV-1a) of a connection name, the same in every process and version:
/// how a branch names its unit's commit point site in 8 characters.
pub(crate) fn site_hash(connection: &str) -> u32 {
    connection.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Commit,
    Rollback,
}

impl Finish {
    /// `COMMIT` or `ROLLBACK`.
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Finish::Commit => "COMMIT",
            Finish::Rollback => "ROLLBACK",
        }
    }
}

/// Which column types a field's Rust type is stored in: one kind per supported [`Value`](crate::Value)
/// type. Which declared types each kind accepts on each backend is [`ColumnKind::accepts`].
///
/// ```
/// use activerecord::{Backend, ColumnKind};
///
/// assert!(ColumnKind::BigInt.accepts(Backend::Sqlite, "INT"));
/// assert!(ColumnKind::BigInt.accepts(Backend::Postgres, "int8"));
/// assert!(!ColumnKind::BigInt.accepts(Backend::Postgres, "int4"));
/// assert_eq!(ColumnKind::BigInt.expected(Backend::MySql), "BIGINT");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnKind {
    /// `i16`.
    SmallInt,
    /// `i32`.
    Int,
    /// `i64`.
    BigInt,
    /// `f32`.
    Float,
    /// `f64`.
    Double,
    /// `bool`.
    Bool,
    /// `String`.
    Text,
    /// `Vec<u8>`.
    Bytes,
    /// `rust_decimal::Decimal`.
    Decimal,
    /// `chrono::DateTime<Utc>`.
    TimestampTz,
    /// `chrono::NaiveDateTime`.
    Timestamp,
    /// `chrono::NaiveDate`.
    Date,
    /// `uuid::Uuid`.
    Uuid,
    /// `activerecord::Json<T>`.
    Json,
    /// A type whose column types are not known (a [`Value`](crate::Value) of your own that does
    /// not say): any column type is accepted.
    Any,
}

/// What a field needs of its column: a [`ColumnKind`], and whether it may hold NULL (the field
/// is an `Option`).
///
/// ```
/// use activerecord::{ColumnKind, ColumnType, Value};
///
/// assert_eq!(i64::column_type(), ColumnType { kind: ColumnKind::BigInt, nullable: false });
/// assert!(<Option<i64>>::column_type().nullable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType {
    /// Which column types fit.
    pub kind: ColumnKind,
    /// Whether the field takes NULL.
    pub nullable: bool,
}

impl ColumnType {
    /// A NOT NULL column of `kind`.
    pub const fn not_null(kind: ColumnKind) -> Self {
        ColumnType { kind, nullable: false }
    }
}

impl ColumnKind {
    /// Whether a column declared as `declared` on `backend` stores this kind without loss.
    ///
    /// `declared` is SQLite's declared type (`INTEGER`, `VARCHAR(50)`, ...), PostgreSQL's
    /// `udt_name` (`int8`, `varchar`, `timestamptz`, ...) and MySQL's `COLUMN_TYPE` (`bigint(20)`,
    /// `tinyint(1)`, `binary(16)`, `int(11) unsigned`, ...).
    ///
    /// - SQLite, by type affinity, as lenient as SQLite: integers and `bool` take INTEGER or
    ///   NUMERIC affinity (`INT`, `BIGINT`, `BOOLEAN`); floats REAL affinity; `String` and
    ///   decimals (stored as exact text) TEXT affinity; date and time types TEXT or NUMERIC
    ///   affinity (`DATETIME`); JSON TEXT affinity or `JSON`; bytes and UUIDs BLOB affinity. A
    ///   column declared with no type takes anything.
    /// - PostgreSQL, exactly the type sqlx decodes: `int2`, `int4`, `int8`, `float4`, `float8`,
    ///   `bool`, `text`/`varchar`/`bpchar`/`citext`, `bytea`, `numeric`, `timestamptz`,
    ///   `timestamp`, `date`, `uuid`, `jsonb`/`json`.
    /// - MySQL/MariaDB: signed integer columns no wider than the field (`TINYINT`, `SMALLINT`
    ///   for `i16`; also `MEDIUMINT`, `INT` for `i32`; also `BIGINT` for `i64`), `TINYINT`/`BIT`
    ///   for `bool`, `FLOAT`, `DOUBLE`, the `CHAR`/`TEXT` family, the `BINARY`/`BLOB` family,
    ///   `DECIMAL`, `DATETIME`/`TIMESTAMP`, `DATE`, `BINARY(16)` for UUIDs, and `JSON` (MariaDB
    ///   reports it as `LONGTEXT`) or a `TEXT` type for JSON.
    pub fn accepts(self, backend: Backend, declared: &str) -> bool {
        self == ColumnKind::Any || backend.dialect().accepts(self, &declared.trim().to_ascii_lowercase())
    }

    /// The column type to declare on `backend`, as in the guide's type table.
    pub fn expected(self, backend: Backend) -> &'static str {
        match self {
            ColumnKind::Any => "any type",
            kind => backend.dialect().expected(kind),
        }
    }
}

/// What differs per engine. One implementation per engine, in this module's files; reached
/// through [`Backend::dialect`].
pub(crate) trait Dialect: Sync {
    // --- SQL text

    /// The character that quotes an identifier (doubled inside it).
    fn quote(&self) -> char;

    /// Appends the placeholder of the `position`-th parameter (1-based).
    fn push_placeholder(&self, out: &mut String, position: usize) {
        let _ = position;
        out.push('?');
    }

    /// Appends a cast of the placeholder just written to `value_type` where the engine fixes a
    /// statement's parameter types when it prepares it (PostgreSQL; see
    /// [`Value::postgres_type`](crate::Value::postgres_type)).
    fn push_parameter_cast(&self, out: &mut String, value_type: Option<&'static str>) {
        let _ = (out, value_type);
    }

    /// What follows `INSERT INTO t` for a row of defaults only.
    fn insert_defaults(&self) -> &'static str {
        "DEFAULT VALUES"
    }

    /// Whether an INSERT can return the generated key (`RETURNING`); MySQL reports it as the last
    /// insert id instead.
    fn returns_generated_key(&self) -> bool {
        true
    }

    /// Appends the clause that turns an INSERT of every column into an upsert on the key:
    /// `assignments` are the quoted non-key columns.
    fn push_upsert(&self, out: &mut String, quoted_key: &str, assignments: &[String]) {
        if assignments.is_empty() {
            out.push_str(&format!(" ON CONFLICT ({quoted_key}) DO NOTHING"));
        } else {
            let set: Vec<String> = assignments.iter().map(|c| format!("{c} = excluded.{c}")).collect();
            out.push_str(&format!(" ON CONFLICT ({quoted_key}) DO UPDATE SET {}", set.join(", ")));
        }
    }

    /// What a SELECT appends to lock its rows until the end of the transaction.
    fn for_update(&self) -> &'static str {
        " FOR UPDATE"
    }

    /// The LIMIT that means "no limit", where OFFSET needs a LIMIT before it.
    fn no_limit(&self) -> Option<i64> {
        None
    }

    // --- transactions

    /// The statements that open a transaction; with `branch`, one that can be prepared.
    fn begin(&self, isolation: Option<Isolation>, read_only: bool, branch: Option<&BranchId>)
    -> Vec<Cow<'static, str>>;

    /// The statements that end a transaction (a prepared branch: phase two).
    fn end(&self, how: Finish, read_only: bool, branch: Option<&BranchId>, prepared: bool) -> Vec<Cow<'static, str>> {
        let _ = (read_only, branch, prepared);
        vec![how.verb().into()]
    }

    /// Whether the engine has one writer per database file, which write transactions take at
    /// `BEGIN` (SQLite's `BEGIN IMMEDIATE`).
    fn has_single_writer(&self) -> bool {
        false
    }

    /// Whether this engine can prepare a transaction (phase one of two-phase commit).
    fn can_prepare(&self) -> bool {
        true
    }

    /// The statements that prepare `branch`.
    fn prepare(&self, branch: &BranchId) -> Vec<Cow<'static, str>>;

    /// How to list the branches prepared on the server, `None` where nothing can be prepared.
    fn prepared_listing(&self) -> Option<PreparedListing> {
        None
    }

    /// The statement that commits or rolls back, from any session, the prepared branch
    /// `gtrid`/`bqual` found by the listing. Both are checked to be safe literals before.
    fn finish_prepared(&self, how: Finish, gtrid: &str, bqual: &str) -> String {
        let _ = (how, gtrid, bqual);
        unreachable!("only engines with a listing of prepared branches finish them")
    }

    /// A query counting the prepared branches named `branch` (1 when the prepare worked), where
    /// a prepare can answer OK without preparing anything (PostgreSQL, in an aborted transaction).
    fn prepared_check(&self, branch: &BranchId) -> Option<String> {
        let _ = branch;
        None
    }

    /// Whether the session is free once its branch is prepared (PostgreSQL); otherwise phase two
    /// may run on it (XA).
    fn prepare_frees_session(&self) -> bool {
        false
    }

    /// A prepare's failure that needs a fix of the server's configuration, as an error that says
    /// how.
    fn prepare_error(&self, connection: &str, error: &sqlx::Error) -> Option<Error> {
        let _ = (connection, error);
        None
    }

    /// Whether a failed statement aborts the whole transaction until a rollback (PostgreSQL).
    fn aborts_on_error(&self) -> bool {
        false
    }

    // --- errors

    /// The code to classify a database error by.
    fn code(&self, db: &dyn sqlx::error::DatabaseError) -> String {
        db.code().map(Cow::into_owned).unwrap_or_default()
    }

    /// Codes of a value that does not fit its column (too long, out of range).
    fn is_value_too_large(&self, code: &str) -> bool;

    /// The setting to change when a value is too large for the connection rather than the column.
    fn too_large_setting(&self, code: &str) -> Option<&'static str> {
        let _ = code;
        None
    }

    /// Codes of a connection that broke.
    fn is_connection_lost(&self, code: &str) -> bool;

    /// A missing table or column.
    fn is_schema_error(&self, code: &str, message: &str) -> bool;

    /// A conflict that retrying the whole transaction may get past.
    fn is_transient(&self, code: &str) -> bool;

    /// Why a new connection was refused, from its error code.
    fn connect_failure(&self, code: &str, address: String) -> ConnectFailure;

    /// A prepared branch that is already finished (by someone else), or never existed.
    fn is_unknown_branch(&self, code: &str) -> bool;

    /// A prepared branch that another session is finishing right now.
    fn is_branch_busy(&self, code: &str, message: &str) -> bool {
        let _ = (code, message);
        false
    }

    // --- lock waits

    /// The statement that limits, for the rest of the transaction, how long a statement waits for
    /// a lock; `None` where the connection's own setting applies (SQLite's `busy_timeout`).
    fn lock_wait_limit(&self, limit: std::time::Duration) -> Option<String> {
        let _ = limit;
        None
    }

    /// The statement that puts back the session's default lock wait, where
    /// [`lock_wait_limit`](Self::lock_wait_limit) outlives the transaction (MySQL: a session
    /// variable): every transaction that sets no limit begins with it.
    fn lock_wait_default(&self) -> Option<&'static str> {
        None
    }

    /// A statement that gave up waiting for a lock.
    fn is_lock_timeout(&self, code: &str) -> bool;

    /// An error after which the server has rolled back the whole transaction and left the session
    /// in autocommit mode (MySQL's deadlock victim): savepoints are gone, and a further statement
    /// would run, and commit, on its own.
    fn rolls_back_transaction(&self, code: &str) -> bool {
        let _ = code;
        false
    }

    // --- server sessions

    /// The query answering the server's id of the current session (one row, one integer), sent in
    /// the same round trip as `BEGIN`; `None` where there is no server session (SQLite).
    fn session_id_query(&self) -> Option<&'static str> {
        None
    }

    /// The statement that ends server session `session` from another connection, and with it the
    /// statement it is running and its transaction.
    fn terminate_session(&self, session: u64) -> String {
        let _ = session;
        unreachable!("only engines with a session id query have sessions to end")
    }

    /// A query counting the server sessions with id `session`: 0 once it is gone.
    fn session_count(&self, session: u64) -> String {
        let _ = session;
        unreachable!("only engines with a session id query have sessions to count")
    }

    /// The statement that stops the statement server session `session` is running, from another
    /// connection, leaving the session (and, on PostgreSQL, an aborted transaction) in place.
    fn cancel_statement(&self, session: u64) -> String {
        let _ = session;
        unreachable!("only engines with a session id query have statements to cancel")
    }

    /// A query answering every lock wait of the database's sessions: rows of (waiting, blocking)
    /// session ids, both integers. A blocking session may itself be waiting, queued ahead.
    fn lock_waits(&self) -> &'static str {
        unreachable!("only engines with a session id query have sessions that wait")
    }

    /// Whether `terminate_session`'s error says that the session was gone already.
    fn is_unknown_session(&self, code: &str) -> bool {
        let _ = code;
        false
    }

    // --- columns and values

    /// The statement listing the columns of the table bound as its one parameter, one row each:
    /// name, type to match (as [`ColumnKind::accepts`] takes it), type to show, and 1 where the
    /// column takes NULL (0 where not).
    fn columns_sql(&self) -> &'static str;

    /// Whether a column declared as `declared` (lower case) stores `kind` without loss.
    fn accepts(&self, kind: ColumnKind, declared: &str) -> bool;

    /// The column type to declare for `kind`.
    fn expected(&self, kind: ColumnKind) -> &'static str;

    /// Whether a date is within what the engine stores, and that range in words.
    fn date_fits(&self, date: chrono::NaiveDate) -> (bool, &'static str);

    // --- our own tables

    /// The migrations that create the crate's own tables on this engine
    /// (`activerecord/migrations/<engine>/`), embedded at compile time.
    fn migrations(&self) -> sqlx::migrate::Migrator;
}

impl Backend {
    /// The engine's [`Dialect`]: the one place that matches on the engine.
    pub(crate) fn dialect(self) -> &'static dyn Dialect {
        match self {
            Backend::Sqlite => &sqlite::Sqlite,
            Backend::Postgres => &postgres::Postgres,
            Backend::MySql => &mysql::MySql,
        }
    }

    /// The engine a database error comes from.
    fn of_error(db: &dyn sqlx::error::DatabaseError) -> Backend {
        if db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().is_some() {
            Backend::MySql
        } else if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// The shape of an engine's listing of prepared branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreparedListing {
    /// A query taking one text parameter, a `LIKE` pattern of the ids wanted, and answering one
    /// id per row, `<gtrid>-<bqual>` (PostgreSQL's `pg_prepared_xacts` of the current database).
    IdsLike(&'static str),
    /// XA's `XA RECOVER`: server-wide, without parameters, answering `formatID, gtrid_length,
    /// bqual_length, data` where `data` is the gtrid followed by the bqual.
    XaRecover,
}

/// The table of commit markers: one row per unit of work that wrote on the database and
/// committed there, inserted in the same round trip as its `COMMIT`; and recovery's abort claims
/// (`aborted` set), which keep a two-phase unit's late commit at its commit point site from
/// landing.
pub(crate) const MARKERS_TABLE: &str = "activerecord_markers";

/// Checks that `id` can stand in SQL as a literal (neither `PREPARE TRANSACTION`, `XA` nor a
/// text batch takes a bind parameter): 1 to 64 ASCII letters, digits, `-` or `_`, short enough
/// for every backend.
pub(crate) fn validate_id(id: &str) -> Result<&str, Error> {
    let valid =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(id)
    } else {
        Err(Error::InvalidId {
            id: id.to_owned(),
            reason: "use 1 to 64 ASCII letters, digits, '-' or '_'",
        })
    }
}

/// The statement that records unit `unit` (checked by [`validate_id`]) as committed, placed
/// before its `COMMIT` in one text batch: the id is a literal, as a batch takes no parameters.
pub(crate) fn insert_marker(unit: &str, created_ms: i64) -> String {
    debug_assert!(validate_id(unit).is_ok(), "unit ids are made safe by their maker");
    format!("INSERT INTO {MARKERS_TABLE} (unit_id, created_ms) VALUES ('{unit}', {created_ms})")
}

/// The query counting the markers of unit `unit` (checked by [`validate_id`]): 1 when it
/// committed.
pub(crate) fn count_markers(unit: &str) -> String {
    debug_assert!(validate_id(unit).is_ok(), "unit ids are made safe by their maker");
    format!("SELECT COUNT(*) FROM {MARKERS_TABLE} WHERE unit_id = '{unit}' AND NOT aborted")
}

/// The query that succeeds, answering no row, when the marker table exists, as its latest
/// migration left it.
pub(crate) fn probe_markers() -> String {
    format!("SELECT unit_id, aborted FROM {MARKERS_TABLE} WHERE 1 = 0")
}

/// The query that succeeds, answering no row, when the marker table exists in any version.
pub(crate) fn probe_marker_table() -> String {
    format!("SELECT unit_id FROM {MARKERS_TABLE} WHERE 1 = 0")
}

/// Asks the dialect of the engine `db` came from a `question` about the error's code: the one
/// place that finds an error's engine and code.
pub(crate) fn ask<T>(db: &dyn sqlx::error::DatabaseError, question: impl FnOnce(&dyn Dialect, &str) -> T) -> T {
    let dialect = Backend::of_error(db).dialect();
    question(dialect, &dialect.code(db))
}

/// Why the server (or SQLite) refused a new connection, from its error; `address` is where the
/// connection went (a file for SQLite).
pub(crate) fn connect_failure(db: &dyn sqlx::error::DatabaseError, address: String) -> ConnectFailure {
    ask(db, |dialect, code| dialect.connect_failure(code, address))
}

/// Whether `db` says that a prepared branch is unknown: finished by someone else, or never
/// prepared.
pub(crate) fn is_unknown_branch(db: &dyn sqlx::error::DatabaseError) -> bool {
    ask(db, |dialect, code| dialect.is_unknown_branch(code))
}

/// Whether `db` says that the server rolled back the whole transaction it happened in.
pub(crate) fn rolls_back_transaction(db: &dyn sqlx::error::DatabaseError) -> bool {
    ask(db, |dialect, code| dialect.rolls_back_transaction(code))
}

/// Whether `db` says that another session is finishing a prepared branch right now.
pub(crate) fn is_branch_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    ask(db, |dialect, code| dialect.is_branch_busy(code, db.message()))
}

impl Error {
    /// Whether retrying the whole unit of work may succeed: the connection was lost, the pool was
    /// busy, or the database aborted the transaction to break a deadlock or a serialization
    /// conflict.
    ///
    /// ```
    /// assert!(!activerecord::Error::rejected("no").is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ConnectionLost { .. }
            | Error::PoolTimeout { .. }
            | Error::LockTimeout { .. }
            | Error::Deadlock { .. }
            | Error::RolledBackByServer { .. } => true,
            Error::Query { source, .. } => source
                .as_database_error()
                .is_some_and(|db| ask(db, |dialect, code| dialect.is_transient(code))),
            _ => false,
        }
    }

    /// Classifies an error from sqlx raised by a statement on `connection`.
    pub(crate) fn from_sqlx(connection: &str, source: sqlx::Error) -> Self {
        let connection = connection.to_owned();
        match &source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Error::ConnectionLost { connection, source },
            sqlx::Error::PoolTimedOut => Error::PoolTimeout { connection },
            sqlx::Error::ColumnDecode { index, .. } => Error::Decode {
                table: None,
                column: index.clone(),
                source,
            },
            sqlx::Error::Database(db) => {
                let dialect = Backend::of_error(db.as_ref()).dialect();
                let code = dialect.code(db.as_ref());
                let kind = match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation => Some(ConstraintKind::Unique),
                    sqlx::error::ErrorKind::ForeignKeyViolation => Some(ConstraintKind::ForeignKey),
                    sqlx::error::ErrorKind::NotNullViolation => Some(ConstraintKind::NotNull),
                    sqlx::error::ErrorKind::CheckViolation => Some(ConstraintKind::Check),
                    _ if dialect.is_value_too_large(&code) => Some(ConstraintKind::ValueTooLarge),
                    _ => None,
                };
                if let Some(kind) = kind {
                    let constraint = match dialect.too_large_setting(&code) {
                        Some(setting) => Some(setting.to_owned()),
                        None => db.constraint().map(str::to_owned),
                    };
                    return Error::ConstraintViolation {
                        connection,
                        kind,
                        constraint,
                        source,
                    };
                }
                if dialect.is_connection_lost(&code) {
                    Error::ConnectionLost { connection, source }
                } else if dialect.is_lock_timeout(&code) {
                    Error::LockTimeout {
                        connection,
                        source: Some(source),
                    }
                } else if dialect.is_schema_error(&code, db.message()) {
                    Error::Schema { connection, source }
                } else {
                    Error::Query { connection, source }
                }
            }
            _ => Error::Query { connection, source },
        }
    }
}

//! The one error type of the crate.
//!
//! Every failure a caller can act on has its own variant, and every variant that comes from the
//! database keeps the original [`sqlx::Error`] as its `source()`. Messages name the connection
//! (never its URL, so never its password) and say what the caller can do next.

use std::fmt;

/// The result type of every fallible operation in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can match on.
///
/// ```
/// use activerecord::{ConnectionManager, Error};
///
/// let err = ConnectionManager::get("no_such_db").unwrap_err();
/// assert!(matches!(err, Error::UnknownConnection { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `find` (or `update`, `delete`, `reload`) found no row with that primary key.
    #[error("no row in `{table}` with {key_column} = {key}")]
    NotFound {
        /// The model's table.
        table: &'static str,
        /// The primary key column.
        key_column: &'static str,
        /// The key that was looked up, as written by `Debug`.
        key: String,
    },

    /// `update`, `delete` or `reload` of a record whose database-generated key is still `None`:
    /// it was never saved, or it was deleted. Save it first.
    #[error("cannot {operation} a `{table}` record that has no key yet (never saved, or deleted); save it first")]
    NotSaved {
        /// The model's table.
        table: &'static str,
        /// The operation that needs a key.
        operation: &'static str,
    },

    /// A call through [`Ambient`](crate::Ambient) for a model that names no database, with no
    /// transaction scope open in the task: nothing says which connection to use.
    #[error(
        "this model names no database and no transaction scope is open in this task: add #[activerecord(database = \"...\")] to the model, open a scope with ConnectionManager::using(name).transaction(..), or pass a connection"
    )]
    NoConnectionChosen,

    /// A connection name that was never configured.
    #[error(
        "no connection named {name:?} is configured (configured: {}); call ConnectionManager::configure first",
        list_or_none(configured)
    )]
    UnknownConnection {
        /// The name that was asked for.
        name: String,
        /// The names that are configured, sorted.
        configured: Vec<String>,
    },

    /// The database refused a write because it breaks a constraint of the schema, or a value it
    /// cannot hold. A statement larger than MySQL/MariaDB's `max_allowed_packet` is reported here
    /// too, as [`ConstraintKind::ValueTooLarge`] with `constraint` `"max_allowed_packet"`.
    #[error("{kind} on connection {connection:?}{}: {source}", constraint_advice(*kind, constraint.as_deref()))]
    ConstraintViolation {
        /// The connection the statement ran on.
        connection: String,
        /// Which kind of constraint.
        kind: ConstraintKind,
        /// The constraint's name, when the database reports it.
        constraint: Option<String>,
        /// The database's own error.
        #[source]
        source: sqlx::Error,
    },

    /// The table or column the statement names does not exist: the schema is not what the model
    /// expects (a migration has not run, or the model names the wrong table).
    #[error("schema mismatch on connection {connection:?} (missing table or column?): {source}")]
    Schema {
        /// The connection the statement ran on.
        connection: String,
        /// The database's own error.
        #[source]
        source: sqlx::Error,
    },

    /// The connection to the database broke (network error, server shut down, connection killed).
    /// Whatever the open transaction had written is rolled back by the server; retrying the
    /// whole unit of work on a new connection is safe.
    #[error("connection {connection:?} was lost: {source}")]
    ConnectionLost {
        /// The connection name.
        connection: String,
        /// The underlying I/O or protocol error.
        #[source]
        source: sqlx::Error,
    },

    /// No connection could be had within the pool's acquire timeout: every pooled connection was
    /// busy, or a new one could not be opened (the server is down, or at its connection limit).
    #[error(
        "timed out waiting for a connection of {connection:?}: all were busy, or the server refused new ones (down, or at its connection limit); raise max_connections or acquire_timeout, hold connections for less time, or check the server"
    )]
    PoolTimeout {
        /// The connection name.
        connection: String,
    },

    /// A connection could not be set up from its configuration (bad URL, unknown scheme,
    /// unreadable configuration file, refused credentials).
    #[error("configuration of connection {connection:?}: {message}")]
    Configuration {
        /// The connection name, or the file that was being read.
        connection: String,
        /// What is wrong and how to fix it. Never contains a password.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A connection could not be opened when the connection was configured: the server refused
    /// it, rejected the credentials, has no such database, or the SQLite file cannot be opened.
    /// Reported at once, with its cause, instead of after the pool's acquire timeout.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use activerecord::{ConnectFailure, ConnectionManager, Error};
    ///
    /// let err = ConnectionManager::configure("connect_doc", "sqlite:///no/such/dir/bank.db?mode=rwc")
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::Connect { cause: ConnectFailure::CannotOpen { .. }, .. }), "{err}");
    /// # }
    /// ```
    #[error("cannot connect to {connection:?}: {cause} (driver said: {detail})")]
    Connect {
        /// The connection name.
        connection: String,
        /// Why, in terms to act on.
        cause: ConnectFailure,
        /// The driver's own message, passwords masked.
        detail: String,
        /// The driver's error; left out if its text would show a password.
        #[source]
        source: Option<Box<sqlx::Error>>,
    },

    /// The connection cannot be closed or replaced from here: the calling task holds an open
    /// transaction scope on it, and closing waits for every connection of the pool to come back,
    /// including the one the scope holds, so it would never return.
    #[error(
        "connection {connection:?} cannot be closed or re-configured by this task: it holds an open transaction scope on it; close or re-configure it after the scope ends"
    )]
    InUse {
        /// The connection name.
        connection: String,
    },

    /// A column value could not be converted to the field's Rust type, e.g. a NULL read into a
    /// field that is not an `Option` (on every backend, SQLite included).
    #[error("cannot read column `{column}`{} into the model's field: {source}", of_table(*table))]
    Decode {
        /// The model's table, when the row was read for a model.
        table: Option<&'static str>,
        /// The column.
        column: String,
        /// Why the value does not fit.
        #[source]
        source: sqlx::Error,
    },

    /// A value could not be encoded as a statement parameter (e.g. JSON that fails to serialize).
    #[error("cannot encode parameter {parameter}: {source}")]
    Encode {
        /// The 1-based position of the parameter.
        parameter: usize,
        /// Why encoding failed.
        #[source]
        source: sqlx::error::BoxDynError,
    },

    /// A value is outside the range the backend can store (a date before year 1000 on
    /// MySQL/MariaDB, say). It was found before the statement was sent: nothing was written.
    #[error(
        "cannot send parameter {parameter}: {value} is outside what {backend} stores ({range}); nothing was sent: keep the value within that range"
    )]
    ValueOutOfRange {
        /// The 1-based position of the parameter.
        parameter: usize,
        /// The value, as written by `Display`.
        value: String,
        /// The backend it was to be sent to.
        backend: crate::backend::Backend,
        /// The range that backend stores.
        range: &'static str,
    },

    /// The table does not match the model: see [`Model::check_schema`](crate::Model::check_schema).
    /// Lists every difference at once.
    #[error(
        "table `{table}` on connection {connection:?} does not match the model: {}; migrate the database or change the model",
        list_mismatches(mismatches)
    )]
    SchemaMismatch {
        /// The connection that was checked.
        connection: String,
        /// The model's table.
        table: &'static str,
        /// Every difference found, in the model's column order.
        mismatches: Vec<SchemaMismatch>,
    },

    /// A query names a column the model does not have.
    #[error("`{table}` has no column `{column}` (columns: {})", columns.join(", "))]
    UnknownColumn {
        /// The model's table.
        table: &'static str,
        /// The column that was asked for.
        column: String,
        /// The model's columns.
        columns: &'static [&'static str],
    },

    /// A bulk write (`delete_all`) on a query with no filter: it would touch every row of the
    /// table. Add a filter, or mark the query [`unfiltered`](crate::Query::unfiltered) to mean
    /// every row.
    #[error(
        "refusing to {operation} every row of `{table}`: the query has no filter; add one, or call .unfiltered() on the query to mean every row"
    )]
    Unfiltered {
        /// The model's table.
        table: &'static str,
        /// The bulk operation that was refused.
        operation: &'static str,
    },

    /// The application refused to go on (an invariant of the business rule failed, e.g.
    /// "insufficient funds"); returned from a transaction body it rolls the scope back.
    #[error("rejected: {0}")]
    Rejected(String),

    /// A statement gave up waiting for a lock held by another transaction: PostgreSQL's
    /// `lock_timeout`, MySQL/MariaDB's `innodb_lock_wait_timeout` (set for units of work over
    /// several databases by [`DatabaseConfig::lock_timeout`](crate::DatabaseConfig::lock_timeout)
    /// or [`Using::lock_timeout`](crate::Using::lock_timeout)), SQLite's `busy_timeout`. Nothing
    /// was committed by it: return it from the scope (its transaction rolls back) and retry the
    /// whole unit of work, perhaps after a pause ([`Error::is_transient`] is true).
    /// On SQLite the wait may also be for the file's write lock held by another scope of this
    /// process (write scopes queue for it in the process before `BEGIN IMMEDIATE`): then there is
    /// no database error.
    #[error(
        "a statement on connection {connection:?} gave up waiting for a lock held by another transaction; roll back and retry the unit of work{}",
        source.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
    )]
    LockTimeout {
        /// The connection name.
        connection: String,
        /// The database's error, when the database gave up the wait.
        #[source]
        source: Option<sqlx::Error>,
    },

    /// This unit of work and another of this process waited for each other's locks across
    /// databases: a deadlock that no database can see, since each sees one plain lock wait. The
    /// process's deadlock detector (see
    /// [`ConnectionManager::detect_deadlocks`](crate::ConnectionManager::detect_deadlocks)) chose
    /// this unit, the younger one, and cancelled its waiting statement; the other goes on. Nothing
    /// of this unit commits, and its transactions refuse every further statement: return the error
    /// from the scope (every database rolls back) and retry the whole unit of work
    /// ([`Error::is_transient`] is true).
    #[error(
        "a deadlock across databases: this unit of work waited {waited:?} on connection {connection:?} for a unit of work of this process that waits for it, and was chosen (the younger) to give way; it rolls back on every database: retry it"
    )]
    Deadlock {
        /// The connection whose statement was cancelled.
        connection: String,
        /// How long that statement had waited when the deadlock was found.
        waited: std::time::Duration,
    },

    /// A transaction scope's body did not finish within the scope's timeout; the scope was rolled
    /// back.
    #[error("transaction scope on connection {connection:?} timed out after {limit:?} and was rolled back")]
    Timeout {
        /// The scope's connection.
        connection: String,
        /// The scope's time limit.
        limit: std::time::Duration,
    },

    /// The transaction was aborted by a statement that failed inside it (PostgreSQL refuses
    /// everything after a failed statement until a rollback), so it cannot commit. Run statements
    /// whose failure you want to handle in a nested scope: it rolls back to a savepoint.
    #[error(
        "the transaction on connection {connection:?} cannot commit: a statement failed inside it and aborted it; handle such failures in a nested scope (a savepoint)"
    )]
    Aborted {
        /// The connection of the aborted transaction.
        connection: String,
    },

    /// An idempotency key was used again with a different request (its fingerprint differs from
    /// the one stored with the key): the first call's result does not answer this one. Use a new
    /// key for a new request.
    #[error("idempotency key {key:?} was already used for a different request; use a new key for a new request")]
    IdempotencyConflict {
        /// The key.
        key: String,
    },

    /// The server rolled back the whole transaction on this connection (MySQL/MariaDB does for a
    /// deadlock's victim, savepoints included) and the transaction refuses every further statement
    /// (the session would otherwise run them in autocommit mode). Nothing of it was committed:
    /// return the error from the scope and retry the unit of work ([`Error::is_transient`] is
    /// true).
    #[error(
        "the server rolled back the whole transaction on connection {connection:?} (a deadlock), savepoints included; no further statement runs in it: return from the scope and retry the unit of work"
    )]
    RolledBackByServer {
        /// The connection of the transaction.
        connection: String,
    },

    /// A write scope on a SQLite database (a `requires_new` scope, or another connection name on
    /// the same file) whose write lock an open scope of the same task holds. SQLite has one writer
    /// per database file, and the holder cannot commit before the new scope ends, so the new scope
    /// would wait on its own task until `busy_timeout` and then fail with "database is locked".
    /// Nest it on the holder's connection (a savepoint), or run it after the enclosing scope ends.
    #[error(
        "a write scope on SQLite connection {connection:?} would wait for the write lock that this task's open scope on {holder:?} holds (SQLite has one writer per file, and that scope cannot commit first); nest it on {holder:?} as a savepoint, or run it after the enclosing scope ends"
    )]
    SqliteWriterBusy {
        /// The connection of the refused scope.
        connection: String,
        /// The connection (same file) whose open scope holds the write lock.
        holder: String,
    },

    /// A transaction handle was used after its scope ended.
    #[error(
        "the transaction on connection {connection:?} has already ended; use a transaction handle only inside its scope"
    )]
    TransactionEnded {
        /// The connection of the ended transaction.
        connection: String,
    },

    /// Some databases of one unit of work committed and others did not: the databases disagree
    /// and need reconciliation. Every database's outcome is known; the report names each. Never
    /// reported as a plain failure, and never transient: retrying could apply the work twice.
    #[error("{0}")]
    PartialCommit(Box<PartialCommit>),

    /// The outcome of at least one database of a unit of work is unknown: its `COMMIT` was sent
    /// and no answer came (the connection broke, the session was killed), so it may have
    /// committed. The report names each database's outcome; the others were rolled back unless
    /// they had committed before. Never a plain error and never transient: retrying could apply
    /// the work twice. Find out by looking at the data (the unit id names the unit of work).
    #[error("{0}")]
    OutcomeUnknown(Box<PartialCommit>),

    /// An [`Observer`](crate::Observer) failed on the event sent before a unit of work's final
    /// commits, so the unit was rolled back: nothing was committed.
    #[error("unit of work {unit} was rolled back because an observer refused it: {source}")]
    Observer {
        /// The unit of work's id.
        unit: String,
        /// The observer's error.
        #[source]
        source: Box<Error>,
    },

    /// An id that is written into SQL as a literal (a two-phase transaction id: neither
    /// `PREPARE TRANSACTION` nor `XA` takes a bind parameter) is not one that can be written
    /// safely. Nothing was sent to the database.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, Error};
    ///
    /// let db = ConnectionManager::configure("invalid_id_doc", "sqlite::memory:").await?;
    /// let err = db.tpc_begin("x'; DROP TABLE t; --").await.unwrap_err();
    /// assert!(matches!(err, Error::InvalidId { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    #[error("invalid transaction id {id:?}: {reason}")]
    InvalidId {
        /// The id that was refused.
        id: String,
        /// What a valid id looks like.
        reason: &'static str,
    },

    /// The two-phase coordinator cannot do what was asked: see [`TwoPhaseError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use activerecord::two_phase::{Coordinator, CoordinatorConfig};
    /// use activerecord::{Error, TwoPhaseError};
    ///
    /// let err = Coordinator::install(CoordinatorConfig::new("not a name!")).await.unwrap_err();
    /// assert!(matches!(err, Error::TwoPhase(TwoPhaseError::InvalidCoordinatorName { .. })), "{err}");
    /// # }
    /// ```
    #[error("{0}")]
    TwoPhase(TwoPhaseError),

    /// Migrating the crate's own tables (see [`migrate`](crate::migrate)) was refused: the calling
    /// task holds an open transaction scope on the connection. The migration would wait for the
    /// scope's own locks (or for the pooled connection it holds), and DDL commits an open
    /// MySQL/MariaDB transaction. Migrate at install or configure time, outside any scope.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, Error};
    ///
    /// let db = ConnectionManager::configure("migrate_in_scope_doc", "sqlite::memory:").await?;
    /// let refused = ConnectionManager::using("migrate_in_scope_doc")
    ///     .transaction(async |_tx| activerecord::migrate::run(&db).await)
    ///     .await;
    /// assert!(matches!(refused, Err(Error::MigrateInScope { .. })));
    /// # Ok(()) }
    /// ```
    #[error(
        "the crate's own tables on connection {connection:?} cannot be migrated by this task: it holds an open transaction scope on it (the migration would wait for that scope, and DDL commits an open MySQL/MariaDB transaction); run activerecord::migrate::run at install or configure time, outside any scope"
    )]
    MigrateInScope {
        /// The connection name.
        connection: String,
    },

    /// Migrating the crate's own tables (see [`migrate`](crate::migrate)) failed: a migration
    /// failed, or the database's migration history does not match the crate's (migrated by a newer
    /// version of the crate, or an applied migration was edited).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, Error};
    ///
    /// let db = ConnectionManager::configure("migrate_error_doc", "sqlite::memory:").await?;
    /// activerecord::migrate::run(&db).await?;
    /// // As if a newer version of the crate had migrated this database.
    /// db.execute(
    ///     "INSERT INTO activerecord_migrations (version, description, success, checksum, execution_time) \
    ///      VALUES (9999, 'from the future', TRUE, x'00', 0)",
    /// )
    /// .await?;
    /// let err = activerecord::migrate::run(&db).await.unwrap_err();
    /// assert!(matches!(err, Error::Migrate { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    #[error(
        "migrating the crate's own tables on connection {connection:?} failed: {}",
        migrate_message(source)
    )]
    Migrate {
        /// The connection name.
        connection: String,
        /// sqlx's migrator error.
        #[source]
        source: Box<sqlx::migrate::MigrateError>,
    },

    /// Any other database error.
    #[error("query failed on connection {connection:?}: {source}")]
    Query {
        /// The connection the statement ran on.
        connection: String,
        /// The database's own error.
        #[source]
        source: sqlx::Error,
    },
}

/// What happened to one database of a unit of work.
///
/// ```
/// use activerecord::DatabaseOutcome;
///
/// assert_eq!(DatabaseOutcome::Unknown.to_string(), "outcome unknown");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseOutcome {
    /// Its `COMMIT` was answered: its work is durable.
    Committed,
    /// Its work was rolled back, or refused at `COMMIT`: none of it is there.
    RolledBack,
    /// Its `COMMIT` was sent and no answer came: it may have committed or not.
    Unknown,
    /// Two-phase: its branch is prepared and the decision to commit is durable; recovery applies
    /// the commit.
    Decided,
}

impl fmt::Display for DatabaseOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatabaseOutcome::Committed => "committed",
            DatabaseOutcome::RolledBack => "rolled back",
            DatabaseOutcome::Unknown => "outcome unknown",
            DatabaseOutcome::Decided => "decided, to be committed by recovery",
        })
    }
}

/// The report of a unit of work whose databases do not all agree, or whose outcome is not known
/// everywhere: see [`Error::PartialCommit`] and [`Error::OutcomeUnknown`].
#[derive(Debug)]
pub struct PartialCommit {
    /// The unit of work's id (also in its observer events and its `tracing` event).
    pub unit: String,
    /// Every database of the unit, in commit order, with its outcome.
    pub outcomes: Vec<(String, DatabaseOutcome)>,
    /// The connection whose commit failed, or whose answer was lost.
    pub failed: String,
    /// Why that commit failed.
    pub cause: Error,
    /// For each database whose outcome is unknown and whose `COMMIT` carried the unit's commit
    /// marker, the server session that sent it: what
    /// [`ConnectionManager::resolve_outcomes`](crate::ConnectionManager::resolve_outcomes) ends
    /// before it looks for the marker. A database missing here cannot be resolved from markers.
    pub sessions: Vec<(String, u64)>,
}

impl Error {
    /// The per-database report of a unit of work that ended partial, decided or unknown.
    ///
    /// ```
    /// assert!(activerecord::Error::rejected("no").report().is_none());
    /// ```
    pub fn report(&self) -> Option<&PartialCommit> {
        match self {
            Error::PartialCommit(report) | Error::OutcomeUnknown(report) => Some(report),
            _ => None,
        }
    }
}

impl PartialCommit {
    /// The connections that ended with `outcome`, in commit order.
    pub fn with_outcome(&self, outcome: DatabaseOutcome) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| *o == outcome)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The connections that committed, in commit order.
    pub fn committed(&self) -> Vec<&str> {
        self.with_outcome(DatabaseOutcome::Committed)
    }

    /// The connections rolled back.
    pub fn rolled_back(&self) -> Vec<&str> {
        self.with_outcome(DatabaseOutcome::RolledBack)
    }

    /// The connections whose outcome is unknown.
    pub fn unknown(&self) -> Vec<&str> {
        self.with_outcome(DatabaseOutcome::Unknown)
    }
}

impl fmt::Display for PartialCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unknown = !self.unknown().is_empty();
        let decided = self.with_outcome(DatabaseOutcome::Decided);
        if !unknown && !decided.is_empty() {
            write!(
                f,
                "unit of work {}: the commit decision is durable, and phase two of {:?} failed ({})",
                self.unit, self.failed, self.cause
            )?;
        } else if unknown {
            write!(
                f,
                "unit of work {}: the outcome of {:?} is unknown: its COMMIT was sent and no answer came ({})",
                self.unit, self.failed, self.cause
            )?;
        } else {
            write!(
                f,
                "partial commit of unit of work {}: the commit of {:?} failed ({})",
                self.unit, self.failed, self.cause
            )?;
        }
        let each: Vec<String> = self.outcomes.iter().map(|(name, o)| format!("{name} {o}")).collect();
        write!(f, "; {}", each.join(", "))?;
        if !unknown && !decided.is_empty() {
            f.write_str("; recovery (Coordinator::recover) commits the decided branches: do not repair by hand")
        } else if unknown {
            f.write_str(
                "; find out later with ConnectionManager::resolve_outcomes (it reads the unit's commit markers), \
                 or look at the data of the unknown databases before repairing anything: retrying could apply the work twice",
            )
        } else {
            f.write_str("; the databases disagree and need reconciliation")
        }
    }
}

/// What the two-phase coordinator cannot do: see [`Error::TwoPhase`].
///
/// ```
/// use activerecord::two_phase::Coordinator;
/// use activerecord::{Error, TwoPhaseError};
///
/// let err = Coordinator::installed().unwrap_err();
/// assert!(matches!(err, Error::TwoPhase(TwoPhaseError::NotInstalled)));
/// assert!(err.to_string().contains("Coordinator::install"), "the message says what to do");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwoPhaseError {
    /// A two-phase scope was opened, or the coordinator asked for, before one was installed.
    #[error(
        "no two-phase coordinator is installed: call activerecord::two_phase::Coordinator::install(CoordinatorConfig::new(\"app\")) at start-up"
    )]
    NotInstalled,
    /// The coordinator's name cannot be part of a transaction id.
    #[error("invalid coordinator name {name:?}: use 1 to {max_len} ASCII letters, digits or '_'")]
    InvalidCoordinatorName {
        /// The name that was refused.
        name: String,
        /// The longest name allowed (ids must fit XA's 64-byte gtrid).
        max_len: usize,
    },
    /// A two-phase unit reached its commit decision later than half the coordinator's grace
    /// period after it began: recovery may already be rolling its prepared branches back as
    /// abandoned, so it was rolled back instead of deciding. Nothing committed.
    #[error(
        "the two-phase unit took {age:?} to reach its commit decision, more than half the coordinator's grace period ({grace_period:?}), \
         after which recovery may roll its branches back as abandoned: it was rolled back, nothing committed; \
         shorten the unit or raise CoordinatorConfig::grace_period"
    )]
    DecisionTooLate {
        /// How long after it began the unit was ready to decide.
        age: std::time::Duration,
        /// The coordinator's grace period.
        grace_period: std::time::Duration,
    },
    /// A recovery run found the unit's prepared branches older than its grace period, with no
    /// marker at the commit point site, and rolled them back before the site's commit arrived;
    /// its claim at the site then refused that commit. Nothing committed.
    #[error(
        "the two-phase unit {gtrid} was rolled back by a recovery run that took it for abandoned before its commit point site committed: \
         nothing committed; every process that recovers these databases must use a grace period longer than the longest unit"
    )]
    RolledBackByRecovery {
        /// The unit's global transaction id.
        gtrid: String,
    },
}

/// sqlx's message, with the hint for a half-applied migration naming our migrations table (sqlx's
/// names its default table; `migrate`'s tests check that this one is `MIGRATIONS_TABLE`).
fn migrate_message(source: &sqlx::migrate::MigrateError) -> String {
    match source {
        sqlx::migrate::MigrateError::Dirty(version) => format!(
            "migration {version} is partially applied (MySQL/MariaDB cannot roll DDL back): finish or undo it by hand, then delete its row (success = false) from activerecord_migrations"
        ),
        other => other.to_string(),
    }
}

/// Why a connection could not be opened: see [`Error::Connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// Nothing listens at the address (the server is down, still starting, or on another port).
    Refused {
        /// `host:port`, or the Unix socket path.
        address: String,
    },
    /// The server rejected the user name or password.
    Authentication,
    /// The server has no database of that name.
    UnknownDatabase,
    /// The SQLite file (or its directory) cannot be opened.
    CannotOpen {
        /// The file's path.
        path: String,
    },
    /// The TLS handshake failed.
    Tls,
    /// Anything else (name resolution, network, protocol); the detail says what.
    Other,
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Refused { address } => write!(
                f,
                "connection refused at {address}: check that the server is running and listens on that host and port"
            ),
            ConnectFailure::Authentication => f.write_str(
                "the server rejected the user name or password: check the credentials in the URL and the server's access rules",
            ),
            ConnectFailure::UnknownDatabase => {
                f.write_str("the database does not exist on the server: create it, or fix its name in the URL")
            }
            ConnectFailure::CannotOpen { path } => write!(
                f,
                "cannot open the SQLite file {path}: check that its directory exists and is writable (add ?mode=rwc to create the file)"
            ),
            ConnectFailure::Tls => f.write_str("the TLS handshake failed: check the server's certificate and the URL's TLS mode"),
            ConnectFailure::Other => f.write_str("check the URL and that the server can be reached"),
        }
    }
}

/// The kinds of constraint a write can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConstraintKind {
    /// A unique or primary key constraint.
    Unique,
    /// A foreign key constraint.
    ForeignKey,
    /// A NOT NULL column was given NULL.
    NotNull,
    /// A CHECK constraint.
    Check,
    /// A value does not fit its column (too long, out of range).
    ValueTooLarge,
}

impl fmt::Display for ConstraintKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConstraintKind::Unique => "unique constraint violated",
            ConstraintKind::ForeignKey => "foreign key constraint violated",
            ConstraintKind::NotNull => "NOT NULL constraint violated",
            ConstraintKind::Check => "CHECK constraint violated",
            ConstraintKind::ValueTooLarge => "value does not fit its column",
        })
    }
}

fn of_table(table: Option<&str>) -> String {
    table.map(|t| format!(" of `{t}`")).unwrap_or_default()
}

/// What to do about a violation whose fix is not in the schema.
fn constraint_advice(kind: ConstraintKind, constraint: Option<&str>) -> &'static str {
    match (kind, constraint) {
        (ConstraintKind::ValueTooLarge, Some(MAX_ALLOWED_PACKET)) => {
            " (the statement is larger than the server's max_allowed_packet: raise max_allowed_packet \
             on the server, e.g. SET GLOBAL max_allowed_packet = 1073741824, or store smaller values)"
        }
        _ => "",
    }
}

/// The name MySQL/MariaDB gives the limit on one statement's size.
const MAX_ALLOWED_PACKET: &str = "max_allowed_packet";

fn list_mismatches(mismatches: &[SchemaMismatch]) -> String {
    let items: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    items.join("; ")
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

impl Error {
    /// An application-level refusal, e.g. `Error::rejected("insufficient funds")`.
    ///
    /// ```
    /// let err = activerecord::Error::rejected("insufficient funds");
    /// assert_eq!(err.to_string(), "rejected: insufficient funds");
    /// ```
    pub fn rejected(reason: impl Into<String>) -> Self {
        Error::Rejected(reason.into())
    }
}

/// One difference between a model and its table, found by
/// [`Model::check_schema`](crate::Model::check_schema).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaMismatch {
    /// The table does not exist.
    MissingTable,
    /// The table has no column for this field.
    MissingColumn {
        /// The column the model reads and writes.
        column: &'static str,
    },
    /// The column's type cannot hold the field's Rust type without loss.
    IncompatibleType {
        /// The column.
        column: &'static str,
        /// Its type, as the database reports it.
        found: String,
        /// The type to declare (from the guide's type table).
        expected: &'static str,
    },
    /// The column allows NULL but its field is not an `Option`: a NULL there could not be read.
    NullableColumn {
        /// The column.
        column: &'static str,
    },
}

impl fmt::Display for SchemaMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaMismatch::MissingTable => f.write_str("the table does not exist"),
            SchemaMismatch::MissingColumn { column } => write!(f, "column `{column}` is missing"),
            SchemaMismatch::IncompatibleType {
                column,
                found,
                expected,
            } => write!(f, "column `{column}` is {found}, the field needs {expected}"),
            SchemaMismatch::NullableColumn { column } => write!(
                f,
                "column `{column}` allows NULL but its field is not an Option (declare it NOT NULL, or make the field an Option)"
            ),
        }
    }
}

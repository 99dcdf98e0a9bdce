//! Two-phase commit across PostgreSQL (`PREPARE TRANSACTION`) and MySQL/MariaDB (`XA`), with a
//! durable decision log and recovery.
//!
//! The same nested-scope code becomes atomic across databases when its outermost scope is opened
//! with [`Using::two_phase`]: at its end every database's transaction is *prepared*, the commit
//! decision is written to the coordinator's log, then each is committed. A crash at any point is
//! resolved by [`Coordinator::recover`]: a branch whose decision is in the log is committed, any
//! other is rolled back ("presumed abort"), but only once it is older than the grace period, so
//! that a transaction still in flight in another process is never touched. Recovery only touches
//! branches whose id names this coordinator, and is safe to run twice or from two processes.
//!
//! SQLite cannot prepare a transaction: a two-phase scope that reaches a SQLite database fails
//! before anything commits.
//!
//! The DB-API style of the Python guide is here too: [`Database::tpc_begin`] and the
//! [`TpcTransaction`] it returns.

use crate::ActiveRecord;
use crate::backend::{PreparedListing, validate_id};
use crate::connection::{Database, DatabaseConfig, UnitTag};
use crate::context::context;
use crate::error::{Error, Result, TwoPhaseError};
use crate::executor::{Resolve, Target};
use crate::model::Model;
use crate::query::col;
use crate::transaction::Using;
use crate::transaction::{
    BestEffort, BranchId, ChooseProtocol, Commit, CommitProtocol, Finish, Participant, ScopeOptions, Settled, now_ms,
};
use crate::value::Json;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The prefix of every global transaction id this crate writes.
const PREFIX: &str = "ar";

/// The longest coordinator name: ids must fit XA's 64-byte gtrid.
const MAX_NAME: usize = 24;

/// A new global transaction id for `coordinator`.
fn new_gtrid(coordinator: &str) -> String {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let random = uuid::Uuid::new_v4().as_u128() as u32;
    format!("{PREFIX}-{coordinator}-{created:x}-{random:08x}")
}

/// When a gtrid of `coordinator` was created, or `None` if it is not one of its ids.
fn created_at(coordinator: &str, gtrid: &str) -> Option<SystemTime> {
    let rest = gtrid
        .strip_prefix(PREFIX)?
        .strip_prefix('-')?
        .strip_prefix(coordinator)?
        .strip_prefix('-')?;
    let (millis, random) = rest.split_once('-')?;
    if random.len() != 8 || random.contains('-') {
        return None;
    }
    let millis = u64::from_str_radix(millis, 16).ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(millis))
}

/// Where the coordinator keeps its decisions.
#[derive(Debug, Clone)]
enum LogLocation {
    SqliteFile(PathBuf),
    Connection(String),
}

/// How to set up the [`Coordinator`].
///
/// ```
/// use activerecord::two_phase::CoordinatorConfig;
/// use std::time::Duration;
///
/// let config = CoordinatorConfig::new("billing")
///     .log_in_connection("ledger_db")
///     .grace_period(Duration::from_secs(60));
/// # let _ = config;
/// ```
#[derive(Clone)]
#[must_use = "a configuration does nothing until it is given to `Coordinator::install`"]
pub struct CoordinatorConfig {
    name: String,
    log: LogLocation,
    grace_period: Duration,
    recover_at_start: bool,
}

impl fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinatorConfig")
            .field("name", &self.name)
            .field("log", &self.log)
            .field("grace_period", &self.grace_period)
            .field("recover_at_start", &self.recover_at_start)
            .finish()
    }
}

impl CoordinatorConfig {
    /// A coordinator named `name` (1 to 24 ASCII letters, digits or `_`; every process that shares
    /// the log and the databases uses the same name). By default its log is the SQLite file
    /// `activerecord-2pc-<name>.db` in the working directory, the grace period is 300 s, and
    /// recovery runs when it is installed.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        CoordinatorConfig {
            log: LogLocation::SqliteFile(PathBuf::from(format!("activerecord-2pc-{name}.db"))),
            name,
            grace_period: Duration::from_secs(300),
            recover_at_start: true,
        }
    }

    /// Keeps the log in a SQLite file at `path`.
    pub fn log_in_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = LogLocation::SqliteFile(path.into());
        self
    }

    /// Keeps the log in a table (`activerecord_two_phase_log`) of the configured connection `name`.
    pub fn log_in_connection(mut self, name: impl Into<String>) -> Self {
        self.log = LogLocation::Connection(name.into());
        self
    }

    /// How old a prepared branch with no decision must be before recovery rolls it back.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Whether [`Coordinator::install`] runs recovery (default true).
    pub fn recover_at_start(mut self, recover: bool) -> Self {
        self.recover_at_start = recover;
        self
    }
}

/// One commit decision: present in the log means "commit".
#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "activerecord_two_phase_log")]
struct Decision {
    #[activerecord(primary_key)]
    gtrid: String,
    coordinator: String,
    branches: Json<Vec<BranchRecord>>,
    decided_at: i64,
}

/// A branch as the log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BranchRecord {
    connection: String,
    branch: usize,
}

/// The two-phase commit coordinator: its name, its decision log, and recovery.
///
/// Install one at start-up with [`Coordinator::install`]; [`Using::two_phase`] scopes use it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::two_phase::{Coordinator, CoordinatorConfig};
///
/// let log = std::env::temp_dir().join(format!("coordinator-doc-{}.db", std::process::id()));
/// let (coordinator, recovered) = Coordinator::install(CoordinatorConfig::new("doc").log_in_file(&log)).await?;
/// assert_eq!(coordinator.name(), "doc");
/// assert!(recovered.is_empty(), "nothing was left prepared by an earlier run");
/// assert_eq!(Coordinator::installed()?.name(), "doc");
/// # std::fs::remove_file(log).ok();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<CoordinatorInner>,
}

struct CoordinatorInner {
    name: String,
    log: Database,
    grace_period: Duration,
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("name", &self.inner.name)
            .field("log", &self.inner.log.name())
            .field("grace_period", &self.inner.grace_period)
            .finish()
    }
}

impl Coordinator {
    /// Opens the log, creates or updates its table ([`migrate::run`](crate::migrate::run) on the
    /// log's connection), runs recovery unless turned off, and makes this the coordinator of every
    /// two-phase scope of the process. Call it at start-up, outside any transaction scope on the
    /// log's connection ([`Error::MigrateInScope`] otherwise).
    pub async fn install(config: CoordinatorConfig) -> Result<(Coordinator, RecoveryReport)> {
        let name_ok = !config.name.is_empty()
            && config.name.len() <= MAX_NAME
            && config.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            return Err(Error::TwoPhase(TwoPhaseError::InvalidCoordinatorName {
                name: config.name,
                max_len: MAX_NAME,
            }));
        }
        let log = match &config.log {
            LogLocation::Connection(name) => crate::connection::ConnectionManager::get(name)?,
            LogLocation::SqliteFile(path) => {
                let url = format!("sqlite://{}?mode=rwc", path.display());
                Database::open(&format!("two_phase_log_{}", config.name), &DatabaseConfig::new(url)).await?
            }
        };
        crate::migrate::run(&log).await?;
        let coordinator = Coordinator {
            inner: Arc::new(CoordinatorInner {
                name: config.name,
                log,
                grace_period: config.grace_period,
            }),
        };
        let report = if config.recover_at_start {
            coordinator.recover().await?
        } else {
            RecoveryReport::default()
        };
        // The process-wide context keeps the coordinator every two-phase scope uses.
        context().update(|_: Option<&Coordinator>| coordinator.clone());
        Ok((coordinator, report))
    }

    /// The installed coordinator.
    pub fn installed() -> Result<Coordinator> {
        context()
            .get::<Coordinator>()
            .map(|coordinator| Coordinator::clone(&coordinator))
            .ok_or(Error::TwoPhase(TwoPhaseError::NotInstalled))
    }

    /// The coordinator's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A new global transaction id of this coordinator.
    pub(crate) fn new_gtrid(&self) -> String {
        new_gtrid(&self.inner.name)
    }

    /// Commits the branches of one global transaction: prepare all, log the decision, commit
    /// each. Any failure before the decision is durable rolls every branch back.
    async fn commit(&self, gtrid: &str, commit: &Commit<'_, Participant>) -> Settled {
        let branches = commit.branches();
        for i in 0..branches.len() {
            if let Err(cause) = commit.prepare_one(i).await {
                commit.rollback_from(0).await;
                return Settled::RolledBack(cause);
            }
        }
        let decision = Decision {
            gtrid: gtrid.to_owned(),
            coordinator: self.inner.name.clone(),
            branches: Json(
                branches
                    .iter()
                    .map(|p| BranchRecord {
                        connection: p.name().to_owned(),
                        branch: p.branch().map_or(0, |b| b.branch),
                    })
                    .collect(),
            ),
            decided_at: now_ms(),
        };
        commit.deciding();
        if let Err(cause) = Decision::create(&self.inner.log, decision).await {
            // The write may have reached the log even though it reported an error: ask.
            match Decision::query()
                .filter(col("gtrid").eq(gtrid))
                .exists(&self.inner.log)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    commit.rollback_from(0).await;
                    return Settled::RolledBack(cause);
                }
                Err(_) => {
                    // The decision may be durable or not: every branch is unknown until recovery
                    // reads the log.
                    return Settled::Unknown(Error::OutcomeUnknown(Box::new(commit.unknown_report(cause))));
                }
            }
        }
        commit.decided(gtrid).await;

        let mut first_failure = None;
        for i in 0..branches.len() {
            if let Err(failure) = commit.commit_one(i).await {
                first_failure.get_or_insert((i, failure));
            }
        }
        if let Some((failed, failure)) = first_failure {
            let report = commit.report_failure(failed, failure);
            tracing::warn!(gtrid, unit = %report.unit, outcomes = ?report.outcomes, "two-phase commit decided, not applied everywhere yet: recovery commits the rest");
            return Settled::Mixed(Error::PartialCommit(Box::new(report)));
        }
        // Forgetting the decision is housekeeping: recovery removes it if this fails.
        let _ = Decision::query()
            .filter(col("gtrid").eq(gtrid))
            .delete_all(&self.inner.log)
            .await;
        Settled::Committed
    }

    /// Resolves this coordinator's prepared branches on every configured PostgreSQL and
    /// MySQL/MariaDB connection, by the log: commit where the decision is there, roll back
    /// where it is not and the branch is older than the grace period. Then forgets decisions whose
    /// branches are all finished.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        self.recover_on(&crate::connection::ConnectionManager::names()).await
    }

    /// [`recover`](Self::recover), on the named connections only (say, the databases of one
    /// service among several configured in the process). A decision naming a connection outside
    /// the list is kept for a run that scans it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::two_phase::{Coordinator, CoordinatorConfig};
    ///
    /// let log = std::env::temp_dir().join(format!("recover-on-doc-{}.db", std::process::id()));
    /// let config = CoordinatorConfig::new("recover_on_doc").log_in_file(&log).recover_at_start(false);
    /// let (coordinator, _) = Coordinator::install(config).await?;
    /// let report = coordinator.recover_on(&["no_such_connection"]).await?;
    /// assert!(report.is_empty(), "an unknown name is skipped");
    /// # std::fs::remove_file(log).ok();
    /// # Ok(()) }
    /// ```
    pub async fn recover_on(&self, connections: &[impl AsRef<str>]) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let decisions: Vec<Decision> = Decision::query()
            .filter(col("coordinator").eq(self.inner.name.as_str()))
            .all(&self.inner.log)
            .await?;
        let decided = |gtrid: &str| decisions.iter().any(|d| d.gtrid == gtrid);
        // Connections whose scan failed: decisions naming them must be kept.
        let mut scanned = Vec::new();
        let mut still_prepared = Vec::new();
        for name in connections.iter().map(|n| n.as_ref().to_owned()) {
            let Ok(database) = crate::connection::ConnectionManager::get(&name) else {
                continue;
            };
            if !database.backend().dialect().can_prepare() {
                continue;
            }
            let branches = match self.prepared_branches(&database).await {
                Ok(branches) => branches,
                Err(e) => {
                    report.errors.push(RecoveryError {
                        connection: name.clone(),
                        branch: None,
                        action: RecoveryAction::List,
                        error: e,
                    });
                    continue;
                }
            };
            scanned.push(name.clone());
            for branch in branches {
                let label = branch.reference(&name);
                let how = if decided(&branch.gtrid) {
                    Finish::Commit
                } else {
                    let age = created_at(&self.inner.name, &branch.gtrid)
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .unwrap_or_default();
                    if age < self.inner.grace_period {
                        report.in_flight.push(label);
                        still_prepared.push(branch.gtrid.clone());
                        continue;
                    }
                    Finish::Rollback
                };
                match resolve(&database, &branch, how).await {
                    Ok(Resolution::Finished) if how == Finish::Commit => report.committed.push(label),
                    Ok(Resolution::Finished) => report.rolled_back.push(label),
                    Ok(Resolution::FinishingElsewhere) => {
                        report.in_flight.push(label);
                        still_prepared.push(branch.gtrid.clone());
                    }
                    Err(e) => {
                        report.errors.push(RecoveryError {
                            connection: name.clone(),
                            branch: Some(label),
                            action: match how {
                                Finish::Commit => RecoveryAction::Commit,
                                Finish::Rollback => RecoveryAction::Rollback,
                            },
                            error: e,
                        });
                        still_prepared.push(branch.gtrid.clone());
                    }
                }
            }
        }
        for decision in &decisions {
            let all_scanned = decision.branches.0.iter().all(|b| scanned.contains(&b.connection));
            if all_scanned && !still_prepared.contains(&decision.gtrid) {
                Decision::query()
                    .filter(col("gtrid").eq(decision.gtrid.as_str()))
                    .delete_all(&self.inner.log)
                    .await?;
                report.finished_decisions += 1;
            }
        }
        if !report.is_empty() {
            tracing::info!(?report, "two-phase recovery");
        }
        Ok(report)
    }

    /// This coordinator's prepared branches on `database`.
    async fn prepared_branches(&self, database: &Database) -> Result<Vec<PreparedBranch>> {
        let prefix = format!("{PREFIX}-{}-", self.inner.name);
        let target = database.target(None)?;
        let branches = match database.backend().dialect().prepared_listing() {
            Some(PreparedListing::IdsLike(sql)) => {
                let mut args = target.arguments();
                args.add(&format!("{prefix}%"))?;
                target
                    .fetch_all(sql, args, |row| {
                        let id: String = row.get(0)?;
                        let (gtrid, bqual) = id.rsplit_once('-').unwrap_or((&id, ""));
                        Ok(PreparedBranch {
                            gtrid: gtrid.to_owned(),
                            bqual: bqual.to_owned(),
                        })
                    })
                    .await?
            }
            Some(PreparedListing::XaRecover) => {
                // XA RECOVER is server-wide and has no bind parameters; filter here.
                let rows = target
                    .fetch_all("XA RECOVER", target.arguments(), |row| {
                        let gtrid_length: i64 = row.get(1)?;
                        let data: Vec<u8> = row.get(3)?;
                        let split = usize::try_from(gtrid_length).unwrap_or(0).min(data.len());
                        let (gtrid, bqual) = data.split_at(split);
                        Ok(PreparedBranch {
                            gtrid: String::from_utf8_lossy(gtrid).into_owned(),
                            bqual: String::from_utf8_lossy(bqual).into_owned(),
                        })
                    })
                    .await?;
                rows.into_iter().filter(|b| b.gtrid.starts_with(&prefix)).collect()
            }
            None => Vec::new(),
        };
        Ok(branches)
    }
}

/// A prepared branch found on a server.
#[derive(Debug)]
struct PreparedBranch {
    gtrid: String,
    bqual: String,
}

impl PreparedBranch {
    fn reference(&self, connection: &str) -> BranchRef {
        BranchRef {
            connection: connection.to_owned(),
            gtrid: self.gtrid.clone(),
            branch: self.bqual.clone(),
        }
    }
}

/// What resolving a prepared branch came to.
enum Resolution {
    /// This run, or someone before it, finished the branch.
    Finished,
    /// Another session (another recovery, or the branch's own process) is finishing it right now.
    FinishingElsewhere,
}

/// Commits or rolls back a prepared branch from any connection to its database. A branch that is
/// already gone (finished by someone else) counts as done.
async fn resolve(database: &Database, branch: &PreparedBranch, how: Finish) -> Result<Resolution> {
    let sql =
        database
            .backend()
            .dialect()
            .finish_prepared(how, validate_id(&branch.gtrid)?, validate_id(&branch.bqual)?);
    match database.execute(&sql).await {
        Ok(()) => Ok(Resolution::Finished),
        Err(e) if is_already_finished(&e) => Ok(Resolution::Finished),
        Err(e) if is_being_finished(&e) => Ok(Resolution::FinishingElsewhere),
        Err(e) => Err(e),
    }
}

/// PostgreSQL's answer when another session holds the prepared transaction (55000, "prepared
/// transaction with identifier ... is busy"): two recoveries racing for the same branch.
fn is_being_finished(error: &Error) -> bool {
    database_error(error).is_some_and(crate::backend::is_branch_busy)
}

/// The server knows no such prepared branch (PostgreSQL 42704; XA's XAER_NOTA, or XA_RBROLLBACK
/// for an empty branch).
fn is_already_finished(error: &Error) -> bool {
    database_error(error).is_some_and(crate::backend::is_unknown_branch)
}

/// The database's own error behind a failed statement.
fn database_error(error: &Error) -> Option<&dyn sqlx::error::DatabaseError> {
    match error {
        Error::Query { source, .. } => source.as_database_error(),
        _ => None,
    }
}

/// One prepared branch of a global transaction, on one connection. Displayed as
/// `connection:gtrid-branch`.
///
/// ```
/// use activerecord::two_phase::BranchRef;
///
/// let branch = BranchRef {
///     connection: "bank_pg".to_owned(),
///     gtrid: "ar-app-18f2c3a4b5d-0a1b2c3d".to_owned(),
///     branch: "1".to_owned(),
/// };
/// assert_eq!(branch.to_string(), "bank_pg:ar-app-18f2c3a4b5d-0a1b2c3d-1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BranchRef {
    /// The configured connection it was found on.
    pub connection: String,
    /// The global transaction id.
    pub gtrid: String,
    /// The branch qualifier (the branch's number in its unit of work).
    pub branch: String,
}

impl fmt::Display for BranchRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}-{}", self.connection, self.gtrid, self.branch)
    }
}

/// What a recovery run was doing when it failed: see [`RecoveryError`].
///
/// ```
/// use activerecord::two_phase::RecoveryAction;
///
/// assert_eq!(RecoveryAction::Commit.to_string(), "cannot commit");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryAction {
    /// Listing a connection's prepared branches (`pg_prepared_xacts`, `XA RECOVER`).
    List,
    /// Committing a branch whose decision is in the log.
    Commit,
    /// Rolling back a branch with no decision, older than the grace period.
    Rollback,
}

impl fmt::Display for RecoveryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecoveryAction::List => "cannot list prepared transactions",
            RecoveryAction::Commit => "cannot commit",
            RecoveryAction::Rollback => "cannot roll back",
        })
    }
}

/// Something a recovery run could not do; the next run tries again.
///
/// ```
/// use activerecord::Error;
/// use activerecord::two_phase::{RecoveryAction, RecoveryError};
///
/// let failure = RecoveryError {
///     connection: "bank_mysql".to_owned(),
///     branch: None,
///     action: RecoveryAction::List,
///     error: Error::PoolTimeout { connection: "bank_mysql".to_owned() },
/// };
/// assert!(failure.to_string().starts_with("bank_mysql: cannot list prepared transactions: "));
/// ```
#[derive(Debug)]
pub struct RecoveryError {
    /// The connection it happened on.
    pub connection: String,
    /// The branch, when the failure concerns one.
    pub branch: Option<BranchRef>,
    /// What was being done.
    pub action: RecoveryAction,
    /// Why it failed.
    pub error: Error,
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.branch {
            Some(branch) => write!(f, "{branch}: {}: {}", self.action, self.error),
            None => write!(f, "{}: {}: {}", self.connection, self.action, self.error),
        }
    }
}

impl std::error::Error for RecoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// What a recovery run did.
///
/// ```
/// let report = activerecord::two_phase::RecoveryReport::default();
/// assert!(report.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct RecoveryReport {
    /// Branches committed because their decision was in the log.
    pub committed: Vec<BranchRef>,
    /// Branches rolled back: no decision, older than the grace period.
    pub rolled_back: Vec<BranchRef>,
    /// Branches left alone: no decision yet and younger than the grace period, or being finished
    /// by another session right now.
    pub in_flight: Vec<BranchRef>,
    /// Decisions removed from the log because all their branches are finished.
    pub finished_decisions: usize,
    /// What could not be done; the next run tries again.
    pub errors: Vec<RecoveryError>,
}

impl RecoveryReport {
    /// Whether the run found nothing to do.
    pub fn is_empty(&self) -> bool {
        self.committed.is_empty()
            && self.rolled_back.is_empty()
            && self.in_flight.is_empty()
            && self.finished_decisions == 0
            && self.errors.is_empty()
    }
}

impl Using {
    /// Opens the scope in two-phase mode: at its end every database that took part is prepared,
    /// the decision logged by the installed [`Coordinator`], then each committed. Only PostgreSQL
    /// and MySQL/MariaDB can take part. Applies to an outermost scope; nested scopes join it as
    /// usual.
    pub fn two_phase(mut self) -> Self {
        self.options.protocol = Some(Arc::new(TwoPhaseChoice));
        self
    }
}

/// Chooses two-phase commit for the unit of work of a [`Using::two_phase`] scope.
#[derive(Debug)]
struct TwoPhaseChoice;

impl ChooseProtocol for TwoPhaseChoice {
    fn start(&self) -> Result<Box<dyn CommitProtocol<Participant>>> {
        let coordinator = Coordinator::installed()?;
        let gtrid = coordinator.new_gtrid();
        Ok(Box::new(TwoPhase { coordinator, gtrid }))
    }
}

/// Two-phase commit of one unit of work, as a [`CommitProtocol`]: every branch begins under the
/// unit's global transaction id.
struct TwoPhase {
    coordinator: Coordinator,
    gtrid: String,
}

impl CommitProtocol<Participant> for TwoPhase {
    fn branch_id(&self, index: usize) -> Option<BranchId> {
        Some(BranchId::new(&self.gtrid, index))
    }

    fn commit<'a>(&'a self, commit: &'a Commit<'a, Participant>) -> BoxFuture<'a, Settled> {
        Box::pin(async move {
            if commit.branches().len() > 1 {
                return self.coordinator.commit(&self.gtrid, commit).await;
            }
            // One database: nothing to agree with, so it commits in one phase.
            BestEffort.commit(commit).await
        })
    }
}

impl Database {
    /// Begins a two-phase transaction on this connection under `xid` (DB-API `tpc_begin`): a
    /// transaction you prepare, then commit or roll back, yourself. `xid` is 1 to 64 ASCII
    /// letters, digits, `-` or `_`. PostgreSQL and MySQL/MariaDB only: `examples/
    /// two_phase_commit_transfer.rs` shows the whole protocol.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, Error};
    ///
    /// let db = ConnectionManager::configure("tpc_doc", "sqlite::memory:").await?;
    /// let refused = db.tpc_begin("transfer-42").await.unwrap_err();
    /// assert!(refused.to_string().contains("SQLite cannot prepare a transaction"));
    /// assert!(db.tpc_begin("x'; DROP TABLE t; --").await.is_err(), "ids are checked before they reach SQL");
    /// # Ok(()) }
    /// ```
    pub async fn tpc_begin(&self, xid: &str) -> Result<TpcTransaction> {
        validate_id(xid)?;
        let branch = BranchId::new(xid, 0);
        let participant = Participant::begin(
            self.clone(),
            &UnitTag::new(),
            &ScopeOptions::default(),
            Some(branch),
            None,
        )
        .await?;
        Ok(TpcTransaction { participant })
    }
}

/// A transaction under your own two-phase control (DB-API `tpc_*`), from [`Database::tpc_begin`].
/// Use it as an [`Executor`](crate::Executor) for model calls, then [`tpc_prepare`](Self::tpc_prepare) and
/// [`tpc_commit`](Self::tpc_commit), or [`tpc_rollback`](Self::tpc_rollback). Dropped unfinished,
/// it is rolled back (or, once prepared, left for [`Coordinator::recover`] or your own commit).
pub struct TpcTransaction {
    participant: Arc<Participant>,
}

impl fmt::Debug for TpcTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpcTransaction")
            .field("connection", &self.participant.name())
            .field("xid", &self.participant.branch())
            .finish()
    }
}

impl TpcTransaction {
    /// Phase one: prepare.
    pub async fn tpc_prepare(&self) -> Result<()> {
        self.participant.prepare().await
    }

    /// Phase two: commit (a transaction that was never prepared commits in one phase).
    pub async fn tpc_commit(self) -> Result<()> {
        self.participant.finish(Finish::Commit).await
    }

    /// Rolls back, prepared or not.
    pub async fn tpc_rollback(self) -> Result<()> {
        self.participant.finish(Finish::Rollback).await
    }
}

impl Resolve for TpcTransaction {
    fn target(&self, _: Option<&'static str>) -> Result<Target<'_>> {
        Ok(Target::Tx(Cow::Borrowed(&self.participant.tx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fit_both_backends_and_carry_their_age() {
        let gtrid = new_gtrid("a_coordinator_name_24chr");
        assert!(gtrid.len() <= 64, "{gtrid}");
        assert!(validate_id(&gtrid).is_ok());
        let branch = BranchId {
            gtrid: gtrid.clone(),
            branch: 1,
        };
        assert!(branch.postgres_gid().len() < 200);
        let age = SystemTime::now()
            .duration_since(created_at("a_coordinator_name_24chr", &gtrid).unwrap())
            .unwrap();
        assert!(age < Duration::from_secs(5));
        assert_eq!(
            created_at("other", &gtrid),
            None,
            "another coordinator's id is not ours"
        );
        assert_eq!(
            created_at("a_coordinator", &gtrid),
            None,
            "a prefix of our name is not our name"
        );
    }

    #[test]
    fn ids_that_could_break_out_of_a_literal_are_refused() {
        for bad in ["x'; COMMIT; --", "", "with space", &"x".repeat(65), "ünïcode"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}

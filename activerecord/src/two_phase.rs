//! Two-phase commit across PostgreSQL (`PREPARE TRANSACTION`) and MySQL/MariaDB (`XA`), with a
//! commit point site or a durable decision log, and recovery.
//!
//! The same nested-scope code becomes atomic across databases when its outermost scope is opened
//! with [`Using::two_phase`]. At its end, as seed 004 describes it: the databases that only read
//! commit first, in one phase; every other database but the *commit point site* is prepared,
//! concurrently; the decision is made durable, as the site's one-phase commit carrying the unit's
//! marker or, when no participant can be the site, as a row in the coordinator's log (written in
//! groups under concurrency); then the prepared branches commit, concurrently. `docs/two_phase.md`
//! says when each is used.
//!
//! Guarantees: before the decision is durable, nothing commits and a failure rolls every branch
//! back; after it, every branch commits, by this unit or by [`Coordinator::recover`]. Recovery
//! commits a branch whose decision is in the log or whose site's marker it finds, and rolls any
//! other back ("presumed abort") only once it is older than the grace period, so that a
//! transaction still in flight in another process is never touched; a unit that reaches its
//! decision after half that period is rolled back instead. Recovery only touches branches whose id
//! names this coordinator, and is safe to run twice or from two processes. The site is always the
//! outermost scope's database, so that every other branch can name it in its qualifier when it
//! begins; SQLite, which cannot prepare, writes only as the site.
//!
//! The DB-API style of the Python guide is here too: [`Database::tpc_begin`] and the
//! [`TpcTransaction`] it returns.

use crate::ActiveRecord;
use crate::backend::{PreparedListing, probe_marker_table, site_hash, validate_id};
use crate::connection::{Database, DatabaseConfig, UnitTag};
use crate::context::context;
use crate::error::DatabaseOutcome;
use crate::error::{ConstraintKind, Error, Result, TwoPhaseError};
use crate::executor::{Resolve, Target};
use crate::model::Model;
use crate::query::col;
use crate::transaction::Using;
use crate::transaction::{
    Branch, BranchId, ChooseProtocol, Commit, CommitProtocol, Finish, Joining, Participant, ScopeOptions, Settled,
    UnitId, abort_claimed, claim_abort, commit_in_turn, insert_claim, marker_exists, now_ms,
};
use crate::value::Json;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

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
    commit_point_site: bool,
}

impl fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinatorConfig")
            .field("name", &self.name)
            .field("log", &self.log)
            .field("grace_period", &self.grace_period)
            .field("recover_at_start", &self.recover_at_start)
            .field("commit_point_site", &self.commit_point_site)
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
            commit_point_site: true,
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

    /// Whether a PostgreSQL or MySQL/MariaDB participant may be a unit's commit point site, whose
    /// one-phase commit carrying the unit's marker is the decision (default true). With `false`,
    /// every decision is a row in the log, unless a database that cannot prepare (SQLite) takes
    /// part: it is always the site. See `docs/two_phase.md`, "Where the decision is kept".
    pub fn commit_point_site(mut self, allowed: bool) -> Self {
        self.commit_point_site = allowed;
        self
    }
}

/// One commit decision: present in the log means "commit". With `aborted` set, recovery's claim
/// that a unit without a decision rolled back instead (its branches are empty).
#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "activerecord_two_phase_log")]
struct Decision {
    #[activerecord(primary_key)]
    gtrid: String,
    coordinator: String,
    branches: Json<Vec<BranchRecord>>,
    decided_at: i64,
    aborted: bool,
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
    log: DecisionLog,
    grace_period: Duration,
    /// Whether a participant may be the commit point site (else every decision is logged).
    commit_point_site: bool,
}

/// The coordinator's log of decisions, written in groups: the decisions of every unit that
/// reaches its decision while a write is under way go in the next write, one statement and one
/// durable write for all of them.
struct DecisionLog {
    database: Database,
    /// Decisions waiting for the next write, each with the sender of its acknowledgement.
    waiting: std::sync::Mutex<Vec<(Decision, oneshot::Sender<bool>)>>,
    /// Held by the unit writing a group.
    writing: tokio::sync::Mutex<()>,
    /// How many groups were written (for the `tracing` debug event of each).
    groups: std::sync::atomic::AtomicU64,
}

impl DecisionLog {
    fn new(database: Database) -> DecisionLog {
        DecisionLog {
            database,
            waiting: std::sync::Mutex::new(Vec::new()),
            writing: tokio::sync::Mutex::new(()),
            groups: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Makes `decision` durable: in the group written by whichever unit holds the writer's turn
    /// when it is queued, or, after that unit, in a group this one writes. A group that failed, or
    /// whose writer was dropped, is retried one decision at a time, so that each unit gets its own
    /// answer.
    async fn write(&self, decision: Decision) -> Result<()> {
        let (acknowledge, acknowledged) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((decision.clone(), acknowledge));
        let turn = self.writing.lock().await;
        let mut acknowledged = acknowledged;
        let written = match acknowledged.try_recv() {
            Ok(written) => written,
            // Not taken yet: this unit writes the group, its own decision in it.
            Err(oneshot::error::TryRecvError::Empty) => {
                let group = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner));
                let decisions: Vec<Decision> = group.iter().map(|(d, _)| d.clone()).collect();
                let written = crate::model::insert_all(&self.database, &decisions).await.is_ok();
                let number = self.groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                tracing::debug!(
                    group = number,
                    decisions = decisions.len(),
                    written,
                    "two-phase decisions written in one group"
                );
                for (_, acknowledge) in group {
                    let _ = acknowledge.send(written);
                }
                written
            }
            // The unit that took it was dropped while writing.
            Err(oneshot::error::TryRecvError::Closed) => false,
        };
        drop(turn);
        if written {
            return Ok(());
        }
        Decision::create(&self.database, decision).await.map(drop)
    }
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("name", &self.inner.name)
            .field("log", &self.inner.log.database.name())
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
                log: DecisionLog::new(log),
                grace_period: config.grace_period,
                commit_point_site: config.commit_point_site,
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

    /// Commits the databases of one global transaction (see the [module docs](self)): the ones
    /// that only read first, in one phase; then, with two or more writers, prepares all but the
    /// commit point site concurrently, makes the decision durable (the site's one-phase commit
    /// with the unit's marker, or a row in the log), and commits the prepared branches
    /// concurrently. Any failure before the decision rolls every branch back.
    async fn commit(&self, gtrid: &str, commit: &Commit<'_, Participant>) -> Settled {
        let branches = commit.branches();
        let (readers, writers): (Vec<usize>, Vec<usize>) = (0..branches.len()).partition(|&i| !branches[i].wrote());
        // Nothing to prepare, and committed first: a failure there leaves nothing to undo, and
        // their locks are released before the others commit.
        if let Some((_, failure)) = commit.commit_each(&readers).await.into_iter().next() {
            commit.rollback_each(&writers).await;
            return Settled::RolledBack(failure.cause);
        }
        if let Some(refused) = Self::cannot_take_part(branches, &writers) {
            commit.rollback_each(&writers).await;
            return Settled::RolledBack(refused);
        }
        if writers.len() < 2 {
            // One database wrote: nothing to agree with, so it commits in one phase.
            return commit_in_turn(commit, &writers).await;
        }
        let site = self.commit_point_site(branches, &writers);
        let prepared: Vec<usize> = writers.iter().copied().filter(|&i| Some(i) != site).collect();
        if let Err(cause) = commit.prepare_each(&prepared).await {
            commit.rollback_each(&writers).await;
            return Settled::RolledBack(cause);
        }
        if let Err(late) = self.check_in_time(gtrid) {
            commit.rollback_each(&writers).await;
            return Settled::RolledBack(late);
        }
        commit.deciding();
        let decision = match site {
            Some(site) => self.decide_at_site(gtrid, commit, site, &prepared).await,
            None => self.log_decision(gtrid, commit, &writers).await,
        };
        if let Err(settled) = decision {
            return settled;
        }
        commit.decided(gtrid, site.map(|i| branches[i].name())).await;

        let failures = commit.commit_each(&prepared).await;
        if let Some((failed, failure)) = failures.into_iter().next() {
            let report = commit.report_failure(failed, failure);
            tracing::warn!(gtrid, unit = %report.unit, outcomes = ?report.outcomes, "two-phase commit decided, not applied everywhere yet: recovery commits the rest");
            return Settled::Mixed(Error::PartialCommit(Box::new(report)));
        }
        if site.is_none() {
            // Forgetting the decision is housekeeping: recovery removes it if this fails.
            let _ = Decision::query()
                .filter(col("gtrid").eq(gtrid))
                .delete_all(&self.inner.log.database)
                .await;
        }
        Settled::Committed
    }

    /// The writer whose one-phase commit is the decision: the outermost database (the one every
    /// other branch's qualifier names), when it wrote and either cannot prepare or commits with
    /// the unit's marker and this coordinator allows a site. `None`: the decision goes to the log.
    fn commit_point_site(&self, branches: &[Arc<Participant>], writers: &[usize]) -> Option<usize> {
        let root = branches.first()?;
        let suits = !root.is_branch() || (self.inner.commit_point_site && root.commits_with_marker());
        (writers.first() == Some(&0) && suits).then_some(0)
    }

    /// A database that cannot prepare and wrote, other than the outermost one: it cannot be the
    /// site, which every branch named when it began.
    fn cannot_take_part(branches: &[Arc<Participant>], writers: &[usize]) -> Option<Error> {
        let joined = writers.iter().find(|&&i| i > 0 && !branches[i].is_branch())?;
        Some(Error::Configuration {
            connection: branches[*joined].name().to_owned(),
            message: "SQLite cannot prepare a transaction, so in a two-phase unit it can write only as the outermost \
                      scope's database (the commit point site); here it joined a unit that began on another database: \
                      open the two-phase scope on it, or only read it here"
                .to_owned(),
            source: None,
        })
    }

    /// Refuses to decide for a unit older than half the grace period: recovery may be rolling
    /// its branches back as abandoned by now.
    fn check_in_time(&self, gtrid: &str) -> Result<()> {
        let age = created_at(&self.inner.name, gtrid)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let grace_period = self.inner.grace_period;
        if age > grace_period / 2 {
            return Err(Error::TwoPhase(TwoPhaseError::DecisionTooLate { age, grace_period }));
        }
        Ok(())
    }

    /// The decision as the commit point site's one-phase commit, which carries the unit's marker.
    /// Refused: every prepared branch rolls back. Its answer lost and not resolved: every database
    /// not committed is unknown, for recovery to settle by the site's marker.
    async fn decide_at_site(
        &self,
        gtrid: &str,
        commit: &Commit<'_, Participant>,
        site: usize,
        prepared: &[usize],
    ) -> Result<(), Settled> {
        let Err(failure) = commit.commit_one(site).await else {
            return Ok(());
        };
        if failure.outcome == DatabaseOutcome::RolledBack {
            commit.rollback_each(prepared).await;
            let cause = match failure.cause {
                // The site's marker may have met recovery's abort claim under the same id.
                cause @ Error::ConstraintViolation {
                    kind: ConstraintKind::Unique,
                    ..
                } => {
                    let claimed = abort_claimed(commit.branches()[site].database(), gtrid).await;
                    refused_by_claim(gtrid, claimed, cause)
                }
                cause => cause,
            };
            return Err(Settled::RolledBack(cause));
        }
        let report = commit.in_doubt_report(Some(site), failure.cause);
        tracing::error!(gtrid, unit = %report.unit, outcomes = ?report.outcomes, "outcome unknown: the commit point site's COMMIT was sent and no answer came; recovery settles the prepared branches by its marker");
        Err(Settled::Unknown(Error::OutcomeUnknown(Box::new(report))))
    }

    /// Whether the log holds unit `gtrid`'s decision, or (`aborted`) recovery's claim that it
    /// rolled back.
    async fn logged(&self, gtrid: &str, aborted: bool) -> Result<bool> {
        Decision::query()
            .filter(col("gtrid").eq(gtrid))
            .filter(col("aborted").eq(aborted))
            .exists(&self.inner.log.database)
            .await
    }

    /// Records in the log that unit `gtrid`, which has no decision and no commit point site, rolls
    /// back, before recovery rolls its branches back: a decision still on its way then fails on
    /// the key. Returns whether the decision came first.
    async fn claim_abort_in_log(&self, gtrid: &str) -> Result<bool> {
        let claim = Decision {
            gtrid: gtrid.to_owned(),
            coordinator: self.inner.name.clone(),
            branches: Json(Vec::new()),
            decided_at: now_ms(),
            aborted: true,
        };
        insert_claim(&self.inner.log.database, claim, self.logged(gtrid, false)).await
    }

    /// The decision as a row in the log, written with the decisions of other units waiting at the
    /// same moment. A write that reported an error may still have reached the log: it is asked.
    async fn log_decision(
        &self,
        gtrid: &str,
        commit: &Commit<'_, Participant>,
        writers: &[usize],
    ) -> Result<(), Settled> {
        let decision = Decision {
            gtrid: gtrid.to_owned(),
            coordinator: self.inner.name.clone(),
            branches: Json(
                writers
                    .iter()
                    .map(|&i| &commit.branches()[i])
                    .map(|p| BranchRecord {
                        connection: p.name().to_owned(),
                        branch: p.branch().map_or(0, |b| b.branch),
                    })
                    .collect(),
            ),
            decided_at: now_ms(),
            aborted: false,
        };
        let Err(cause) = self.inner.log.write(decision).await else {
            return Ok(());
        };
        match self.logged(gtrid, false).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                commit.rollback_each(writers).await;
                // The decision may have met recovery's abort claim under the same id.
                let claimed = self.logged(gtrid, true).await;
                Err(Settled::RolledBack(refused_by_claim(gtrid, claimed, cause)))
            }
            // The decision may be durable or not: every branch is unknown until recovery reads
            // the log.
            Err(_) => Err(Settled::Unknown(Error::OutcomeUnknown(Box::new(
                commit.in_doubt_report(None, cause),
            )))),
        }
    }

    /// Resolves this coordinator's prepared branches on every configured PostgreSQL and
    /// MySQL/MariaDB connection, by the log: commit where the decision is there, roll back
    /// where it is not and the branch is older than the grace period. Then forgets decisions whose
    /// branches are all finished.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        self.recover_on(&crate::connection::ConnectionManager::names()).await
    }

    /// [`recover`](Self::recover), listing the prepared branches of the named connections only
    /// (say, the databases of one service among several configured in the process). A decision
    /// naming a connection outside the list is kept for a run that scans it. A branch's commit
    /// point site is looked up among every configured connection, listed or not.
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
            .all(&self.inner.log.database)
            .await?;
        let decided = |gtrid: &str| decisions.iter().any(|d| d.gtrid == gtrid && !d.aborted);
        // Per unit without a logged decision: whether its commit point site committed, `None`
        // when that could not be found out.
        let mut sites: HashMap<String, Option<bool>> = HashMap::new();
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
                    let site = BranchId::site_of(&branch.bqual);
                    let committed = match sites.get(&branch.gtrid) {
                        Some(committed) => *committed,
                        None if site.is_none() => Some(false),
                        None => {
                            let answer = site_committed(site, &branch.gtrid, SiteQuestion::Lookup).await;
                            let committed = or_report(&mut report, &label, RecoveryAction::LookUpSite, answer);
                            sites.insert(branch.gtrid.clone(), committed);
                            committed
                        }
                    };
                    let age = created_at(&self.inner.name, &branch.gtrid)
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .unwrap_or_default();
                    match committed {
                        Some(true) => Finish::Commit,
                        // Abandoned, unless its decision (the site's commit, or the log's row)
                        // is still on its way: the claim settles which came first.
                        Some(false) if age >= self.inner.grace_period => {
                            let (answer, action) = match site {
                                Some(_) => (
                                    site_committed(site, &branch.gtrid, SiteQuestion::ClaimAbort).await,
                                    RecoveryAction::LookUpSite,
                                ),
                                None => (
                                    self.claim_abort_in_log(&branch.gtrid).await,
                                    RecoveryAction::RecordAbort,
                                ),
                            };
                            match or_report(&mut report, &label, action, answer) {
                                Some(true) => {
                                    sites.insert(branch.gtrid.clone(), Some(true));
                                    Finish::Commit
                                }
                                Some(false) => Finish::Rollback,
                                None => {
                                    still_prepared.push(branch.gtrid.clone());
                                    continue;
                                }
                            }
                        }
                        // Maybe still live; or its site could not be asked, and rolling back a
                        // branch whose site committed would break the unit.
                        _ => {
                            if committed.is_some() {
                                report.in_flight.push(label);
                            }
                            still_prepared.push(branch.gtrid.clone());
                            continue;
                        }
                    }
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
        let grace_ms = i64::try_from(self.inner.grace_period.as_millis()).unwrap_or(i64::MAX);
        for decision in &decisions {
            let finished = if decision.aborted {
                // A claim outlives any decision of its unit still on its way.
                now_ms().saturating_sub(decision.decided_at) > grace_ms
            } else {
                let all_scanned = decision.branches.0.iter().all(|b| scanned.contains(&b.connection));
                all_scanned && !still_prepared.contains(&decision.gtrid)
            };
            if finished {
                Decision::query()
                    .filter(col("gtrid").eq(decision.gtrid.as_str()))
                    .delete_all(&self.inner.log.database)
                    .await?;
                report.finished_decisions += usize::from(!decision.aborted);
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

/// What recovery asks the commit point site of a unit.
#[derive(Clone, Copy)]
enum SiteQuestion {
    /// Whether the site's marker is there.
    Lookup,
    /// The same, claiming the unit as rolled back when it is not (see [`claim_abort`]): asked
    /// only before rolling the unit's branches back.
    ClaimAbort,
}

/// Whether the commit point site of unit `gtrid` committed: its marker is on the configured
/// connection whose name hashes to `site` (the branch's qualifier carries it). A connection without
/// the marker table cannot be the site; when no configured connection has the site's name, or
/// one that has it cannot be asked, that is the error, and the branch stays prepared.
async fn site_committed(site: Option<u32>, gtrid: &str, question: SiteQuestion) -> Result<bool> {
    let candidates: Vec<String> = crate::connection::ConnectionManager::names()
        .into_iter()
        .filter(|name| Some(site_hash(name)) == site)
        .collect();
    if candidates.is_empty() {
        return Err(Error::Configuration {
            connection: format!("the commit point site of {gtrid}"),
            message:
                "no configured connection has the name of this unit's commit point site (its outermost database): \
                      configure that database under the name it had in the process that ran the unit, then recover \
                      again"
                    .to_owned(),
            source: None,
        });
    }
    let mut failure = None;
    for name in candidates {
        let database = crate::connection::ConnectionManager::get(&name)?;
        let answer = match question {
            SiteQuestion::Lookup => marker_exists(&database, gtrid).await,
            SiteQuestion::ClaimAbort => claim_abort(&database, gtrid).await,
        };
        match answer {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            // Without the table, it cannot be the site; with a table an older version made (no
            // `aborted` column yet), it may be: its marker cannot be trusted to be read right.
            Err(error @ Error::Schema { .. }) => {
                if !lacks_marker_table(&database).await {
                    failure.get_or_insert(error);
                }
            }
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    failure.map_or(Ok(false), Err)
}

/// Whether `database` has no marker table at all, of any version. A failure to ask counts as
/// having one.
async fn lacks_marker_table(database: &Database) -> bool {
    let found: Result<Vec<String>> = crate::executor::fetch_column(database, &probe_marker_table()).await;
    matches!(found, Err(Error::Schema { .. }))
}

/// `answer`, or `None` with its failure added to `report` against `branch`, as `action`.
fn or_report(
    report: &mut RecoveryReport,
    branch: &BranchRef,
    action: RecoveryAction,
    answer: Result<bool>,
) -> Option<bool> {
    match answer {
        Ok(committed) => Some(committed),
        Err(error) => {
            report.errors.push(RecoveryError {
                connection: branch.connection.clone(),
                branch: Some(branch.clone()),
                action,
                error,
            });
            None
        }
    }
}

/// The error of a unit whose decision was refused by `cause`: `RolledBackByRecovery` when
/// recovery's abort claim under its id is what refused it (`claimed`), else `cause`.
fn refused_by_claim(gtrid: &str, claimed: Result<bool>, cause: Error) -> Error {
    match claimed {
        Ok(true) => Error::TwoPhase(TwoPhaseError::RolledBackByRecovery {
            gtrid: gtrid.to_owned(),
        }),
        _ => cause,
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
    /// Looking for the marker of a branch's commit point site: until it is found, or every
    /// connection answers that it is not there, the branch stays prepared.
    LookUpSite,
    /// Recording in the log that a unit without a decision rolls back, before its branches are
    /// rolled back: until it is recorded, the branch stays prepared.
    RecordAbort,
}

impl fmt::Display for RecoveryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecoveryAction::List => "cannot list prepared transactions",
            RecoveryAction::Commit => "cannot commit",
            RecoveryAction::Rollback => "cannot roll back",
            RecoveryAction::LookUpSite => "cannot look for the commit point site's marker",
            RecoveryAction::RecordAbort => "cannot record in the log that the unit rolls back",
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
    /// Opens the scope in two-phase mode: at its end the databases that only read commit first,
    /// every other database but the commit point site is prepared, the decision is made durable
    /// by the installed [`Coordinator`] (the site's commit, or a row in its log), then each
    /// prepared branch commits. PostgreSQL and MySQL/MariaDB can be prepared; a SQLite database
    /// writes as the site when the scope opens on it. Applies to an outermost scope; nested scopes join it as usual.
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
        Ok(Box::new(TwoPhase {
            coordinator,
            gtrid,
            site: std::sync::Mutex::new(None),
        }))
    }
}

/// Two-phase commit of one unit of work, as a [`CommitProtocol`]: the unit's id is its global
/// transaction id, and every database that can prepare begins as a branch of it.
struct TwoPhase {
    coordinator: Coordinator,
    gtrid: String,
    /// The hash of the outermost database's connection name, when it may be the commit point
    /// site: every other branch's qualifier carries it.
    site: std::sync::Mutex<Option<u32>>,
}

impl CommitProtocol<Participant> for TwoPhase {
    fn unit_id(&self) -> Option<UnitId> {
        Some(UnitId::named(&self.gtrid))
    }

    fn branch_id(&self, index: usize, joining: Joining<'_>) -> Result<Option<BranchId>> {
        let mut site = self.site.lock().unwrap_or_else(PoisonError::into_inner);
        if index == 0 {
            if !joining.can_prepare && !joining.has_markers {
                return Err(Error::Configuration {
                    connection: joining.name.to_owned(),
                    message:
                        "SQLite cannot prepare a transaction: it takes part in a two-phase unit as its commit point \
                              site, whose commit carries the unit's marker, and this database has no marker table; run \
                              activerecord::migrate::run on this connection at start-up"
                            .to_owned(),
                    source: None,
                });
            }
            let may_be_site = !joining.can_prepare || (self.coordinator.inner.commit_point_site && joining.has_markers);
            *site = may_be_site.then(|| site_hash(joining.name));
        }
        if !joining.can_prepare {
            // A joined one may only read (it commits first); one that wrote is refused at the end.
            return Ok(None);
        }
        let hint = if index == 0 { None } else { *site };
        Ok(Some(BranchId::new(&self.gtrid, index).with_site(hint)))
    }

    fn commit<'a>(&'a self, commit: &'a Commit<'a, Participant>) -> BoxFuture<'a, Settled> {
        Box::pin(self.coordinator.commit(&self.gtrid, commit))
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
        let branch = BranchId::new(&gtrid, 1).with_site(Some(u32::MAX));
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

    /// Decisions that arrive while a write is under way wait for it, then go to the log together,
    /// in one statement.
    #[tokio::test]
    async fn decisions_waiting_for_a_write_are_written_in_one_group() {
        let path = std::env::temp_dir().join(format!("group-commit-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let database = Database::open("group_commit_test", &DatabaseConfig::new(url))
            .await
            .unwrap();
        crate::migrate::run(&database).await.unwrap();
        let log = Arc::new(DecisionLog::new(database.clone()));
        let under_way = log.writing.lock().await;
        let writes: Vec<_> = (0..8)
            .map(|i| {
                let log = log.clone();
                let decision = Decision {
                    gtrid: format!("ar-test-1-{i:08x}"),
                    coordinator: "test".to_owned(),
                    branches: Json(Vec::new()),
                    decided_at: 1,
                    aborted: false,
                };
                tokio::spawn(async move { log.write(decision).await })
            })
            .collect();
        while log.waiting.lock().unwrap().len() < 8 {
            tokio::task::yield_now().await;
        }
        drop(under_way);
        for write in writes {
            write.await.unwrap().unwrap();
        }
        assert_eq!(log.groups.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(Decision::query().count(&database).await.unwrap(), 8);
        database.close().await;
        let _ = std::fs::remove_file(&path);
    }

    /// A claim and a commit marker share the unit's key: whichever comes second fails, and the
    /// claim's answer says which came first.
    #[tokio::test]
    async fn a_claim_and_a_commit_marker_exclude_each_other() {
        let path = std::env::temp_dir().join(format!("claims-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let database = Database::open("claims_test", &DatabaseConfig::new(url)).await.unwrap();
        crate::migrate::run(&database).await.unwrap();

        database
            .execute(&crate::backend::insert_marker("committed-unit", now_ms()))
            .await
            .unwrap();
        assert!(
            claim_abort(&database, "committed-unit").await.unwrap(),
            "the marker came first"
        );
        assert!(!abort_claimed(&database, "committed-unit").await.unwrap());

        assert!(
            !claim_abort(&database, "abandoned-unit").await.unwrap(),
            "claimed: rolled back"
        );
        assert!(abort_claimed(&database, "abandoned-unit").await.unwrap());
        assert!(
            !claim_abort(&database, "abandoned-unit").await.unwrap(),
            "a second claim agrees"
        );
        let late_commit = database
            .execute(&crate::backend::insert_marker("abandoned-unit", now_ms()))
            .await;
        assert!(
            matches!(
                late_commit,
                Err(Error::ConstraintViolation {
                    kind: ConstraintKind::Unique,
                    ..
                })
            ),
            "{late_commit:?}"
        );
        assert!(!marker_exists(&database, "abandoned-unit").await.unwrap());
        database.close().await;
        let _ = std::fs::remove_file(&path);
    }

    /// A branch names its site by a hash of the site's connection name that every process and
    /// version computes alike, inside a qualifier that recovery splits back out.
    #[test]
    fn branches_name_their_site_the_same_way_everywhere() {
        assert_eq!(site_hash(""), 0x811c_9dc5, "FNV-1a's offset basis");
        assert_eq!(site_hash("a"), 0xe40c_292c, "FNV-1a of \"a\"");
        let branch = BranchId::new("ar-app-1-00000000", 2).with_site(Some(site_hash("bank_sqlite")));
        let bqual = branch.bqual();
        assert!(
            validate_id(&branch.postgres_gid()).is_ok() && bqual.len() <= 64,
            "{bqual}"
        );
        assert_eq!(BranchId::site_of(&bqual), Some(site_hash("bank_sqlite")));
        assert_eq!(BranchId::site_of("2"), None, "a branch of a unit without a site");
        let (gtrid, parsed) = branch
            .postgres_gid()
            .rsplit_once('-')
            .map(|(g, b)| (g.to_owned(), b.to_owned()))
            .unwrap();
        assert_eq!((gtrid.as_str(), parsed.as_str()), ("ar-app-1-00000000", bqual.as_str()));
    }

    #[test]
    fn ids_that_could_break_out_of_a_literal_are_refused() {
        for bad in ["x'; COMMIT; --", "", "with space", &"x".repeat(65), "ünïcode"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}

//! The unit of work as one explicit state machine: `Open -> Committing -> Ended(outcome)`, one
//! lock, and one place ([`UnitOfWork::end`]) that decides which hooks run.
//!
//! A unit of work is an outermost scope and every database that joined it. It knows its
//! databases only as [`Branch`]es and how to commit them only through the [`CommitProtocol`] it
//! was opened with (best effort, two-phase, ...): it names no protocol, so a new strategy adds a
//! module and touches nothing here. Because of that it is unit-tested against a fake branch and a
//! fake protocol, without a database (the tests at the end of this file).
//!
//! Guarantees:
//! - The unit ends once. After-commit hooks run only when every database committed,
//!   after-rollback hooks only when every database rolled back, and neither for a mixed outcome
//!   (partial, or a decided two-phase unit not yet applied everywhere).
//! - Hooks registered in a savepoint or joined scope that rolled back are discarded.
//! - Dropped (its future cancelled) before its end, the unit's open connections close, which rolls
//!   their work back, and its after-rollback hooks run; dropped during its final commits after
//!   some database committed, it reports the partial commit as a `tracing` error and runs no hook.
//! - Every step is an [`Event`] for the observers, in order.

use super::events::{Event, EventKind, Observers, UnitId, UnitOutcome, observer_error};
use crate::backend::BranchId;
use crate::connection::background;
use crate::error::{DatabaseOutcome, Error, PartialCommit, Result};
use futures_util::future::BoxFuture;
use std::future::Future;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One database's transaction as the unit of work sees it.
pub(crate) trait Branch: Send + Sync + 'static {
    /// The connection name.
    fn name(&self) -> &str;
    /// Phase one of two-phase commit.
    fn prepare(&self) -> impl Future<Output = Result<()>> + Send;
    /// Commits unit `unit`'s work (in one phase, or phase two of a prepared branch).
    fn commit(&self, unit: &UnitId) -> impl Future<Output = Result<()>> + Send;
    /// Rolls back (open or prepared).
    fn rollback(&self) -> impl Future<Output = Result<()>> + Send;
    /// Finds out, within a bound, whether a `COMMIT` of unit `unit` whose answer was lost took
    /// effect: committed, rolled back, or still unknown.
    fn resolve(&self, unit: &UnitId) -> impl Future<Output = DatabaseOutcome> + Send;
    /// The server session that sent the `COMMIT`, when that `COMMIT` carried the unit's marker:
    /// then its outcome can be found out later. `None` otherwise (a marker lookup would lie).
    fn resolvable_session(&self) -> Option<u64>;
    /// Whether the transaction wrote (a raw statement counts as a write): one that did not has
    /// nothing to prepare, and commits in one phase.
    fn wrote(&self) -> bool;
    /// Whether the transaction began as a two-phase branch, which can be prepared.
    fn is_branch(&self) -> bool;
    /// Whether its one-phase `COMMIT` carries the unit's marker (it wrote, and its database has
    /// the marker table): then that commit can be a two-phase unit's decision.
    fn commits_with_marker(&self) -> bool;
    /// Gives back what it kept after its commit (its connection), once every database of the unit
    /// has settled.
    fn release(&self) {}
}

/// A database about to take part in a unit of work, as its [`CommitProtocol`] sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Joining<'a> {
    /// The connection name.
    pub(crate) name: &'a str,
    /// Whether its engine can prepare a transaction (SQLite cannot).
    pub(crate) can_prepare: bool,
    /// Whether it has the marker table.
    pub(crate) has_markers: bool,
}

/// How a unit of work commits its databases: the commit seam. Best effort and two-phase commit
/// implement it.
pub(crate) trait CommitProtocol<B: Branch>: Send + Sync {
    /// The unit's id, when the protocol names it (two-phase: its global transaction id, so that
    /// the marker of its decision is found from any of its branches); a new one otherwise.
    fn unit_id(&self) -> Option<UnitId> {
        None
    }

    /// The two-phase branch id the `index`-th database to take part, `joining`, begins with;
    /// `None` for one that will not be prepared. An error refuses the database before it begins.
    fn branch_id(&self, index: usize, joining: Joining<'_>) -> Result<Option<BranchId>> {
        let _ = (index, joining);
        Ok(None)
    }

    /// Ends the final commits of `commit`'s databases and says how they settled. Report every
    /// step through `commit` ([`Commit::commit_one`], [`Commit::rollback_each`], ...), so that the
    /// unit knows what committed if it is dropped half way.
    fn commit<'a>(&'a self, commit: &'a Commit<'a, B>) -> BoxFuture<'a, Settled>;
}

/// How the final commits settled, as a [`CommitProtocol`] reports it.
#[derive(Debug)]
pub(crate) enum Settled {
    /// Every database committed.
    Committed,
    /// Nothing committed anywhere; the error says why.
    RolledBack(Error),
    /// Some databases committed and others did not, or not yet; the error says which.
    Mixed(Error),
    /// The outcome of some database is unknown; the error reports each.
    Unknown(Error),
}

/// A final commit that did not succeed: what became of the database, and why.
#[derive(Debug)]
pub(crate) struct CommitFailure {
    /// Rolled back (the database answered with an error), or unknown (no answer came).
    pub(crate) outcome: DatabaseOutcome,
    /// The error.
    pub(crate) cause: Error,
}

/// Where a unit of work is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Scopes are running; databases may join.
    Open,
    /// The protocol is running the final commits.
    Committing,
    /// The outcome is known and its hooks have run.
    Ended(UnitOutcome),
}

/// A hook waiting for the unit's outcome.
struct Hook {
    /// The frames (scopes) it was registered in, outermost first.
    path: Arc<[u64]>,
    run: HookRun,
}

/// What a hook runs, and when.
enum HookRun {
    /// Once the unit ends with this outcome (committed or rolled back everywhere).
    On(UnitOutcome, Box<dyn FnOnce() + Send>),
    /// Once the unit ends partial, decided or unknown, with the per-database report.
    Report(ReportHandler),
}

/// A handler of a partial, decided or unknown outcome, given the per-database report.
pub(crate) type ReportHandler = Box<dyn FnOnce(&PartialCommit) + Send>;

/// Everything that changes, under the one lock.
struct State<B> {
    phase: Phase,
    /// Open transactions in the order they began; the outermost scope's own first.
    branches: Vec<Arc<B>>,
    /// During the final commits: the databases committed so far.
    committed: Vec<String>,
    /// During the final commits: the databases whose `COMMIT` is on its way (several at once in
    /// a concurrent phase), or whose answer was lost: they may have committed.
    unanswered: Vec<String>,
    /// During the final commits: a two-phase decision to commit is on its way to the log (it may
    /// be durable).
    deciding: bool,
    /// During the final commits: a two-phase decision to commit is durable, so every database
    /// will commit, by this unit or by recovery.
    decided: bool,
    hooks: Vec<Hook>,
    next_frame: u64,
    /// How many databases have taken part (branch numbers are never reused).
    next_branch: usize,
}

/// One unit of work. See the [module docs](self).
pub(crate) struct UnitOfWork<B: Branch> {
    id: UnitId,
    protocol: Box<dyn CommitProtocol<B>>,
    observers: Option<Arc<Observers>>,
    state: Mutex<State<B>>,
}

impl<B: Branch> std::fmt::Debug for UnitOfWork<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("UnitOfWork")
            .field("id", &self.id)
            .field("phase", &state.phase)
            .field("branches", &state.branches.iter().map(|b| b.name()).collect::<Vec<_>>())
            .finish()
    }
}

impl<B: Branch> UnitOfWork<B> {
    /// A unit of work with no database yet, committed by `protocol`, reporting to `observers`.
    pub(crate) fn new(protocol: Box<dyn CommitProtocol<B>>, observers: Option<Arc<Observers>>) -> Self {
        UnitOfWork {
            id: protocol.unit_id().unwrap_or_else(UnitId::new),
            protocol,
            observers: observers.filter(|o| !o.is_empty()),
            state: Mutex::new(State {
                phase: Phase::Open,
                branches: Vec::new(),
                committed: Vec::new(),
                unanswered: Vec::new(),
                deciding: false,
                decided: false,
                hooks: Vec::new(),
                next_frame: 0,
                next_branch: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The unit's id.
    pub(crate) fn id(&self) -> &UnitId {
        &self.id
    }

    /// The branch id the next database to take part, `joining`, begins with, or why it cannot
    /// take part.
    pub(crate) fn next_branch_id(&self, joining: Joining<'_>) -> Result<Option<BranchId>> {
        let index = {
            let mut state = self.lock();
            state.next_branch += 1;
            state.next_branch - 1
        };
        self.protocol.branch_id(index, joining)
    }

    /// A new frame (scope) id, unique in the unit.
    pub(crate) fn next_frame_id(&self) -> u64 {
        let mut state = self.lock();
        state.next_frame += 1;
        state.next_frame
    }

    /// The outermost scope's open transaction, while the unit is open.
    pub(crate) fn root(&self) -> Option<Arc<B>> {
        self.lock().branches.first().cloned()
    }

    /// The open transaction on the connection `name`, if the unit has one.
    pub(crate) fn branch(&self, name: &str) -> Option<Arc<B>> {
        self.lock().branches.iter().find(|b| b.name() == name).cloned()
    }

    /// Tells the observers, if any: the event is built only when someone listens. The first
    /// observer failure is returned.
    pub(crate) async fn emit(&self, kind: impl FnOnce() -> EventKind) -> Result<()> {
        let Some(observers) = &self.observers else {
            return Ok(());
        };
        let event = Event {
            unit: self.id.clone(),
            kind: kind(),
        };
        // Outside the caller's scopes: an observer's own writes must not join the unit it observes.
        super::outside_every_scope(observers.deliver(&event))
            .await
            .map_err(|e| observer_error(&event, e))
    }

    /// [`emit`](Self::emit) for a step that already happened: an observer failure cannot undo it,
    /// so it is logged.
    pub(crate) async fn report(&self, kind: impl FnOnce() -> EventKind) {
        if let Err(e) = self.emit(kind).await {
            tracing::warn!(unit = %self.id, error = %e, "an observer failed");
        }
    }

    /// Adds the outermost scope's open transaction.
    pub(crate) async fn begin(&self, branch: Arc<B>) {
        let connection = branch.name().to_owned();
        self.lock().branches.push(branch);
        self.report(|| EventKind::Begun { connection }).await;
    }

    /// Adds the open transaction of a scope on another database.
    pub(crate) async fn join(&self, branch: Arc<B>) {
        let connection = branch.name().to_owned();
        self.lock().branches.push(branch);
        self.report(|| EventKind::Joined { connection }).await;
    }

    /// A joined scope failed: its transaction rolls back and leaves the unit, with the hooks
    /// registered in its frame.
    pub(crate) async fn leave(&self, branch: &Arc<B>, frame: u64) {
        self.lock().branches.retain(|b| !Arc::ptr_eq(b, branch));
        self.discard_hooks(frame);
        self.rollback_each(std::slice::from_ref(branch)).await;
        let connection = branch.name().to_owned();
        self.report(|| EventKind::Left { connection }).await;
    }

    /// Registers `run` to run once the unit ends with `on`, unless a frame of `path` rolls back
    /// first.
    pub(crate) fn register_hook(&self, path: Arc<[u64]>, on: UnitOutcome, run: Box<dyn FnOnce() + Send>) {
        self.lock().hooks.push(Hook {
            path,
            run: HookRun::On(on, run),
        });
    }

    /// Registers `handler` to receive the report if the unit ends partial, decided or unknown,
    /// unless a frame of `path` rolls back first.
    pub(crate) fn register_report_handler(&self, path: Arc<[u64]>, handler: ReportHandler) {
        self.lock().hooks.push(Hook {
            path,
            run: HookRun::Report(handler),
        });
    }

    /// A savepoint's scope rolled back: the hooks registered in it will never run.
    pub(crate) fn discard_hooks(&self, frame: u64) {
        self.lock().hooks.retain(|hook| !hook.path.contains(&frame));
    }

    /// The outermost scope returned `Ok`: runs the final commits through the protocol, then ends
    /// the unit with the outcome they settled on.
    pub(crate) async fn commit(&self) -> Result<()> {
        let branches = {
            let state = self.lock();
            debug_assert_eq!(
                state.phase,
                Phase::Open,
                "a unit of work commits once, from its outermost scope"
            );
            state.branches.clone()
        };
        let connections = || branches.iter().map(|b| b.name().to_owned()).collect();
        if let Err(refused) = self
            .emit(|| EventKind::Committing {
                connections: connections(),
            })
            .await
        {
            self.rollback().await;
            return Err(refused);
        }
        self.lock().phase = Phase::Committing;
        let commit = Commit { unit: self, branches };
        let settled = self.protocol.commit(&commit).await;
        // Before hooks and events, which may need these connections' pools.
        for branch in &commit.branches {
            branch.release();
        }
        match settled {
            Settled::Committed => {
                self.end(UnitOutcome::Committed, None).await;
                Ok(())
            }
            Settled::RolledBack(cause) => {
                self.end(UnitOutcome::RolledBack, None).await;
                Err(cause)
            }
            Settled::Mixed(cause) => {
                self.end(UnitOutcome::Mixed, cause.report()).await;
                Err(cause)
            }
            Settled::Unknown(cause) => {
                self.end(UnitOutcome::Unknown, cause.report()).await;
                Err(cause)
            }
        }
    }

    /// [`commit`](Self::commit), finished even if the caller stops waiting: once the outermost
    /// scope returned `Ok`, the final commits run to their end, their outcome is resolved and the
    /// right hooks and events run, even if the caller drops this future (a timeout, a `select!`):
    /// the rest then runs in a background task, and one `tracing` event gives the outcome. While
    /// the caller waits, everything runs in its own task (no hop to another), outside its scopes,
    /// as it would in the background.
    pub(crate) async fn commit_detached(self: &Arc<Self>) -> Result<()> {
        let unit = self.clone();
        let reported = self.clone();
        let commit = async move { super::outside_every_scope(unit.commit()).await };
        background::finish_even_if_dropped(commit, move |done| {
            let outcome = reported.outcome();
            match &done {
                Ok(()) => {
                    tracing::info!(unit = %reported.id, ?outcome, "a unit of work whose caller stopped waiting finished its final commits in the background")
                }
                Err(e) => {
                    tracing::error!(unit = %reported.id, ?outcome, error = %e, "a unit of work whose caller stopped waiting finished its final commits in the background")
                }
            }
        })
        .await
    }

    /// The outcome the unit ended with, once it ended.
    pub(crate) fn outcome(&self) -> Option<UnitOutcome> {
        match self.lock().phase {
            Phase::Ended(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Rolls back every database of the unit and ends it rolled back.
    pub(crate) async fn rollback(&self) {
        let branches = std::mem::take(&mut self.lock().branches);
        self.rollback_each(&branches).await;
        self.end(UnitOutcome::RolledBack, None).await;
    }

    /// Rolls back each of `branches`. A failure is logged, not returned: the connection that failed
    /// is closed, which rolls an open transaction back, and recovery finishes a prepared one.
    async fn rollback_each(&self, branches: &[Arc<B>]) {
        for branch in branches {
            match branch.rollback().await {
                Ok(()) => {
                    let connection = branch.name().to_owned();
                    self.report(|| EventKind::RolledBack { connection }).await;
                }
                Err(e) => tracing::warn!(
                    unit = %self.id,
                    connection = branch.name(),
                    error = %e,
                    "rollback failed; closing the connection rolls an open transaction back, recovery finishes a prepared one"
                ),
            }
        }
    }

    /// Ends the unit with `outcome`, once: the one place that decides which hooks run.
    async fn end(&self, outcome: UnitOutcome, report: Option<&PartialCommit>) {
        if self.settle(outcome, report) {
            self.report(|| EventKind::Ended { outcome }).await;
        }
    }

    /// Moves to `Ended(outcome)` and runs the hooks registered for it, outside the lock; false if
    /// the unit had already ended.
    fn settle(&self, outcome: UnitOutcome, report: Option<&PartialCommit>) -> bool {
        let hooks = {
            let mut state = self.lock();
            if matches!(state.phase, Phase::Ended(_)) {
                return false;
            }
            state.phase = Phase::Ended(outcome);
            state.branches.clear();
            std::mem::take(&mut state.hooks)
        };
        for hook in hooks {
            match (hook.run, report) {
                (HookRun::On(on, run), _) if on == outcome => run(),
                (HookRun::Report(handler), Some(report)) => handler(report),
                _ => {}
            }
        }
        true
    }
}

impl<B: Branch> Drop for UnitOfWork<B> {
    /// A unit dropped before its end (its future was cancelled): its open connections close as they
    /// drop, which rolls their work back. Dropped in the middle of the final commits after some
    /// database committed, that is a partial commit nobody can be told of by a return value: it
    /// is reported as an error event.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let committed_everywhere = !state.branches.is_empty() && state.committed.len() == state.branches.len();
        let outcome = match state.phase {
            Phase::Ended(_) => return,
            Phase::Open => UnitOutcome::RolledBack,
            Phase::Committing if committed_everywhere => UnitOutcome::Committed,
            Phase::Committing if state.decided => {
                tracing::error!(
                    unit = %self.id,
                    committed = ?state.committed,
                    "a two-phase unit of work was cancelled after its commit decision: recovery commits the branches not committed yet"
                );
                UnitOutcome::Mixed
            }
            Phase::Committing if state.deciding || !state.unanswered.is_empty() => {
                tracing::error!(
                    unit = %self.id,
                    committed = ?state.committed,
                    unknown = ?state.unanswered,
                    deciding = state.deciding,
                    "outcome unknown: a unit of work was cancelled while a COMMIT or a commit decision was on its way; the databases not committed were rolled back or are left to recovery"
                );
                UnitOutcome::Unknown
            }
            // Databases that only read committed nothing that a rollback elsewhere contradicts.
            Phase::Committing
                if state
                    .branches
                    .iter()
                    .any(|b| b.wrote() && state.committed.iter().any(|c| c == b.name())) =>
            {
                tracing::error!(
                    unit = %self.id,
                    committed = ?state.committed,
                    "partial commit: a unit of work was cancelled during its final commits; the databases after those committed were rolled back and need reconciliation"
                );
                UnitOutcome::Mixed
            }
            Phase::Committing => UnitOutcome::RolledBack,
        };
        // Dropped with the runtime (the final commits run in a background task otherwise): no
        // report exists; the `tracing` event above stands for it.
        self.settle(outcome, None);
    }
}

/// The final commits of one unit, as its [`CommitProtocol`] runs them: the databases, and the
/// steps that keep the unit informed.
pub(crate) struct Commit<'a, B: Branch> {
    unit: &'a UnitOfWork<B>,
    branches: Vec<Arc<B>>,
}

impl<B: Branch> Commit<'_, B> {
    /// Every database of the unit, in commit order.
    pub(crate) fn branches(&self) -> &[Arc<B>] {
        &self.branches
    }

    /// Reports a step that happened (an observer failure is logged).
    pub(crate) async fn report(&self, kind: impl FnOnce() -> EventKind) {
        self.unit.report(kind).await;
    }

    /// Records that the decision to commit is on its way to the log (two-phase): from now on it
    /// may be durable, so a unit dropped before it is known runs no hook.
    pub(crate) fn deciding(&self) {
        self.unit.lock().deciding = true;
    }

    /// Records that the decision to commit is durable (two-phase), in the coordinator's log or as
    /// the commit of `site`: from now on every database will commit, so a unit dropped before the
    /// end runs no rollback hook.
    pub(crate) async fn decided(&self, gtrid: &str, site: Option<&str>) {
        self.unit.lock().decided = true;
        self.report(|| EventKind::DecisionDurable {
            gtrid: gtrid.to_owned(),
            site: site.map(str::to_owned),
        })
        .await;
    }

    /// Prepares the databases at `indices` concurrently; the first failure, once every prepare
    /// has answered.
    pub(crate) async fn prepare_each(&self, indices: &[usize]) -> Result<()> {
        let answers = futures_util::future::join_all(indices.iter().map(|&i| self.prepare_one(i))).await;
        answers.into_iter().collect()
    }

    /// Commits the databases at `indices` concurrently; each failure with its index, once every
    /// `COMMIT` has answered (or been resolved).
    pub(crate) async fn commit_each(&self, indices: &[usize]) -> Vec<(usize, CommitFailure)> {
        let answers =
            futures_util::future::join_all(indices.iter().map(|&i| async move { (i, self.commit_one(i).await) })).await;
        answers
            .into_iter()
            .filter_map(|(i, answer)| answer.err().map(|failure| (i, failure)))
            .collect()
    }

    /// Prepares the `index`-th database.
    pub(crate) async fn prepare_one(&self, index: usize) -> Result<()> {
        let branch = &self.branches[index];
        branch.prepare().await?;
        let connection = branch.name().to_owned();
        self.report(|| EventKind::Prepared { connection }).await;
        Ok(())
    }

    /// Commits the `index`-th database, and records what became of it. A `COMMIT` whose answer
    /// never came (the connection broke) may have committed: it is reported unknown, then resolved
    /// ([`Branch::resolve`]); it is never taken for "rolled back" before that says so.
    pub(crate) async fn commit_one(&self, index: usize) -> Result<(), CommitFailure> {
        let branch = &self.branches[index];
        let connection = branch.name().to_owned();
        self.unit.lock().unanswered.push(connection.clone());
        let answer = branch.commit(&self.unit.id).await;
        let decided = self.unit.lock().decided;
        let outcome = match &answer {
            Ok(()) => DatabaseOutcome::Committed,
            // The decision commits the branch: recovery finishes what phase two could not.
            Err(_) if decided => DatabaseOutcome::Decided,
            Err(Error::ConnectionLost { .. }) => {
                let connection = connection.clone();
                self.report(|| EventKind::OutcomeUnknown { connection }).await;
                branch.resolve(&self.unit.id).await
            }
            Err(_) => DatabaseOutcome::RolledBack,
        };
        {
            let mut state = self.unit.lock();
            if outcome == DatabaseOutcome::Committed {
                state.committed.push(connection.clone());
            }
            // A lost answer stays unanswered: a unit dropped from now on must not claim a rollback.
            if outcome != DatabaseOutcome::Unknown {
                state.unanswered.retain(|c| *c != connection);
            }
        }
        match outcome {
            DatabaseOutcome::Committed => self.report(|| EventKind::Committed { connection }).await,
            DatabaseOutcome::RolledBack => self.report(|| EventKind::RolledBack { connection }).await,
            DatabaseOutcome::Decided => self.report(|| EventKind::Decided { connection }).await,
            // Reported when the answer was lost.
            _ => {}
        }
        match (answer, outcome) {
            (_, DatabaseOutcome::Committed) => Ok(()),
            (Err(cause), outcome) => Err(CommitFailure { outcome, cause }),
            (Ok(()), _) => unreachable!("an answered COMMIT committed"),
        }
    }

    /// The report of a unit whose `failed`-th database ended with `failure`, the databases not
    /// committed by then being rolled back.
    pub(crate) fn report_failure(&self, failed: usize, failure: CommitFailure) -> PartialCommit {
        let outcomes = self.outcomes(failed, failure.outcome);
        self.partial_commit(outcomes, failed, failure.cause)
    }

    /// The report of a two-phase unit whose decision may or may not be durable: every database
    /// not committed yet is unknown (its branch is prepared, or it is the commit point site whose
    /// answer was lost). `failed` is the step that left it so (the site), if a database.
    pub(crate) fn in_doubt_report(&self, failed: Option<usize>, cause: Error) -> PartialCommit {
        let committed = self.unit.lock().committed.clone();
        let outcomes: Vec<_> = self
            .branches
            .iter()
            .map(|b| {
                let name = b.name().to_owned();
                let outcome = match committed.contains(&name) {
                    true => DatabaseOutcome::Committed,
                    false => DatabaseOutcome::Unknown,
                };
                (name, outcome)
            })
            .collect();
        let failed = failed
            .or_else(|| outcomes.iter().position(|(_, o)| *o == DatabaseOutcome::Unknown))
            .unwrap_or(0);
        self.partial_commit(outcomes, failed, cause)
    }

    /// The report with `outcomes`, and the server session of each unknown outcome that a marker
    /// lookup can resolve later.
    fn partial_commit(&self, outcomes: Vec<(String, DatabaseOutcome)>, failed: usize, cause: Error) -> PartialCommit {
        let sessions = self
            .branches
            .iter()
            .zip(&outcomes)
            .filter(|(_, (_, outcome))| *outcome == DatabaseOutcome::Unknown)
            .filter_map(|(branch, (name, _))| branch.resolvable_session().map(|session| (name.clone(), session)))
            .collect();
        PartialCommit {
            unit: self.unit.id.to_string(),
            outcomes,
            failed: self.branches[failed].name().to_owned(),
            cause,
            sessions,
        }
    }

    /// Every database's outcome once the `failed`-th database ended with `outcome` and the
    /// databases not committed by then were rolled back, or, after a durable decision, are decided.
    fn outcomes(&self, failed: usize, outcome: DatabaseOutcome) -> Vec<(String, DatabaseOutcome)> {
        let (committed, decided) = {
            let state = self.unit.lock();
            (state.committed.clone(), state.decided)
        };
        self.branches
            .iter()
            .enumerate()
            .map(|(i, branch)| {
                let name = branch.name().to_owned();
                let this = match i {
                    _ if i == failed => outcome,
                    _ if committed.contains(&name) => DatabaseOutcome::Committed,
                    _ if decided => DatabaseOutcome::Decided,
                    _ => DatabaseOutcome::RolledBack,
                };
                (name, this)
            })
            .collect()
    }

    /// Rolls back the databases at `indices`.
    pub(crate) async fn rollback_each(&self, indices: &[usize]) {
        let branches: Vec<_> = indices.iter().map(|&i| self.branches[i].clone()).collect();
        self.unit.rollback_each(&branches).await;
    }
}

#[cfg(test)]
mod tests {
    //! The state machine against a fake branch and fake protocols: no database.

    use super::super::best_effort::BestEffort;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What a fake database answers to COMMIT.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        Ok,
        Refused,
        /// The COMMIT's answer was lost with the connection; resolving finds the marker.
        LostCommitted,
        /// The COMMIT's answer was lost; resolving finds no marker once the session is gone.
        LostRolledBack,
        /// The COMMIT's answer was lost and the database cannot be reached to find out.
        LostUnknown,
    }

    impl Answer {
        fn is_lost(self) -> bool {
            matches!(
                self,
                Answer::LostCommitted | Answer::LostRolledBack | Answer::LostUnknown
            )
        }
    }

    /// A fake database's transaction: answers as told and writes down what it was asked.
    struct FakeBranch {
        name: String,
        commit_answer: Answer,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl FakeBranch {
        fn record(&self, what: &str) {
            self.log.lock().unwrap().push(format!("{what} {}", self.name));
        }
    }

    impl Branch for FakeBranch {
        fn name(&self) -> &str {
            &self.name
        }
        async fn prepare(&self) -> Result<()> {
            self.record("prepare");
            Ok(())
        }
        async fn commit(&self, _: &UnitId) -> Result<()> {
            self.record("commit");
            // The answer takes a moment: a caller may stop waiting in between.
            tokio::task::yield_now().await;
            match self.commit_answer {
                Answer::Ok => Ok(()),
                Answer::Refused => Err(Error::rejected(format!("{} refused to commit", self.name))),
                Answer::LostCommitted | Answer::LostRolledBack | Answer::LostUnknown => Err(Error::ConnectionLost {
                    connection: self.name.clone(),
                    source: sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
                }),
            }
        }
        async fn rollback(&self) -> Result<()> {
            self.record("rollback");
            Ok(())
        }
        async fn resolve(&self, _: &UnitId) -> DatabaseOutcome {
            self.record("resolve");
            match self.commit_answer {
                Answer::LostCommitted => DatabaseOutcome::Committed,
                Answer::LostRolledBack => DatabaseOutcome::RolledBack,
                _ => DatabaseOutcome::Unknown,
            }
        }
        fn resolvable_session(&self) -> Option<u64> {
            Some(7)
        }
        fn wrote(&self) -> bool {
            true
        }
        fn is_branch(&self) -> bool {
            false
        }
        fn commits_with_marker(&self) -> bool {
            true
        }
    }

    /// A unit over fake databases `a`, `b`, ... answering `answers`, with one after-commit and
    /// one after-rollback hook registered in the outermost frame.
    struct Fixture {
        unit: Arc<UnitOfWork<FakeBranch>>,
        log: Arc<Mutex<Vec<String>>>,
        hooks: Arc<Mutex<Vec<&'static str>>>,
        frames: Vec<u64>,
    }

    async fn fixture(protocol: Box<dyn CommitProtocol<FakeBranch>>, answers: &[Answer]) -> Fixture {
        observed_fixture(protocol, answers, None).await
    }

    async fn observed_fixture(
        protocol: Box<dyn CommitProtocol<FakeBranch>>,
        answers: &[Answer],
        observers: Option<Arc<Observers>>,
    ) -> Fixture {
        let unit = Arc::new(UnitOfWork::new(protocol, observers));
        let log = Arc::new(Mutex::new(Vec::new()));
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let mut frames = Vec::new();
        for (i, answer) in answers.iter().enumerate() {
            let branch = Arc::new(FakeBranch {
                name: ((b'a' + i as u8) as char).to_string(),
                commit_answer: *answer,
                log: log.clone(),
            });
            frames.push(unit.next_frame_id());
            let _ = unit.next_branch_id(joining());
            if i == 0 {
                unit.begin(branch).await;
            } else {
                unit.join(branch).await;
            }
        }
        let outer: Arc<[u64]> = Arc::from([frames[0]]);
        for (on, label) in [
            (UnitOutcome::Committed, "after commit"),
            (UnitOutcome::RolledBack, "after rollback"),
        ] {
            let hooks = hooks.clone();
            unit.register_hook(outer.clone(), on, Box::new(move || hooks.lock().unwrap().push(label)));
        }
        let reports = hooks.clone();
        unit.register_report_handler(
            outer,
            Box::new(move |report| {
                assert!(!report.outcomes.is_empty());
                reports.lock().unwrap().push("report");
            }),
        );
        Fixture {
            unit,
            log,
            hooks,
            frames,
        }
    }

    impl Fixture {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
        fn hooks(&self) -> Vec<&'static str> {
            self.hooks.lock().unwrap().clone()
        }
    }

    /// A fake database about to take part.
    fn joining() -> Joining<'static> {
        Joining {
            name: "fake",
            can_prepare: true,
            has_markers: true,
        }
    }

    fn best_effort() -> Box<dyn CommitProtocol<FakeBranch>> {
        Box::new(BestEffort)
    }

    #[tokio::test]
    async fn best_effort_commits_every_database_in_order() {
        for n in 1..=3 {
            let f = fixture(best_effort(), &vec![Answer::Ok; n]).await;
            f.unit.commit().await.unwrap();
            let expected: Vec<String> = ["commit a", "commit b", "commit c"][..n]
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(f.log(), expected);
            assert_eq!(f.hooks(), ["after commit"]);
        }
    }

    #[tokio::test]
    async fn a_refused_first_commit_rolls_back_the_rest_and_is_a_plain_error() {
        for n in 1..=3 {
            let mut answers = vec![Answer::Ok; n];
            answers[0] = Answer::Refused;
            let f = fixture(best_effort(), &answers).await;
            let err = f.unit.commit().await.unwrap_err();
            assert!(matches!(err, Error::Rejected(_)), "{err:?}");
            let mut expected = vec!["commit a".to_owned()];
            expected.extend(["rollback b", "rollback c"][..n - 1].iter().map(|s| s.to_string()));
            assert_eq!(f.log(), expected);
            assert_eq!(f.hooks(), ["after rollback"]);
        }
    }

    #[tokio::test]
    async fn a_refused_later_commit_is_a_partial_commit_and_runs_no_hook() {
        for (answers, committed, failed, rolled_back) in [
            (vec![Answer::Ok, Answer::Refused], vec!["a"], "b", vec![]),
            (vec![Answer::Ok, Answer::Refused, Answer::Ok], vec!["a"], "b", vec!["c"]),
            (
                vec![Answer::Ok, Answer::Ok, Answer::Refused],
                vec!["a", "b"],
                "c",
                vec![],
            ),
        ] {
            let f = fixture(best_effort(), &answers).await;
            let err = f.unit.commit().await.unwrap_err();
            let Error::PartialCommit(partial) = err else {
                panic!("{err:?}")
            };
            assert_eq!(partial.committed(), committed);
            assert_eq!(partial.failed, failed);
            let mut expected_rolled_back = vec![failed];
            expected_rolled_back.extend(rolled_back);
            assert_eq!(
                partial.rolled_back(),
                expected_rolled_back,
                "the refused one and those after it"
            );
            assert_eq!(
                f.hooks(),
                ["report"],
                "no hook describes a partial commit: the handler has it"
            );
        }
    }

    #[tokio::test]
    async fn a_lost_commit_answer_that_stays_unknown_is_never_rolled_back() {
        use DatabaseOutcome::{Committed, RolledBack, Unknown};
        let lost = Answer::LostUnknown;
        for (answers, expected) in [
            (vec![lost], vec![Unknown]),
            (vec![lost, Answer::Ok], vec![Unknown, RolledBack]),
            (vec![Answer::Ok, lost], vec![Committed, Unknown]),
            (vec![Answer::Ok, lost, Answer::Ok], vec![Committed, Unknown, RolledBack]),
            (
                vec![lost, Answer::Ok, Answer::Ok],
                vec![Unknown, RolledBack, RolledBack],
            ),
            (vec![Answer::Ok, Answer::Ok, lost], vec![Committed, Committed, Unknown]),
        ] {
            let f = fixture(best_effort(), &answers).await;
            let err = f.unit.commit().await.unwrap_err();
            let Error::OutcomeUnknown(report) = &err else {
                panic!("{answers:?}: {err:?}")
            };
            let outcomes: Vec<DatabaseOutcome> = report.outcomes.iter().map(|(_, o)| *o).collect();
            assert_eq!(outcomes, expected, "{answers:?}");
            assert_eq!(report.unit, f.unit.id().to_string());
            let unknown = report.unknown()[0];
            assert_eq!(report.sessions, [(unknown.to_owned(), 7)], "to resolve it later");
            assert!(!err.is_transient(), "retrying could apply the work twice");
            assert_eq!(
                f.hooks(),
                ["report"],
                "{answers:?}: no hook for an outcome nobody knows"
            );
            // The commits stop at the unknown one: nothing after it was asked to commit.
            let lost_at = answers.iter().position(|a| *a == lost).unwrap();
            let commits = f.log().iter().filter(|l| l.starts_with("commit")).count();
            assert_eq!(commits, lost_at + 1, "{answers:?}");
        }
    }

    /// How the contract says a best-effort unit whose databases answer `answers` settles: each
    /// database's outcome, and the kind of error (`None`: committed).
    fn contract(answers: &[Answer]) -> (Vec<DatabaseOutcome>, Option<&'static str>) {
        use DatabaseOutcome::{Committed, RolledBack, Unknown};
        let settled = |a: Answer| match a {
            Answer::Ok | Answer::LostCommitted => Committed,
            Answer::Refused | Answer::LostRolledBack => RolledBack,
            Answer::LostUnknown => Unknown,
        };
        // The commits stop at the first database that did not commit (after resolving).
        let Some(stop) = answers.iter().position(|a| settled(*a) != Committed) else {
            return (vec![Committed; answers.len()], None);
        };
        let outcomes = (0..answers.len())
            .map(|j| match j {
                _ if j < stop => Committed,
                _ if j == stop => settled(answers[stop]),
                _ => RolledBack,
            })
            .collect();
        let error = match (stop, settled(answers[stop])) {
            (0, RolledBack) => "plain",
            (_, RolledBack) => "partial",
            _ => "unknown",
        };
        (outcomes, Some(error))
    }

    /// Every combination of answers to COMMIT (answered, refused, lost and then resolved as
    /// committed, as rolled back, or not at all) for one, two and three databases, with the
    /// caller waiting or dropping its future during the final commits: the returned error and the
    /// hooks follow the rules of semantics.md, and a dropped caller's unit is finished in the
    /// background with the same outcome.
    #[tokio::test]
    async fn every_combination_of_commit_answers_settles_as_the_contract_says() {
        let all = [
            Answer::Ok,
            Answer::Refused,
            Answer::LostCommitted,
            Answer::LostRolledBack,
            Answer::LostUnknown,
        ];
        for n in 1..=3u32 {
            for code in 0..all.len().pow(n) {
                let answers: Vec<Answer> = (0..n as usize)
                    .map(|i| all[code / all.len().pow(i as u32) % all.len()])
                    .collect();
                let (expected, error) = contract(&answers);
                let expected_hooks: &[&str] = match error {
                    None => &["after commit"],
                    Some("plain") => &["after rollback"],
                    Some(_) => &["report"],
                };
                let commits_sent = expected
                    .iter()
                    .position(|o| *o != DatabaseOutcome::Committed)
                    .map_or(answers.len(), |i| i + 1);

                // The caller waits.
                let f = fixture(best_effort(), &answers).await;
                let result = f.unit.commit_detached().await;
                match (&result, error) {
                    (Ok(()), None) => {}
                    (Err(Error::Rejected(_)), Some("plain")) => {}
                    (Err(Error::ConnectionLost { .. }), Some("plain")) => {
                        assert_eq!(answers[0], Answer::LostRolledBack, "resolved: nothing committed")
                    }
                    (Err(Error::PartialCommit(report)), Some("partial"))
                    | (Err(Error::OutcomeUnknown(report)), Some("unknown")) => {
                        let outcomes: Vec<_> = report.outcomes.iter().map(|(_, o)| *o).collect();
                        assert_eq!(outcomes, expected, "{answers:?}");
                    }
                    _ => panic!("{answers:?}: {result:?}, expected {error:?}"),
                }
                assert_eq!(f.hooks(), expected_hooks, "{answers:?}");
                let commits = f.log().iter().filter(|l| l.starts_with("commit")).count();
                assert_eq!(commits, commits_sent, "{answers:?}: the commits stop there");
                let resolved = f.log().iter().filter(|l| l.starts_with("resolve")).count();
                let lost = answers[..commits_sent].iter().filter(|a| a.is_lost()).count();
                assert_eq!(resolved, lost, "{answers:?}: every lost answer is resolved");

                // The caller stops waiting during the first commit: the unit ends the same.
                let f = fixture(best_effort(), &answers).await;
                let polled_once = futures_util::FutureExt::now_or_never(f.unit.commit_detached());
                assert!(
                    polled_once.is_none(),
                    "{answers:?}: the first COMMIT was still in flight"
                );
                while f.unit.outcome().is_none() {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                assert_eq!(f.hooks(), expected_hooks, "{answers:?}, caller gone");
                let commits = f.log().iter().filter(|l| l.starts_with("commit")).count();
                assert_eq!(commits, commits_sent, "{answers:?}, caller gone");
            }
        }
    }

    #[tokio::test]
    async fn rollback_rolls_back_every_database_once() {
        for n in 1..=3 {
            let f = fixture(best_effort(), &vec![Answer::Ok; n]).await;
            f.unit.rollback().await;
            f.unit.rollback().await;
            assert_eq!(f.log().len(), n);
            assert!(f.log().iter().all(|l| l.starts_with("rollback")));
            assert_eq!(f.hooks(), ["after rollback"]);
        }
    }

    #[tokio::test]
    async fn hooks_of_a_rolled_back_savepoint_or_joined_scope_are_discarded() {
        let f = fixture(best_effort(), &[Answer::Ok, Answer::Ok, Answer::Ok]).await;
        let ran = Arc::new(AtomicUsize::new(0));
        // A savepoint frame nested in the outermost one, and the joined frames of b and c.
        let savepoint = f.unit.next_frame_id();
        let paths: [Arc<[u64]>; 3] = [
            Arc::from([f.frames[0], savepoint]),
            Arc::from([f.frames[0], f.frames[1]]),
            Arc::from([f.frames[0], f.frames[2]]),
        ];
        for path in &paths {
            let ran = ran.clone();
            f.unit.register_hook(
                path.clone(),
                UnitOutcome::Committed,
                Box::new(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                }),
            );
        }
        f.unit.discard_hooks(savepoint);
        let b = f.unit.branch("b").unwrap();
        f.unit.leave(&b, f.frames[1]).await;
        f.unit.commit().await.unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "only the hook of c's scope ran");
        assert_eq!(f.log(), ["rollback b", "commit a", "commit c"]);
        assert_eq!(f.hooks(), ["after commit"]);
    }

    #[tokio::test]
    async fn a_unit_dropped_before_its_end_runs_its_rollback_hooks() {
        let f = fixture(best_effort(), &[Answer::Ok, Answer::Ok]).await;
        let hooks = f.hooks.clone();
        drop(f.unit);
        assert_eq!(*hooks.lock().unwrap(), ["after rollback"]);
    }

    /// A protocol that commits the first database and then never finishes: the unit's future is
    /// dropped during its final commits.
    struct Stalls;

    impl CommitProtocol<FakeBranch> for Stalls {
        fn commit<'a>(&'a self, commit: &'a Commit<'a, FakeBranch>) -> BoxFuture<'a, Settled> {
            Box::pin(async move {
                commit.commit_one(0).await.unwrap();
                std::future::pending().await
            })
        }
    }

    /// A protocol that loses the first database's COMMIT answer, then never finishes.
    struct LosesThenStalls;

    impl CommitProtocol<FakeBranch> for LosesThenStalls {
        fn commit<'a>(&'a self, commit: &'a Commit<'a, FakeBranch>) -> BoxFuture<'a, Settled> {
            Box::pin(async move {
                assert!(commit.commit_one(0).await.is_err());
                std::future::pending().await
            })
        }
    }

    /// A protocol that commits every database, then never finishes.
    struct CommitsThenStalls;

    impl CommitProtocol<FakeBranch> for CommitsThenStalls {
        fn commit<'a>(&'a self, commit: &'a Commit<'a, FakeBranch>) -> BoxFuture<'a, Settled> {
            Box::pin(async move {
                for i in 0..commit.branches().len() {
                    commit.commit_one(i).await.unwrap();
                }
                std::future::pending().await
            })
        }
    }

    /// A protocol that makes its decision durable and then never commits: the unit's future is
    /// dropped between the decision and phase two.
    struct DecidesThenStalls;

    impl CommitProtocol<FakeBranch> for DecidesThenStalls {
        fn commit<'a>(&'a self, commit: &'a Commit<'a, FakeBranch>) -> BoxFuture<'a, Settled> {
            Box::pin(async move {
                commit.prepare_one(0).await.unwrap();
                commit.prepare_one(1).await.unwrap();
                commit.decided("fake", None).await;
                std::future::pending().await
            })
        }
    }

    /// A unit whose protocol stalls at each point of its final commits, dropped there: the hooks
    /// follow what the databases did, and none runs for an outcome nobody knows.
    #[tokio::test]
    async fn a_unit_dropped_during_its_final_commits_runs_only_the_hooks_that_are_true() {
        type Case = (Box<dyn CommitProtocol<FakeBranch>>, Vec<Answer>, Vec<&'static str>);
        let cases: [Case; 4] = [
            // One database committed, the other not asked: partial.
            (Box::new(Stalls), vec![Answer::Ok, Answer::Ok], vec![]),
            // The first answer was lost: unknown.
            (Box::new(LosesThenStalls), vec![Answer::LostUnknown, Answer::Ok], vec![]),
            // Every database committed before the drop.
            (
                Box::new(CommitsThenStalls),
                vec![Answer::Ok, Answer::Ok],
                vec!["after commit"],
            ),
            // A durable two-phase decision: every branch will commit, through recovery.
            (Box::new(DecidesThenStalls), vec![Answer::Ok, Answer::Ok], vec![]),
        ];
        for (protocol, answers, expected) in cases {
            let f = fixture(protocol, &answers).await;
            let hooks = f.hooks.clone();
            let unit = f.unit;
            let committing = tokio::time::timeout(std::time::Duration::from_millis(10), unit.commit()).await;
            assert!(committing.is_err(), "the protocol stalls");
            drop(unit);
            assert_eq!(*hooks.lock().unwrap(), expected, "{answers:?}");
        }
    }

    /// A protocol that prepares every database, then commits each: the shape of two-phase
    /// commit, with its phase two failing on a refused database.
    struct PrepareThenCommit;

    impl CommitProtocol<FakeBranch> for PrepareThenCommit {
        fn branch_id(&self, index: usize, _: Joining<'_>) -> Result<Option<BranchId>> {
            Ok(Some(BranchId::new("fake", index)))
        }
        fn commit<'a>(&'a self, commit: &'a Commit<'a, FakeBranch>) -> BoxFuture<'a, Settled> {
            Box::pin(async move {
                for i in 0..commit.branches().len() {
                    if let Err(e) = commit.prepare_one(i).await {
                        commit.rollback_each(&[0, 1, 2][..commit.branches().len()]).await;
                        return Settled::RolledBack(e);
                    }
                }
                let mut failed = None;
                for i in 0..commit.branches().len() {
                    if let Err(e) = commit.commit_one(i).await {
                        failed.get_or_insert(e);
                    }
                }
                match failed {
                    None => Settled::Committed,
                    Some(failure) => Settled::Mixed(failure.cause),
                }
            })
        }
    }

    #[tokio::test]
    async fn another_protocol_plugs_into_the_same_unit() {
        let f = fixture(Box::new(PrepareThenCommit), &[Answer::Ok, Answer::Ok, Answer::Ok]).await;
        assert_eq!(
            f.unit.next_branch_id(joining()).unwrap(),
            Some(BranchId::new("fake", 3))
        );
        f.unit.commit().await.unwrap();
        assert_eq!(
            f.log(),
            [
                "prepare a",
                "prepare b",
                "prepare c",
                "commit a",
                "commit b",
                "commit c"
            ]
        );
        assert_eq!(f.hooks(), ["after commit"]);

        let f = fixture(Box::new(PrepareThenCommit), &[Answer::Ok, Answer::Refused]).await;
        assert!(f.unit.commit().await.is_err());
        assert!(f.hooks().is_empty(), "a mixed outcome runs no hook");
    }

    /// Records every event; refuses `Committing` when told to.
    struct Recorder {
        events: Mutex<Vec<EventKind>>,
        refuse_commit: bool,
    }

    impl super::super::events::Observer for Recorder {
        async fn on_event(&self, event: &Event) -> Result<()> {
            self.events.lock().unwrap().push(event.kind.clone());
            match (&event.kind, self.refuse_commit) {
                (EventKind::Committing { .. }, true) => Err(Error::rejected("the journal is full")),
                _ => Ok(()),
            }
        }
    }

    async fn observed(refuse_commit: bool) -> (Fixture, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            events: Mutex::new(Vec::new()),
            refuse_commit,
        });
        let observers = Arc::new(Observers::default().with(1, recorder.clone()));
        let f = observed_fixture(best_effort(), &[Answer::Ok, Answer::Ok], Some(observers)).await;
        (f, recorder)
    }

    fn connection(name: &str) -> String {
        name.to_owned()
    }

    #[tokio::test]
    async fn observers_see_every_step_in_order() {
        let (f, recorder) = observed(false).await;
        f.unit.commit().await.unwrap();
        assert_eq!(
            *recorder.events.lock().unwrap(),
            [
                EventKind::Begun {
                    connection: connection("a")
                },
                EventKind::Joined {
                    connection: connection("b")
                },
                EventKind::Committing {
                    connections: vec![connection("a"), connection("b")]
                },
                EventKind::Committed {
                    connection: connection("a")
                },
                EventKind::Committed {
                    connection: connection("b")
                },
                EventKind::Ended {
                    outcome: UnitOutcome::Committed
                },
            ]
        );
    }

    #[tokio::test]
    async fn an_observer_that_fails_before_the_commits_rolls_the_unit_back() {
        let (f, recorder) = observed(true).await;
        let err = f.unit.commit().await.unwrap_err();
        assert!(matches!(err, Error::Observer { .. }), "{err:?}");
        assert_eq!(f.log(), ["rollback a", "rollback b"]);
        assert_eq!(f.hooks(), ["after rollback"]);
        assert_eq!(
            recorder.events.lock().unwrap().last(),
            Some(&EventKind::Ended {
                outcome: UnitOutcome::RolledBack
            })
        );
    }
}

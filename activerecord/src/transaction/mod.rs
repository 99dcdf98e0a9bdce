//! Transaction scopes: `ConnectionManager::using(name).transaction(async |tx| ..)`.
//!
//! What a scope guarantees (the full contract is in `docs/transactions.md`):
//! - It commits when the body returns `Ok`, rolls back when it returns `Err` or panics (the panic
//!   then continues), and returns the body's result.
//! - Scopes nest within a task. A scope on a database that the enclosing unit of work already has
//!   open is a savepoint: its `Err` rolls back to the savepoint only. A scope on another database
//!   opens a transaction there that *joins* the outermost scope: it commits when the outermost
//!   scope commits, after its own database, and rolls back when the outermost scope fails.
//! - The final commits are the one window of risk. When a commit fails after another succeeded,
//!   the error is [`Error::PartialCommit`], naming what committed and what did not, and a
//!   `tracing` error event records the same facts.
//! - A connection never goes back to its pool with a transaction open: when a scope's future is
//!   dropped at any await point (a timeout, a `select!`), or a commit or rollback fails, the
//!   connection is closed instead, and the server rolls its work back.
//! - After-commit hooks run once, after every database of the unit of work committed;
//!   after-rollback hooks run once it rolled back. Hooks registered in a savepoint or joined scope
//!   that rolls back are discarded.
//! - Model calls through [`Using`] or [`Ambient`] use the innermost open scope of
//!   their database in the current task. The scopes of a task do not follow work into
//!   `tokio::spawn`: a spawned task starts with none open, so its model calls run in autocommit.

mod best_effort;
mod events;
mod handles;
mod idempotency;
mod manage;
mod markers;
mod participant;
mod retry;
mod unit;

pub use crate::backend::Isolation;
pub(crate) use crate::backend::{BranchId, Finish};
pub use events::{Event, EventKind, Observer, ObserverId, UnitId, UnitOutcome};
pub use handles::{Ambient, Using};
pub use idempotency::Idempotent;
pub(crate) use markers::{abort_claimed, claim_abort, insert_claim, marker_exists, now_ms};
pub(crate) use participant::Participant;
pub use retry::{RetryPolicy, Retrying, Transient, retry};
pub(crate) use unit::{Branch, Commit, CommitProtocol, Joining, Settled};

use crate::connection::{ConnectionManager, Database, UnitTag};
use crate::context::context;
use crate::error::{Error, PartialCommit, Result};
use crate::executor::{Resolve, Target};
pub(crate) use best_effort::{BestEffort, commit_in_turn};
use events::Observers;
use futures_util::FutureExt;
use std::borrow::Cow;
use std::fmt;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::sync::Arc;
use std::time::Duration;
use unit::UnitOfWork;

/// How a scope opens its transaction. Set through the builder methods of [`Using`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ScopeOptions {
    pub(crate) isolation: Option<Isolation>,
    pub(crate) read_only: bool,
    timeout: Option<Duration>,
    /// How long statements wait for a lock when the unit of work spans several databases.
    pub(crate) lock_timeout: Option<Duration>,
    requires_new: bool,
    /// How an outermost scope commits; best effort when `None`.
    pub(crate) protocol: Option<Arc<dyn ChooseProtocol>>,
}

/// Starts the [`CommitProtocol`] of a new unit of work: how a strategy above this module (two-phase
/// commit, ...) plugs in through [`Using`] without this module naming it.
pub(crate) trait ChooseProtocol: Send + Sync + fmt::Debug {
    /// The protocol for one new unit of work.
    fn start(&self) -> Result<Box<dyn CommitProtocol<Participant>>>;
}

impl Using {
    /// Opens the scope's transaction at `level`. Applies where the scope begins a transaction; a
    /// scope that becomes a savepoint runs at the level of the transaction it is part of.
    pub fn isolation(mut self, level: Isolation) -> Self {
        self.options.isolation = Some(level);
        self
    }

    /// Opens the scope's transaction read-only: writes fail (on SQLite through
    /// `PRAGMA query_only`).
    pub fn read_only(mut self) -> Self {
        self.options.read_only = true;
        self
    }

    /// Rolls the scope back with [`Error::Timeout`] when its body has not finished after
    /// `limit`.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.options.timeout = Some(limit);
        self
    }

    /// How long a statement may wait for a row lock on each database of the unit of work, once it
    /// spans more than one (default: each connection's
    /// [`DatabaseConfig::lock_timeout`](crate::DatabaseConfig::lock_timeout), 5 s). Set on the
    /// outermost scope it applies to every database that joins; set on a joined scope, to its own
    /// database. Waiting longer fails the statement with [`Error::LockTimeout`]: nothing is
    /// committed, and the unit of work may be retried. A unit of work on one database keeps the
    /// database's own setting (which detects deadlocks within it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::ConnectionManager;
    /// use std::time::Duration;
    ///
    /// ConnectionManager::configure("lock_doc", "sqlite::memory:").await?;
    /// ConnectionManager::using("lock_doc")
    ///     .lock_timeout(Duration::from_millis(500))
    ///     .transaction(async |_tx| Ok::<_, activerecord::Error>(()))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn lock_timeout(mut self, limit: Duration) -> Self {
        self.options.lock_timeout = Some(limit);
        self
    }

    /// Runs the scope as a transaction of its own, committed when the scope itself ends, even when
    /// it is nested in another scope (the behaviour of the Python guide's nested `with` blocks, and
    /// Spring's `REQUIRES_NEW`). The enclosing scope's later failure does not undo it.
    pub fn requires_new(mut self) -> Self {
        self.options.requires_new = true;
        self
    }

    /// Runs `body` in a transaction scope on this connection. See the [module docs](self).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ActiveRecord, ConnectionManager, Error, Model};
    ///
    /// #[derive(ActiveRecord, Debug)]
    /// struct Account { id: Option<i64>, owner: String, balance: i64 }
    ///
    /// let db = ConnectionManager::configure("scope_doc", "sqlite::memory:").await?;
    /// db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER)").await?;
    /// let id = Account::create(&db, Account { id: None, owner: "ann".into(), balance: 10 }).await?.id.unwrap();
    ///
    /// let refused = ConnectionManager::using("scope_doc")
    ///     .transaction(async |tx| {
    ///         let mut account = Account::find(tx, id).await?;
    ///         account.balance -= 25;
    ///         account.save(tx).await?;
    ///         if account.balance < 0 {
    ///             return Err(Error::rejected("insufficient funds"));
    ///         }
    ///         Ok(())
    ///     })
    ///     .await;
    /// assert!(matches!(refused, Err(Error::Rejected(_))));
    /// assert_eq!(Account::find(&db, id).await?.balance, 10, "rolled back");
    /// # Ok(()) }
    /// ```
    pub async fn transaction<F, T, E>(self, body: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
        E: From<Error>,
    {
        let enclosing = innermost_frame(None);
        if self.options.requires_new && !self.options.read_only {
            refuse_second_sqlite_writer(&self.name)?;
        }
        let joined = enclosing
            .as_ref()
            .filter(|_| !self.options.requires_new)
            .map(|frame| frame.unit.clone());
        match joined {
            None => self.run_root(body).await,
            Some(unit) => match unit.branch(&self.name) {
                Some(participant) => run_savepoint(unit, participant, enclosing.as_ref(), &self.options, body).await,
                None => self.run_joined(unit, enclosing.as_ref(), body).await,
            },
        }
    }

    /// The outermost scope of a unit of work: begins, runs the body, then commits or rolls back
    /// every database that joined.
    async fn run_root<F, T, E>(&self, body: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
        E: From<Error>,
    {
        let database = ConnectionManager::get(&self.name)?;
        let protocol = match &self.options.protocol {
            Some(choice) => choice.start()?,
            None => Box::new(BestEffort),
        };
        let unit = Arc::new(UnitOfWork::new(protocol, context().get::<Observers>()));
        // Alone, the unit keeps the database's own lock waits, until another database joins.
        let branch = unit.next_branch_id(Participant::joining(&database))?;
        let participant = Box::pin(Participant::begin(
            database,
            &UnitTag::new(),
            &self.options,
            branch,
            None,
        ))
        .await?;
        unit.begin(participant.clone()).await;
        // A unit of work of its own: its frames' paths start afresh.
        let frame = Frame::new(unit.clone(), participant, None);
        match run_body(frame, &self.options, body).await {
            BodyOutcome::Returned(Ok(value)) => {
                unit.commit_detached().await?;
                Ok(value)
            }
            outcome => {
                Box::pin(unit.rollback()).await;
                outcome.into_result()
            }
        }
    }

    /// A scope on a database the unit of work does not have open yet: begins there and joins the
    /// unit, which commits it at its end. Its own failure rolls back only its own transaction.
    async fn run_joined<F, T, E>(
        &self,
        unit: Arc<UnitOfWork<Participant>>,
        enclosing: Option<&Frame>,
        body: F,
    ) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
        E: From<Error>,
    {
        if !self.options.read_only {
            refuse_second_sqlite_writer(&self.name)?;
        }
        let database = ConnectionManager::get(&self.name)?;
        // Now over several databases: each waits for a lock for a limited time, since none of
        // them can see a wait that goes through another.
        let root = unit.root().expect("a unit of work begins with its root");
        root.limit_lock_waits().await;
        // The deadlock detector watches it from now on.
        let tag = root.tx.unit().clone();
        tag.watch();
        root.tx.watch();
        let asked = self.options.lock_timeout.or_else(|| root.asked_lock_timeout());
        let limit = asked.unwrap_or_else(|| database.lock_timeout());
        let branch = unit.next_branch_id(Participant::joining(&database))?;
        let participant = Box::pin(Participant::begin(database, &tag, &self.options, branch, Some(limit))).await?;
        unit.join(participant.clone()).await;
        let frame = Frame::new(unit.clone(), participant.clone(), enclosing);
        let frame_id = frame.id();
        let outcome = run_body(frame, &self.options, body).await;
        if !matches!(outcome, BodyOutcome::Returned(Ok(_))) {
            Box::pin(unit.leave(&participant, frame_id)).await;
        }
        outcome.into_result()
    }
}

/// A scope nested in a transaction already open on its database: a savepoint.
async fn run_savepoint<F, T, E>(
    unit: Arc<UnitOfWork<Participant>>,
    participant: Arc<Participant>,
    enclosing: Option<&Frame>,
    options: &ScopeOptions,
    body: F,
) -> Result<T, E>
where
    F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
    E: From<Error>,
{
    let savepoint = participant.savepoint().await?;
    let connection = || participant.name().to_owned();
    unit.report(|| EventKind::Savepoint {
        connection: connection(),
    })
    .await;
    let frame = Frame::new(unit.clone(), participant.clone(), enclosing);
    let frame_id = frame.id();
    let outcome = run_body(frame, options, body).await;
    if matches!(outcome, BodyOutcome::Returned(Ok(_))) {
        participant.release(&savepoint).await?;
        unit.report(|| EventKind::SavepointReleased {
            connection: connection(),
        })
        .await;
    } else {
        unit.discard_hooks(frame_id);
        match participant.rollback_to(&savepoint).await {
            Ok(()) => {
                unit.report(|| EventKind::SavepointRolledBack {
                    connection: connection(),
                })
                .await
            }
            // The server rolled back the whole transaction, or the deadlock detector condemned
            // the unit of work: it refuses every statement and its commit already.
            Err(Error::RolledBackByServer { .. } | Error::Deadlock { .. }) => {}
            Err(e) => {
                // The body's own error (or panic) stays the one reported; the transaction, whose
                // state is no longer known, refuses to commit.
                tracing::warn!(connection = participant.name(), error = %e, "rollback to a savepoint failed; the transaction will not commit");
                participant.tx.poison();
            }
        }
    }
    outcome.into_result()
}

/// How a scope's body ended.
enum BodyOutcome<T, E> {
    Returned(Result<T, E>),
    TimedOut(Error),
    Panicked(Box<dyn std::any::Any + Send>),
}

impl<T, E: From<Error>> BodyOutcome<T, E> {
    /// The scope's result once its transaction work is done; a panic continues.
    fn into_result(self) -> Result<T, E> {
        match self {
            BodyOutcome::Returned(result) => result,
            BodyOutcome::TimedOut(error) => Err(error.into()),
            BodyOutcome::Panicked(payload) => resume_unwind(payload),
        }
    }
}

/// Runs `body` with `frame` as the innermost scope of the task, within the scope's time limit,
/// catching a panic so that the transaction can be rolled back before it continues.
async fn run_body<F, T, E>(frame: Frame, options: &ScopeOptions, body: F) -> BodyOutcome<T, E>
where
    F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
{
    let stack = SCOPES
        .try_with(|stack| stack.with(frame.clone()))
        .unwrap_or_else(|_| Stack(vec![frame.clone()]));
    let connection = frame.participant.name().to_owned();
    let mut tx = Tx { frame };
    // Boxed, like the other large steps of a scope (beginning, rolling back, leaving): a scope's
    // future then stays about a kilobyte however deeply scopes nest, instead of holding its body,
    // with every nested scope inline, and being copied whole each time it moves (40 KB for a
    // two-database transfer, which cost a few percent of its time).
    let scoped = SCOPES.scope(stack, Box::pin(body(&mut tx)));
    let limited = async {
        match options.timeout {
            Some(limit) => tokio::time::timeout(limit, scoped).await.map_err(|_| limit),
            None => Ok(scoped.await),
        }
    };
    match AssertUnwindSafe(limited).catch_unwind().await {
        Ok(Ok(result)) => BodyOutcome::Returned(result),
        Ok(Err(limit)) => BodyOutcome::TimedOut(Error::Timeout { connection, limit }),
        Err(payload) => BodyOutcome::Panicked(payload),
    }
}

/// The handle of an open transaction scope, passed to its body. Pass it to model calls to run
/// them in the scope; register hooks on it.
///
/// It has no lifetime parameter, so that a scope's future is `Send` and scopes work inside
/// `tokio::spawn` and web handlers.
pub struct Tx {
    frame: Frame,
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("connection", &self.name())
            .field("frame", &self.frame.id())
            .finish()
    }
}

impl Tx {
    /// The connection name of the scope.
    pub fn name(&self) -> &str {
        self.frame.participant.name()
    }

    /// The connection of the scope.
    pub fn database(&self) -> &Database {
        self.frame.participant.database()
    }

    /// Runs `hook` once every database of the unit of work has committed; never if it rolls back,
    /// or if the savepoint or joined scope this handle belongs to rolls back.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::ConnectionManager;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// ConnectionManager::configure("hook_doc", "sqlite::memory:").await?;
    /// let sent = Arc::new(AtomicBool::new(false));
    /// let flag = sent.clone();
    /// ConnectionManager::using("hook_doc")
    ///     .transaction(async |tx| {
    ///         tx.after_commit(move || flag.store(true, Ordering::SeqCst));
    ///         Ok::<_, activerecord::Error>(())
    ///     })
    ///     .await?;
    /// assert!(sent.load(Ordering::SeqCst));
    /// # Ok(()) }
    /// ```
    pub fn after_commit(&self, hook: impl FnOnce() + Send + 'static) {
        self.frame.register(UnitOutcome::Committed, Box::new(hook));
    }

    /// Runs `hook` once the unit of work has rolled back (by an error, a panic, a timeout, a failed
    /// commit of its first database, or its future being dropped).
    pub fn after_rollback(&self, hook: impl FnOnce() + Send + 'static) {
        self.frame.register(UnitOutcome::RolledBack, Box::new(hook));
    }

    /// Runs `handler` with the per-database report when the unit of work ends with a partial,
    /// decided (two-phase, not applied everywhere yet) or unknown outcome: the case where neither
    /// [`after_commit`](Self::after_commit) nor [`after_rollback`](Self::after_rollback) hooks
    /// run, because neither describes what happened. It runs after the unit's lost answers were
    /// resolved as far as they could be, also when the scope's future was dropped during the final
    /// commits (the background task that finishes them runs it). Discarded, like the other hooks,
    /// if the savepoint or joined scope this handle belongs to rolls back.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, Error};
    ///
    /// ConnectionManager::configure("report_doc", "sqlite::memory:").await?;
    /// ConnectionManager::using("report_doc")
    ///     .transaction(async |tx| {
    ///         tx.on_partial_outcome(|report| {
    ///             eprintln!("unit {} needs attention: {:?}", report.unit, report.outcomes);
    ///         });
    ///         Ok::<_, Error>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn on_partial_outcome(&self, handler: impl FnOnce(&PartialCommit) + Send + 'static) {
        self.frame
            .unit
            .register_report_handler(self.frame.path.clone(), Box::new(handler));
    }

    /// The id of the unit of work this scope belongs to: the id its events, its `tracing` events,
    /// its commit markers and its error reports carry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::ConnectionManager;
    ///
    /// ConnectionManager::configure("unit_id_doc", "sqlite::memory:").await?;
    /// let id = ConnectionManager::using("unit_id_doc")
    ///     .transaction(async |tx| Ok::<_, activerecord::Error>(tx.unit_id().clone()))
    ///     .await?;
    /// assert!(!id.as_str().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn unit_id(&self) -> &UnitId {
        self.frame.unit.id()
    }

    /// Runs SQL text with no parameters in the transaction. Never put values into this text.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        self.target(None)?.execute_text(sql).await
    }
}

impl Resolve for Tx {
    fn target(&self, _: Option<&'static str>) -> Result<Target<'_>> {
        Ok(Target::Tx(Cow::Borrowed(&self.frame.participant.tx)))
    }
}

/// The innermost open scope of the task on `database` (on any database for `None`).
pub(crate) fn innermost_frame(database: Option<&str>) -> Option<Frame> {
    SCOPES
        .try_with(|stack| {
            stack
                .0
                .iter()
                .rev()
                .find(|frame| database.is_none_or(|name| frame.participant.name() == name))
                .cloned()
        })
        .ok()
        .flatten()
}

/// A `requires_new` write scope on a SQLite file whose write lock an open scope of this task
/// already holds would wait for that lock until `busy_timeout` and fail with "database is locked":
/// the holder cannot commit before the new scope ends. Refused at once instead.
fn refuse_second_sqlite_writer(name: &str) -> Result<()> {
    let database = ConnectionManager::get(name)?;
    let Some(file) = database.sqlite_file() else {
        return Ok(());
    };
    let holder = SCOPES
        .try_with(|stack| {
            stack
                .0
                .iter()
                .map(|frame| &frame.participant)
                .find(|p| p.holds_write_lock() && p.database().sqlite_file() == Some(file))
                .map(|p| p.name().to_owned())
        })
        .ok()
        .flatten();
    match holder {
        Some(holder) => Err(Error::SqliteWriterBusy {
            connection: name.to_owned(),
            holder,
        }),
        None => Ok(()),
    }
}

/// Runs `work` with no scope open in the task: model calls in it run in autocommit or open units
/// of their own, never joining the caller's.
pub(crate) async fn outside_every_scope<T>(work: impl Future<Output = T>) -> T {
    SCOPES.scope(Stack(Vec::new()), work).await
}

tokio::task_local! {
    /// The open scopes of the current task, outermost first.
    static SCOPES: Stack;
}

#[derive(Clone)]
struct Stack(Vec<Frame>);

impl Stack {
    fn with(&self, frame: Frame) -> Stack {
        let mut frames = self.0.clone();
        frames.push(frame);
        Stack(frames)
    }
}

/// One open scope: its unit of work, its database's transaction, and where it is nested.
#[derive(Clone)]
pub(crate) struct Frame {
    unit: Arc<UnitOfWork<Participant>>,
    pub(crate) participant: Arc<Participant>,
    /// The ids of this frame and the frames it is nested in, innermost last.
    path: Arc<[u64]>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("connection", &self.participant.name())
            .field("unit", self.unit.id())
            .field("path", &self.path)
            .finish()
    }
}

impl Frame {
    fn new(unit: Arc<UnitOfWork<Participant>>, participant: Arc<Participant>, enclosing: Option<&Frame>) -> Frame {
        let id = unit.next_frame_id();
        let path = match enclosing {
            Some(parent) if Arc::ptr_eq(&parent.unit, &unit) => parent.path.iter().copied().chain([id]).collect(),
            _ => Arc::from([id]),
        };
        Frame {
            unit,
            participant,
            path,
        }
    }

    fn id(&self) -> u64 {
        *self.path.last().expect("a frame path is never empty")
    }

    fn register(&self, on: UnitOutcome, run: Box<dyn FnOnce() + Send>) {
        self.unit.register_hook(self.path.clone(), on, run);
    }
}

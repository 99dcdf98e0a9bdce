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
//! - Model calls through [`Using`] or [`Ambient`](crate::Ambient) use the innermost open scope of
//!   their database in the current task. The scopes of a task do not follow work into
//!   `tokio::spawn`: a spawned task starts with none open, so its model calls run in autocommit.

mod manage;
mod participant;

pub(crate) use participant::{Finish, Participant, PooledConnection};

use crate::connection::{ConnectionManager, Database};
use crate::error::{Error, Result};
use crate::executor::{Executor, Target, Using};
use crate::two_phase::{BranchId, Coordinator};
use futures_util::FutureExt;
use std::borrow::Cow;
use std::fmt;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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

/// How a scope opens its transaction. Set through the builder methods of [`Using`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ScopeOptions {
    pub(crate) isolation: Option<Isolation>,
    pub(crate) read_only: bool,
    timeout: Option<Duration>,
    requires_new: bool,
    pub(crate) two_phase: bool,
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
        let joined = enclosing
            .as_ref()
            .filter(|_| !self.options.requires_new)
            .map(|frame| frame.root.clone());
        match joined {
            None => self.run_root(body).await,
            Some(root) => match root.participant(&self.name) {
                Some(participant) => run_savepoint(root, participant, enclosing.as_ref(), &self.options, body).await,
                None => self.run_joined(root, enclosing.as_ref(), body).await,
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
        let two_phase = match self.options.two_phase {
            true => {
                let coordinator = Coordinator::installed()?;
                let gtrid = coordinator.new_gtrid();
                Some((coordinator, gtrid))
            }
            false => None,
        };
        let branch = two_phase.as_ref().map(|(_, gtrid)| BranchId::new(gtrid, 0));
        let participant = Participant::begin(database, &self.options, branch).await?;
        let root = Arc::new(Root::new(participant.clone(), two_phase));
        // A unit of work of its own: its frames' paths start afresh.
        let frame = Frame::new(root.clone(), participant, None);
        match run_body(frame, &self.options, body).await {
            BodyOutcome::Returned(Ok(value)) => {
                root.commit_all().await?;
                root.run_hooks(Outcome::Committed);
                Ok(value)
            }
            BodyOutcome::Returned(Err(e)) => {
                root.rollback_all().await;
                Err(e)
            }
            BodyOutcome::TimedOut(error) => {
                root.rollback_all().await;
                Err(error.into())
            }
            BodyOutcome::Panicked(payload) => {
                root.rollback_all().await;
                resume_unwind(payload)
            }
        }
    }

    /// A scope on a database the unit of work does not have open yet: begins there and joins the
    /// root, which commits it at its end. Its own failure rolls back only its own transaction.
    async fn run_joined<F, T, E>(&self, root: Arc<Root>, enclosing: Option<&Frame>, body: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
        E: From<Error>,
    {
        let participant =
            Participant::begin(ConnectionManager::get(&self.name)?, &self.options, root.next_branch()).await?;
        root.join(participant.clone());
        let frame = Frame::new(root.clone(), participant.clone(), enclosing);
        let frame_id = frame.id();
        let outcome = run_body(frame, &self.options, body).await;
        if !matches!(outcome, BodyOutcome::Returned(Ok(_))) {
            root.leave(&participant);
            root.discard_hooks(frame_id);
            Participant::rollback_each(std::slice::from_ref(&participant)).await;
        }
        outcome.into_result()
    }
}

/// A scope nested in a transaction already open on its database: a savepoint.
async fn run_savepoint<F, T, E>(
    root: Arc<Root>,
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
    let frame = Frame::new(root.clone(), participant.clone(), enclosing);
    let frame_id = frame.id();
    let outcome = run_body(frame, options, body).await;
    if matches!(outcome, BodyOutcome::Returned(Ok(_))) {
        participant.release(&savepoint).await?;
    } else {
        root.discard_hooks(frame_id);
        participant.rollback_to(&savepoint).await?;
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
    let connection = frame.participant.database.name().to_owned();
    let mut tx = Tx { frame };
    let scoped = SCOPES.scope(stack, body(&mut tx));
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
        &self.frame.participant.database
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
        self.frame.register(Outcome::Committed, Box::new(hook));
    }

    /// Runs `hook` once the unit of work has rolled back (by an error, a panic, a timeout, a failed
    /// commit of its first database, or its future being dropped).
    pub fn after_rollback(&self, hook: impl FnOnce() + Send + 'static) {
        self.frame.register(Outcome::RolledBack, Box::new(hook));
    }

    /// Runs SQL text with no parameters in the transaction. Never put values into this text.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        self.target(None)?.execute_text(sql).await
    }
}

impl Executor for Tx {
    fn target(&self, _: Option<&'static str>) -> Result<Target<'_>> {
        Ok(Target::Tx(Cow::Borrowed(&self.frame.participant)))
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
#[doc(hidden)]
#[derive(Clone)]
pub struct Frame {
    root: Arc<Root>,
    pub(crate) participant: Arc<Participant>,
    /// The ids of this frame and the frames it is nested in, innermost last.
    path: Arc<[u64]>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("connection", &self.participant.name())
            .field("path", &self.path)
            .finish()
    }
}

impl Frame {
    fn new(root: Arc<Root>, participant: Arc<Participant>, enclosing: Option<&Frame>) -> Frame {
        let id = root.next_frame.fetch_add(1, Ordering::Relaxed);
        let path = match enclosing {
            Some(parent) if Arc::ptr_eq(&parent.root, &root) => parent.path.iter().copied().chain([id]).collect(),
            _ => Arc::from([id]),
        };
        Frame {
            root,
            participant,
            path,
        }
    }

    fn id(&self) -> u64 {
        *self.path.last().expect("a frame path is never empty")
    }

    fn register(&self, on: Outcome, run: Box<dyn FnOnce() + Send>) {
        lock(&self.root.hooks).push(Hook {
            path: self.path.clone(),
            on,
            run,
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    RolledBack,
}

struct Hook {
    path: Arc<[u64]>,
    on: Outcome,
    run: Box<dyn FnOnce() + Send>,
}

/// A unit of work: the outermost scope and every database that joined it.
struct Root {
    /// Open transactions in the order they began; the outermost scope's own comes first.
    participants: Mutex<Vec<Arc<Participant>>>,
    /// The coordinator and global transaction id, when the unit commits in two phases.
    two_phase: Option<(Coordinator, String)>,
    /// How many branches have begun (two-phase branch numbers are never reused).
    branches: AtomicUsize,
    hooks: Mutex<Vec<Hook>>,
    next_frame: AtomicU64,
    /// Whether the outcome is known and its hooks have run.
    ended: AtomicBool,
    /// Whether the best-effort final commits are under way.
    committing: AtomicBool,
    /// How many participants the final commits have committed so far.
    committed: AtomicUsize,
}

impl Root {
    fn new(first: Arc<Participant>, two_phase: Option<(Coordinator, String)>) -> Root {
        Root {
            participants: Mutex::new(vec![first]),
            two_phase,
            branches: AtomicUsize::new(1),
            hooks: Mutex::new(Vec::new()),
            next_frame: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            committing: AtomicBool::new(false),
            committed: AtomicUsize::new(0),
        }
    }

    fn participant(&self, database: &str) -> Option<Arc<Participant>> {
        lock(&self.participants).iter().find(|p| p.name() == database).cloned()
    }

    /// The two-phase branch of the next database to join, if the unit is two-phase.
    fn next_branch(&self) -> Option<BranchId> {
        let (_, gtrid) = self.two_phase.as_ref()?;
        Some(BranchId::new(gtrid, self.branches.fetch_add(1, Ordering::Relaxed)))
    }

    fn join(&self, participant: Arc<Participant>) {
        lock(&self.participants).push(participant);
    }

    fn leave(&self, participant: &Arc<Participant>) {
        lock(&self.participants).retain(|p| !Arc::ptr_eq(p, participant));
    }

    fn discard_hooks(&self, frame_id: u64) {
        lock(&self.hooks).retain(|hook| !hook.path.contains(&frame_id));
    }

    /// Commits every participant in turn. When one fails, the rest are rolled back; if an earlier
    /// one had already committed, the result is a partial commit.
    async fn commit_all(&self) -> Result<()> {
        // The participants stay listed until the end, so that a cancellation during the commits
        // can still say which databases had committed.
        let participants = lock(&self.participants).clone();
        let outcome = match &self.two_phase {
            Some((coordinator, gtrid)) if participants.len() > 1 => {
                let outcome = coordinator.commit(gtrid, &participants).await;
                match &outcome {
                    // The decision is made but not every branch has committed: neither set of
                    // hooks describes that yet.
                    Err(Error::InDoubt { .. }) => self.ended.store(true, Ordering::SeqCst),
                    Err(_) => self.run_hooks(Outcome::RolledBack),
                    Ok(()) => {}
                }
                outcome
            }
            _ => self.commit_each(&participants).await,
        };
        lock(&self.participants).clear();
        outcome
    }

    /// The best-effort final commits: one database after another.
    async fn commit_each(&self, participants: &[Arc<Participant>]) -> Result<()> {
        self.committing.store(true, Ordering::SeqCst);
        for (i, participant) in participants.iter().enumerate() {
            if let Err(cause) = participant.finish(Finish::Commit).await {
                self.committing.store(false, Ordering::SeqCst);
                let rest = &participants[i + 1..];
                Participant::rollback_each(rest).await;
                if i == 0 {
                    self.run_hooks(Outcome::RolledBack);
                    return Err(cause);
                }
                let names = |ps: &[Arc<Participant>]| ps.iter().map(|p| p.name().to_owned()).collect();
                let partial = crate::error::PartialCommit {
                    committed: names(&participants[..i]),
                    failed: participant.name().to_owned(),
                    rolled_back: names(rest),
                    cause,
                };
                tracing::error!(
                    committed = ?partial.committed,
                    failed = %partial.failed,
                    rolled_back = ?partial.rolled_back,
                    cause = %partial.cause,
                    "partial commit: the databases of one unit of work disagree and need reconciliation"
                );
                // The outcome is known: neither set of hooks applies to a mixed outcome.
                self.ended.store(true, Ordering::SeqCst);
                return Err(Error::PartialCommit(Box::new(partial)));
            }
            self.committed.store(i + 1, Ordering::SeqCst);
        }
        self.committing.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn rollback_all(&self) {
        let participants = std::mem::take(&mut *lock(&self.participants));
        Participant::rollback_each(&participants).await;
        self.run_hooks(Outcome::RolledBack);
    }

    /// Runs the hooks registered for `outcome`, once.
    fn run_hooks(&self, outcome: Outcome) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let hooks = std::mem::take(&mut *lock(&self.hooks));
        for hook in hooks.into_iter().filter(|h| h.on == outcome) {
            (hook.run)();
        }
    }
}

impl Drop for Root {
    /// A unit of work dropped before its end (its future was cancelled): its open connections are
    /// closed as they drop, which rolls their work back. Dropped in the middle of the final
    /// commits, some databases may have committed: that is a partial commit nobody can be told of
    /// by a return value, so it is reported as an error event.
    fn drop(&mut self) {
        let committed = self.committed.load(Ordering::SeqCst);
        match self.committing.load(Ordering::SeqCst) {
            true if committed > 0 => {
                self.ended.store(true, Ordering::SeqCst);
                let participants = lock(&self.participants);
                let committed: Vec<&str> = participants[..committed].iter().map(|p| p.name()).collect();
                tracing::error!(
                    ?committed,
                    "partial commit: a unit of work was cancelled during its final commits; the databases after those committed were rolled back and need reconciliation"
                );
            }
            _ => self.run_hooks(Outcome::RolledBack),
        }
    }
}

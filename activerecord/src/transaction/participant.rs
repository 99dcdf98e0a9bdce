//! One database's open transaction within a unit of work: how it begins, nests savepoints, takes
//! part in two-phase commit as a branch, and ends; its commit marker; and how the outcome of a
//! `COMMIT` or `PREPARE` whose answer was lost is found out.
//!
//! Guarantees: a transaction that wrote, on a database with the marker table, commits with the
//! unit's marker in the same round trip as its `COMMIT` (one text batch). An outcome is resolved
//! only after the session that sent the `COMMIT` is gone (fenced from the control connection),
//! then by a marker lookup; a prepared branch whose `PREPARE` answer was lost is rolled back by
//! its id once its session is gone. Each within [`RESOLVE_WITHIN`]; past it the outcome stays
//! unknown.

use super::ScopeOptions;
use super::events::UnitId;
use super::markers::{RESOLVE_WITHIN, now_ms, outcome_from_marker};
use super::unit::{Branch, Joining};
use crate::backend::{Backend, BranchId, Finish, insert_marker};
use crate::connection::{Database, OpenTransaction, UnitTag};
use crate::error::{DatabaseOutcome, Error, Result};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// One database's open transaction within a unit of work.
pub(crate) struct Participant {
    /// The transaction and its connection, as model calls reach it.
    pub(crate) tx: Arc<OpenTransaction>,
    read_only: bool,
    next_savepoint: AtomicU64,
    /// The branch id, when the transaction takes part in two-phase commit.
    branch: Option<BranchId>,
    /// Whether the branch has been prepared (phase one done).
    prepared: AtomicBool,
    /// Whether a `PREPARE` was sent: if its answer was lost, the branch may be prepared.
    prepare_sent: AtomicBool,
    /// Whether the `COMMIT` carried the unit's marker.
    marked: AtomicBool,
    /// The lock-wait limit its scope asked for (see [`Using::lock_timeout`](super::Using::lock_timeout)).
    asked_lock_timeout: Option<Duration>,
    /// Whether its statements' lock waits are limited.
    lock_limited: AtomicBool,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("connection", &self.name())
            .field("branch", &self.branch)
            .finish()
    }
}

impl Participant {
    pub(crate) fn name(&self) -> &str {
        self.tx.name()
    }

    pub(crate) fn database(&self) -> &Database {
        self.tx.database()
    }

    /// Whether this is an open SQLite write transaction, which holds the file's one write lock
    /// (write scopes begin with `BEGIN IMMEDIATE`).
    pub(crate) fn holds_write_lock(&self) -> bool {
        self.database().backend() == Backend::Sqlite && !self.read_only && self.tx.may_be_open()
    }

    pub(crate) fn branch(&self) -> Option<&BranchId> {
        self.branch.as_ref()
    }

    /// `database`, about to take part in a unit of work, as its commit protocol sees it.
    pub(crate) fn joining(database: &Database) -> Joining<'_> {
        Joining {
            name: database.name(),
            can_prepare: database.backend().dialect().can_prepare(),
            has_markers: database.markers_enabled(),
        }
    }

    /// Opens a transaction on `database`; with a `branch`, one that can be prepared; with a
    /// `lock_limit`, one whose statements wait that long at most for a lock.
    pub(crate) async fn begin(
        database: Database,
        unit: &Arc<UnitTag>,
        options: &ScopeOptions,
        branch: Option<BranchId>,
        lock_limit: Option<Duration>,
    ) -> Result<Arc<Participant>> {
        if branch.is_some() && !database.backend().dialect().can_prepare() {
            return Err(Error::Configuration {
                connection: database.name().to_owned(),
                message: "SQLite cannot prepare a transaction: use PostgreSQL or MySQL/MariaDB for a branch you \
                          prepare yourself (in a two-phase scope, SQLite takes part as the commit point site)"
                    .to_owned(),
                source: None,
            });
        }
        let dialect = database.backend().dialect();
        let mut begin = dialect.begin(options.isolation, options.read_only, branch.as_ref());
        let limit = match lock_limit {
            Some(limit) => dialect.lock_wait_limit(limit).map(Cow::Owned),
            None => dialect.lock_wait_default().map(Cow::Borrowed),
        };
        begin.extend(limit);
        // A SQLite write transaction first queues for the file among this process's scopes, as
        // long as a lock wait may last (BEGIN IMMEDIATE waits no longer behind another process).
        let writer_wait = (dialect.has_single_writer() && !options.read_only)
            .then(|| lock_limit.unwrap_or_else(|| database.busy_timeout()));
        let tx = OpenTransaction::begin(database, begin, unit, writer_wait).await?;
        Ok(Arc::new(Participant {
            tx: Arc::new(tx),
            read_only: options.read_only,
            next_savepoint: AtomicU64::new(1),
            branch,
            prepared: AtomicBool::new(false),
            prepare_sent: AtomicBool::new(false),
            marked: AtomicBool::new(false),
            asked_lock_timeout: options.lock_timeout,
            lock_limited: AtomicBool::new(lock_limit.is_some()),
        }))
    }

    /// The lock-wait limit its scope asked for, if any.
    pub(crate) fn asked_lock_timeout(&self) -> Option<Duration> {
        self.asked_lock_timeout
    }

    /// Limits the lock waits of the rest of the transaction to the limit its scope asked for, else
    /// its connection's (when a second database joins the unit of work this one began), once. A failure is logged:
    /// the limit only protects, and the transaction's next statement reports a broken one.
    pub(crate) async fn limit_lock_waits(&self) {
        if self.lock_limited.swap(true, Ordering::SeqCst) {
            return;
        }
        let limit = self
            .asked_lock_timeout
            .unwrap_or_else(|| self.database().lock_timeout());
        let Some(statement) = self.database().backend().dialect().lock_wait_limit(limit) else {
            return;
        };
        if let Err(e) = self.raw(statement).await {
            tracing::warn!(connection = self.name(), error = %e, "could not limit lock waits");
        }
    }

    /// Runs transaction-control SQL on the open transaction.
    async fn raw(&self, sql: String) -> Result<()> {
        let mut slot = self.tx.lock().await;
        let conn = slot.as_mut().ok_or_else(|| self.tx.ended())?;
        self.tx.refuse_if_doomed()?;
        conn.execute_text(Cow::Owned(sql))
            .await
            .map_err(|e| Error::from_sqlx(self.name(), e))
    }

    pub(crate) async fn savepoint(&self) -> Result<String> {
        let name = format!(
            "activerecord_savepoint_{}",
            self.next_savepoint.fetch_add(1, Ordering::Relaxed)
        );
        self.raw(format!("SAVEPOINT {name}")).await?;
        Ok(name)
    }

    /// Keeps the work since `savepoint`, as part of the enclosing transaction.
    pub(crate) async fn release(&self, savepoint: &str) -> Result<()> {
        self.raw(format!("RELEASE SAVEPOINT {savepoint}")).await
    }

    /// Undoes the work since `savepoint`; on PostgreSQL this also makes a transaction that a
    /// failed statement aborted usable again.
    pub(crate) async fn rollback_to(&self, savepoint: &str) -> Result<()> {
        self.raw(format!("ROLLBACK TO SAVEPOINT {savepoint}")).await?;
        self.tx.set_aborted(false);
        self.release(savepoint).await
    }

    /// Phase one of two-phase commit: makes the branch durable and able to commit later, from any
    /// connection, even after a crash.
    pub(crate) async fn prepare(&self) -> Result<()> {
        let branch = self.branch.as_ref().expect("only two-phase branches are prepared");
        self.tx.refuse_if_doomed()?;
        if self.tx.is_aborted() {
            return Err(Error::Aborted {
                connection: self.name().to_owned(),
            });
        }
        let dialect = self.database().backend().dialect();
        let mut slot = self.tx.lock().await;
        let conn = slot.as_mut().ok_or_else(|| self.tx.ended())?;
        let error = |e: sqlx::Error| {
            dialect
                .prepare_error(self.name(), &e)
                .unwrap_or_else(|| Error::from_sqlx(self.name(), e))
        };
        self.prepare_sent.store(true, Ordering::SeqCst);
        for statement in dialect.prepare(branch) {
            conn.execute_text(statement).await.map_err(error)?;
        }
        if let Some(check) = dialect.prepared_check(branch) {
            // PREPARE TRANSACTION in an aborted transaction answers OK and prepares nothing: check
            // that the branch exists.
            if conn.fetch_count(check).await.map_err(error)? != 1 {
                return Err(Error::Aborted {
                    connection: self.name().to_owned(),
                });
            }
        }
        if dialect.prepare_frees_session() {
            // The prepared transaction lives on in the server; the session is free again.
            conn.mark_finished();
        }
        self.prepared.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Commits or rolls back (a prepared branch: phase two), and gives the connection back to the
    /// pool only when that worked. A `marker` statement runs in the same round trip, before the
    /// `COMMIT`: if it fails, the `COMMIT` is not run, and the connection is closed, which rolls
    /// the transaction back (MySQL keeps a transaction open after a failed statement: committing
    /// it anyway would commit without the marker).
    async fn end(&self, how: Finish, marker: Option<String>) -> Result<()> {
        let mut slot = self.tx.lock().await;
        let mut conn = slot.take().ok_or_else(|| self.tx.ended())?;
        if how == Finish::Commit {
            self.tx.refuse_if_doomed()?;
        }
        if how == Finish::Commit && self.tx.is_aborted() {
            return Err(Error::Aborted {
                connection: self.name().to_owned(),
            });
        }
        let prepared = self.prepared.load(Ordering::SeqCst);
        let dialect = self.database().backend().dialect();
        let statements = dialect.end(how, self.read_only, self.branch.as_ref(), prepared);
        let error = |e| Error::from_sqlx(self.name(), e);
        match marker {
            Some(marker) => {
                let batch = std::iter::once(Cow::Owned(marker))
                    .chain(statements)
                    .collect::<Vec<_>>();
                self.marked.store(true, Ordering::SeqCst);
                conn.execute_text(Cow::Owned(batch.join("; "))).await.map_err(error)?;
            }
            None => {
                for statement in statements {
                    conn.execute_text(statement).await.map_err(error)?;
                }
            }
        }
        // The connection may go back to the pool: not before a cancel aimed at this transaction's
        // statement has reached the server.
        self.tx.unit().cancel_settled().await;
        conn.mark_finished();
        // One that only read was committed first, and is given back at once: a write of the unit
        // (the decision log's, say) may need a connection from its pool.
        if how == Finish::Commit && self.tx.wrote() {
            self.tx.keep_until_released(conn);
        }
        Ok(())
    }

    /// Commits without a marker, or rolls back; a branch whose `PREPARE` answer was lost is rolled
    /// back by its id once its session is gone.
    pub(crate) async fn finish(&self, how: Finish) -> Result<()> {
        match (how, self.end(how, None).await) {
            (Finish::Rollback, Err(lost @ Error::ConnectionLost { .. }))
                if self.prepare_sent.load(Ordering::SeqCst) =>
            {
                self.rollback_lost_prepare(lost).await
            }
            (_, done) => done,
        }
    }

    /// The marker statement for unit `unit`'s one-phase `COMMIT`, when this transaction leaves
    /// one: it wrote, it commits in one phase (a prepared branch's fate is its unit's decision),
    /// and the database has the marker table. A two-phase unit's id is its global transaction id,
    /// so the marker of its commit point site is its decision.
    fn marker(&self, unit: &UnitId) -> Option<String> {
        self.commits_with_marker()
            .then(|| insert_marker(unit.as_str(), now_ms()))
    }

    fn commits_with_marker(&self) -> bool {
        !self.prepared.load(Ordering::SeqCst) && self.tx.wrote() && self.database().markers_enabled()
    }

    /// Finds out, within [`RESOLVE_WITHIN`], whether the `COMMIT` of unit `unit` whose answer was
    /// lost took effect: ends the session that sent it, waits until the server no longer has it,
    /// then looks for the unit's marker.
    async fn resolve_commit(&self, unit: &UnitId) -> DatabaseOutcome {
        if !self.tx.wrote() {
            // Nothing to commit: committed and rolled back are the same.
            return DatabaseOutcome::Committed;
        }
        let Some(session) = self.resolvable_session() else {
            let why = if self.marked.load(Ordering::SeqCst) {
                "its server session cannot be ended from another connection (SQLite), so the marker cannot be trusted yet"
            } else {
                "the transaction left no commit marker (run activerecord::migrate::run on this connection to create the marker table)"
            };
            tracing::warn!(unit = %unit, connection = self.name(), "the outcome of a lost COMMIT answer cannot be found out: {why}");
            return DatabaseOutcome::Unknown;
        };
        outcome_from_marker(self.database(), session, unit.as_str()).await
    }

    /// Rolls back a branch whose `PREPARE` was sent and whose connection broke: it may be
    /// prepared. Once its session is gone (fenced), the branch is rolled back by its id from the
    /// control connection; a branch the server does not know was not prepared.
    async fn rollback_lost_prepare(&self, lost: Error) -> Result<()> {
        let (Some(branch), Some(session)) = (&self.branch, self.tx.session()) else {
            return Err(lost);
        };
        let database = self.database();
        let finish = database
            .backend()
            .dialect()
            .finish_prepared(Finish::Rollback, &branch.gtrid, &branch.bqual());
        tokio::time::timeout(RESOLVE_WITHIN, async {
            database.fence(session).await?;
            database.finish_prepared_elsewhere(finish).await
        })
        .await
        .unwrap_or(Err(lost))
    }
}

impl Branch for Participant {
    fn name(&self) -> &str {
        self.tx.name()
    }
    fn release(&self) {
        self.tx.release();
    }
    async fn prepare(&self) -> Result<()> {
        Participant::prepare(self).await
    }
    async fn commit(&self, unit: &UnitId) -> Result<()> {
        self.end(Finish::Commit, self.marker(unit)).await
    }
    async fn rollback(&self) -> Result<()> {
        self.finish(Finish::Rollback).await
    }
    async fn resolve(&self, unit: &UnitId) -> DatabaseOutcome {
        self.resolve_commit(unit).await
    }
    fn resolvable_session(&self) -> Option<u64> {
        self.tx.session().filter(|_| self.marked.load(Ordering::SeqCst))
    }
    fn wrote(&self) -> bool {
        self.tx.wrote()
    }
    fn is_branch(&self) -> bool {
        self.branch.is_some()
    }
    fn commits_with_marker(&self) -> bool {
        Participant::commits_with_marker(self)
    }
}

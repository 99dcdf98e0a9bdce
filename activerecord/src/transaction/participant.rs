//! One database's open transaction within a unit of work: how it begins, nests savepoints, takes
//! part in two-phase commit as a branch, and ends; and the connection guard that closes a
//! connection rather than pool it with a transaction open.

use super::ScopeOptions;
use super::unit::Branch;
use crate::backend::{Backend, BranchId, Finish};
use crate::connection::{Database, OpenTransaction};
use crate::error::{Error, Result};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

    /// Opens a transaction on `database`; with a `branch`, one that can be prepared.
    pub(crate) async fn begin(
        database: Database,
        options: &ScopeOptions,
        branch: Option<BranchId>,
    ) -> Result<Arc<Participant>> {
        if branch.is_some() && !database.backend().dialect().can_prepare() {
            return Err(Error::Configuration {
                connection: database.name().to_owned(),
                message: "SQLite cannot prepare a transaction, so it cannot take part in two-phase commit; \
                          use PostgreSQL or MySQL/MariaDB for every database of a two-phase scope, or a \
                          best-effort scope"
                    .to_owned(),
                source: None,
            });
        }
        let begin = database
            .backend()
            .dialect()
            .begin(options.isolation, options.read_only, branch.as_ref());
        let tx = OpenTransaction::begin(database, begin).await?;
        Ok(Arc::new(Participant {
            tx: Arc::new(tx),
            read_only: options.read_only,
            next_savepoint: AtomicU64::new(1),
            branch,
            prepared: AtomicBool::new(false),
        }))
    }

    /// Runs transaction-control SQL on the open transaction.
    async fn raw(&self, sql: String) -> Result<()> {
        let mut slot = self.tx.lock().await;
        let conn = slot.as_mut().ok_or_else(|| self.tx.ended())?;
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
    /// pool only when that worked.
    pub(crate) async fn finish(&self, how: Finish) -> Result<()> {
        let mut slot = self.tx.lock().await;
        let mut conn = slot.take().ok_or_else(|| self.tx.ended())?;
        if how == Finish::Commit && self.tx.is_aborted() {
            return Err(Error::Aborted {
                connection: self.name().to_owned(),
            });
        }
        let prepared = self.prepared.load(Ordering::SeqCst);
        let dialect = self.database().backend().dialect();
        for statement in dialect.end(how, self.read_only, self.branch.as_ref(), prepared) {
            conn.execute_text(statement)
                .await
                .map_err(|e| Error::from_sqlx(self.name(), e))?;
        }
        conn.mark_finished();
        Ok(())
    }
}

impl Branch for Participant {
    fn name(&self) -> &str {
        self.tx.name()
    }
    async fn prepare(&self) -> Result<()> {
        Participant::prepare(self).await
    }
    async fn commit(&self) -> Result<()> {
        self.finish(Finish::Commit).await
    }
    async fn rollback(&self) -> Result<()> {
        self.finish(Finish::Rollback).await
    }
}

//! One database's open transaction within a unit of work: how it begins, nests savepoints, takes
//! part in two-phase commit as a branch, and ends; and the connection guard that closes a
//! connection rather than pool it with a transaction open.

use super::ScopeOptions;
use super::unit::Branch;
use crate::connection::{Backend, Database, OpenTransaction, PooledConnection};
use crate::error::{Error, Result};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The id of one branch (one database's transaction) of a global transaction: the global id
/// (checked by its maker to be a safe SQL literal) and the branch number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BranchId {
    pub(crate) gtrid: String,
    pub(crate) branch: usize,
}

impl BranchId {
    /// Branch number `branch` of global transaction `gtrid`.
    pub(crate) fn new(gtrid: &str, branch: usize) -> BranchId {
        BranchId {
            gtrid: gtrid.to_owned(),
            branch,
        }
    }

    /// The PostgreSQL gid (one per branch, unique in the cluster).
    pub(crate) fn postgres_gid(&self) -> String {
        format!("{}-{}", self.gtrid, self.branch)
    }

    /// The XA xid literal: `'gtrid','bqual'`.
    pub(crate) fn xa_xid(&self) -> String {
        format!("'{}','{}'", self.gtrid, self.branch)
    }
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Commit,
    Rollback,
}

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
        if branch.is_some() && database.backend() == Backend::Sqlite {
            return Err(Error::Configuration {
                connection: database.name().to_owned(),
                message: "SQLite cannot prepare a transaction, so it cannot take part in two-phase commit; \
                          use PostgreSQL or MySQL/MariaDB for every database of a two-phase scope, or a \
                          best-effort scope"
                    .to_owned(),
                source: None,
            });
        }
        let begin = begin_statements(database.backend(), options, branch.as_ref());
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
        let mut slot = self.tx.lock().await;
        let conn = slot.as_mut().ok_or_else(|| self.tx.ended())?;
        let error = |e| Error::from_sqlx(self.name(), e);
        match &mut conn.conn {
            PooledConnection::Postgres(c) => {
                let gid = branch.postgres_gid();
                use sqlx::Executor as _;
                c.execute(sqlx::AssertSqlSafe(format!("PREPARE TRANSACTION '{gid}'")))
                    .await
                    .map_err(|e| prepared_transactions_disabled(self.name(), &e).unwrap_or_else(|| error(e)))?;
                // PREPARE TRANSACTION in an aborted transaction answers OK and prepares nothing:
                // check that the branch exists.
                let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_prepared_xacts WHERE gid = $1")
                    .bind(&gid)
                    .fetch_one(&mut **c)
                    .await
                    .map_err(error)?;
                if found != 1 {
                    return Err(Error::Aborted {
                        connection: self.name().to_owned(),
                    });
                }
                // The prepared transaction lives on in the server; the session is free again.
                conn.mark_finished();
            }
            PooledConnection::MySql(_) => {
                let xid = branch.xa_xid();
                conn.execute_text(format!("XA END {xid}").into()).await.map_err(error)?;
                conn.execute_text(format!("XA PREPARE {xid}").into())
                    .await
                    .map_err(error)?;
            }
            PooledConnection::Sqlite(_) => unreachable!("SQLite branches are refused at begin"),
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
        for statement in self.finish_statements(how) {
            conn.execute_text(statement)
                .await
                .map_err(|e| Error::from_sqlx(self.name(), e))?;
        }
        if self.read_only && self.database().backend() == Backend::Sqlite {
            conn.execute_text("PRAGMA query_only = OFF".into())
                .await
                .map_err(|e| Error::from_sqlx(self.name(), e))?;
        }
        conn.mark_finished();
        Ok(())
    }

    fn finish_statements(&self, how: Finish) -> Vec<Cow<'static, str>> {
        let prepared = self.prepared.load(Ordering::SeqCst);
        let verb = match how {
            Finish::Commit => "COMMIT",
            Finish::Rollback => "ROLLBACK",
        };
        match (self.database().backend(), &self.branch) {
            (Backend::Postgres, Some(branch)) if prepared => {
                vec![format!("{verb} PREPARED '{}'", branch.postgres_gid()).into()]
            }
            (Backend::MySql, Some(branch)) => {
                let xid = branch.xa_xid();
                match (prepared, how) {
                    (true, _) => vec![format!("XA {verb} {xid}").into()],
                    // Not prepared (phase one failed elsewhere, or the only branch): one phase.
                    (false, Finish::Commit) => {
                        vec![
                            format!("XA END {xid}").into(),
                            format!("XA COMMIT {xid} ONE PHASE").into(),
                        ]
                    }
                    (false, Finish::Rollback) => {
                        vec![format!("XA END {xid}").into(), format!("XA ROLLBACK {xid}").into()]
                    }
                }
            }
            _ => vec![verb.into()],
        }
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

/// PostgreSQL's answer to PREPARE TRANSACTION when `max_prepared_transactions` is 0, as an error
/// that says how to fix it.
fn prepared_transactions_disabled(connection: &str, e: &sqlx::Error) -> Option<Error> {
    let db = e.as_database_error()?;
    (db.code().as_deref() == Some("55000") && db.message().contains("prepared transactions are disabled")).then(|| {
        Error::Configuration {
            connection: connection.to_owned(),
            message: "PostgreSQL has max_prepared_transactions = 0, so it cannot take part in two-phase commit: \
                      set max_prepared_transactions (in postgresql.conf) to at least the number of two-phase \
                      scopes run at once, and restart the server"
                .to_owned(),
            source: None,
        }
    })
}

fn begin_statements(backend: Backend, options: &ScopeOptions, branch: Option<&BranchId>) -> Vec<Cow<'static, str>> {
    let access = if options.read_only { " READ ONLY" } else { "" };
    match backend {
        // A deferred BEGIN that reads and then writes fails at once when another connection wrote
        // in between (SQLITE_BUSY_SNAPSHOT); taking the write lock up front waits instead.
        Backend::Sqlite if options.read_only => vec!["BEGIN DEFERRED".into(), "PRAGMA query_only = ON".into()],
        Backend::Sqlite => vec!["BEGIN IMMEDIATE".into()],
        Backend::Postgres => match (options.isolation, options.read_only) {
            (None, false) => vec!["BEGIN".into()],
            (isolation, _) => {
                let isolation = isolation
                    .map(|i| format!(" ISOLATION LEVEL {}", i.sql()))
                    .unwrap_or_default();
                vec![format!("BEGIN{isolation}{access}").into()]
            }
        },
        Backend::MySql => {
            let mut statements = Vec::new();
            if let Some(level) = options.isolation {
                statements.push(format!("SET TRANSACTION ISOLATION LEVEL {}", level.sql()).into());
            }
            statements.push(match (branch, options.read_only) {
                (Some(branch), _) => format!("XA START {}", branch.xa_xid()).into(),
                (None, false) => "START TRANSACTION".into(),
                (None, true) => "START TRANSACTION READ ONLY".into(),
            });
            statements
        }
    }
}

//! One database's open transaction, as every layer above reaches it: its connection, taken from
//! the pool for the transaction's whole life, and whether a failed statement aborted it.
//!
//! Guarantees: a connection goes back to its pool only once its transaction is known to be over.
//! Dropped while the transaction may still be open (its future cancelled at any await point, a
//! commit or rollback failed), the connection is closed instead, and its server session is ended
//! from the control connection, so that a statement it was running (perhaps waiting on a lock)
//! stops at once and its locks are released: nobody ever reuses a connection inside someone
//! else's transaction, and no abandoned statement keeps running on the server.
//!
//! The server's id of the session is learned in the same round trip as `BEGIN` (sqlx keeps no data
//! of ours per physical connection, and its own process id is private).

use super::waits::{self, Holding, UnitTag, Waiting, WriterGuard, WriterWait};
use super::{Database, Pool};
use crate::error::{Error, Result};
use sqlx::pool::PoolConnection;
use sqlx::{MySql, Postgres, Sqlite};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One database's open transaction: see the [module docs](self).
pub(crate) struct OpenTransaction {
    database: Database,
    /// The connection, while the transaction is open.
    slot: tokio::sync::Mutex<Option<TxConnection>>,
    /// The connection once its transaction committed, kept until its unit of work settles: see
    /// [`keep_until_released`](Self::keep_until_released).
    committed: std::sync::Mutex<Option<TxConnection>>,
    /// Set when a statement failed on PostgreSQL, which then refuses every statement until a
    /// rollback, and answers COMMIT (and PREPARE TRANSACTION) by rolling back.
    aborted: AtomicBool,
    /// Set when a statement that may write ran: such a transaction leaves a commit marker.
    wrote: AtomicBool,
    /// Set when the server rolled back the whole transaction (MySQL's deadlock victim).
    rolled_back_by_server: AtomicBool,
    /// The server's id of the session (PostgreSQL backend pid, MySQL connection id).
    session: Option<u64>,
    /// The unit of work the transaction belongs to, as the deadlock detector sees it.
    unit: Arc<UnitTag>,
    /// The session's registration with the deadlock detector, once the unit spans several
    /// databases.
    holding: std::sync::Mutex<Option<Holding>>,
}

impl std::fmt::Debug for OpenTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenTransaction")
            .field("connection", &self.name())
            .finish()
    }
}

impl OpenTransaction {
    /// Takes a connection from `database`'s pool and runs `begin` (the statements that open the
    /// transaction) on it, for unit `unit`. With `writer_wait` (a SQLite write transaction), first
    /// waits that long at most for the file's write lock among the scopes of this process.
    pub(crate) async fn begin(
        database: Database,
        begin: impl IntoIterator<Item = Cow<'static, str>>,
        unit: &Arc<UnitTag>,
        writer_wait: Option<Duration>,
    ) -> Result<OpenTransaction> {
        let writer = match writer_wait {
            Some(limit) => Some(Self::wait_for_writer(&database, unit, limit).await?),
            None => None,
        };
        let mut conn = TxConnection::acquire(&database).await?;
        conn.writer = writer;
        let mut batch: Vec<Cow<'static, str>> = begin.into_iter().collect();
        let session_query = database.backend().dialect().session_id_query();
        batch.extend(session_query.map(Cow::Borrowed));
        let session = conn
            .begin(batch.join("; "), session_query.is_some())
            .await
            .map_err(|e| Error::from_sqlx(database.name(), e))?;
        let tx = OpenTransaction {
            database,
            slot: tokio::sync::Mutex::new(Some(conn)),
            committed: std::sync::Mutex::new(None),
            aborted: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
            rolled_back_by_server: AtomicBool::new(false),
            session,
            unit: unit.clone(),
            holding: std::sync::Mutex::new(None),
        };
        if unit.is_watched() {
            tx.watch();
        }
        Ok(tx)
    }

    /// Waits at most `limit` for the SQLite file's write lock among this process's scopes.
    async fn wait_for_writer(database: &Database, unit: &Arc<UnitTag>, limit: Duration) -> Result<WriterGuard> {
        database
            .writer_lock()
            .acquire(unit, limit)
            .await
            .map_err(|ended| match ended {
                WriterWait::TimedOut => Error::LockTimeout {
                    connection: database.name().to_owned(),
                    source: None,
                },
                WriterWait::Chosen(waited) => Error::Deadlock {
                    connection: database.name().to_owned(),
                    waited,
                },
            })
    }

    /// Registers the transaction's session with the deadlock detector: its unit of work now spans
    /// several databases (see [`UnitTag::watch`]).
    pub(crate) fn watch(&self) {
        let Some(session) = self.session else {
            return;
        };
        let mut holding = self.holding.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if holding.is_none() {
            *holding = waits::hold(&self.database, session, &self.unit);
        }
    }

    /// The unit of work the transaction belongs to, as the deadlock detector sees it.
    pub(crate) fn unit(&self) -> &Arc<UnitTag> {
        &self.unit
    }

    /// Registers a statement that starts running on the transaction with the deadlock detector,
    /// until the returned value is dropped; `None` when it is not watched.
    pub(crate) fn statement_runs(&self) -> Option<Waiting> {
        waits::statement_runs(&self.database, self.session?, &self.unit)
    }

    /// [`Error::Deadlock`] once the deadlock detector chose the transaction's unit of work to
    /// give way.
    pub(crate) fn deadlock(&self) -> Option<Error> {
        self.unit.chosen().map(|waited| Error::Deadlock {
            connection: self.name().to_owned(),
            waited,
        })
    }

    /// The server's id of the transaction's session; `None` on SQLite.
    pub(crate) fn session(&self) -> Option<u64> {
        self.session
    }

    /// Records that a statement that may write ran in the transaction.
    pub(crate) fn note_write(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }

    /// Whether a statement that may write ran in the transaction.
    pub(crate) fn wrote(&self) -> bool {
        self.wrote.load(Ordering::Relaxed)
    }

    /// The database the transaction is open on.
    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    /// Its connection name.
    pub(crate) fn name(&self) -> &str {
        self.database.name()
    }

    /// The connection, `None` once the transaction has ended. Statements of one transaction run
    /// one at a time.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, Option<TxConnection>> {
        self.slot.lock().await
    }

    /// Keeps `conn`, whose transaction committed, until [`release`](Self::release) (once every
    /// database of its unit of work has settled, before hooks and events run) or until this
    /// handle is dropped, rather than giving it back to the pool at once: sqlx checks a connection
    /// it gets back with a round trip of its own, which would otherwise run while the unit's next
    /// database commits, and slow that commit down (by 3% to 4% of a two-database transfer here).
    /// A SQLite file's write lock among this process's scopes is given up at once.
    pub(crate) fn keep_until_released(&self, mut conn: TxConnection) {
        conn.writer = None;
        *self.committed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(conn);
    }

    /// Gives a connection kept by [`keep_until_released`](Self::keep_until_released) back to its
    /// pool.
    pub(crate) fn release(&self) {
        let kept = self
            .committed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(kept);
    }

    /// Whether the transaction may still be open (true while a statement runs on it).
    pub(crate) fn may_be_open(&self) -> bool {
        self.slot.try_lock().map_or(true, |slot| slot.is_some())
    }

    /// Whether a failed statement aborted the transaction (PostgreSQL).
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Records that the server rolled back the whole transaction: from now on it refuses every
    /// statement ([`refuse_if_doomed`](Self::refuse_if_doomed)).
    pub(crate) fn set_rolled_back_by_server(&self) {
        self.rolled_back_by_server.store(true, Ordering::SeqCst);
    }

    /// [`Error::RolledBackByServer`] once the server rolled back the whole transaction (a statement
    /// sent now would run outside it, in autocommit mode), [`Error::Deadlock`] once the deadlock
    /// detector chose its unit of work to give way.
    pub(crate) fn refuse_if_doomed(&self) -> Result<()> {
        if let Some(deadlock) = self.deadlock() {
            return Err(deadlock);
        }
        if self.rolled_back_by_server.load(Ordering::SeqCst) {
            return Err(Error::RolledBackByServer {
                connection: self.name().to_owned(),
            });
        }
        Ok(())
    }

    /// Marks the transaction as unable to commit, on any backend: its state is no longer known
    /// (a rollback to a savepoint failed).
    pub(crate) fn poison(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }

    /// Records that a failed statement aborted the transaction, where the backend aborts a
    /// transaction on any failed statement (PostgreSQL); a rollback to a savepoint clears it.
    pub(crate) fn set_aborted(&self, aborted: bool) {
        if !aborted || self.database.backend().dialect().aborts_on_error() {
            self.aborted.store(aborted, Ordering::SeqCst);
        }
    }

    /// The error for a statement sent after the transaction ended.
    pub(crate) fn ended(&self) -> Error {
        Error::TransactionEnded {
            connection: self.name().to_owned(),
        }
    }
}

/// A pooled connection that carries a transaction. Dropped while the transaction may still be open
/// (its future cancelled, a commit or rollback failed), it is closed instead of going back to the
/// pool, so that nobody reuses a connection inside someone else's transaction.
pub(crate) struct TxConnection {
    pub(crate) conn: PooledConnection,
    /// True from before BEGIN is sent until COMMIT or ROLLBACK succeeded.
    in_transaction: bool,
    database: Database,
    /// The server's id of the session, once `BEGIN` answered it.
    session: Option<u64>,
    /// The SQLite file's write lock among this process's scopes, for a write transaction.
    writer: Option<WriterGuard>,
}

pub(crate) enum PooledConnection {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
    MySql(PoolConnection<MySql>),
}

impl TxConnection {
    pub(crate) async fn acquire(database: &Database) -> Result<TxConnection> {
        let conn = match database.pool() {
            Pool::Sqlite(pool) => pool.acquire().await.map(PooledConnection::Sqlite),
            Pool::Postgres(pool) => pool.acquire().await.map(PooledConnection::Postgres),
            Pool::MySql(pool) => pool.acquire().await.map(PooledConnection::MySql),
        }
        .map_err(|e| Error::from_sqlx(database.name(), e))?;
        Ok(TxConnection {
            conn,
            in_transaction: true,
            database: database.clone(),
            session: None,
            writer: None,
        })
    }

    /// Runs the text batch that opens a transaction; with `session_query` (a server engine), its
    /// last statement answers the session id, which the connection keeps and returns.
    async fn begin(&mut self, batch: String, session_query: bool) -> Result<Option<u64>, sqlx::Error> {
        use sqlx::Row as _;
        if !session_query {
            self.execute_text(Cow::Owned(batch)).await?;
            return Ok(None);
        }
        let batch = sqlx::raw_sql(sqlx::AssertSqlSafe(batch));
        let session = match &mut self.conn {
            PooledConnection::Postgres(c) => batch
                .fetch_one(&mut **c)
                .await?
                .try_get::<i32, _>(0)
                .map(|id| id as u64),
            PooledConnection::MySql(c) => batch.fetch_one(&mut **c).await?.try_get::<u64, _>(0),
            PooledConnection::Sqlite(_) => unreachable!("SQLite has no server session to ask for"),
        }?;
        self.session = Some(session);
        Ok(self.session)
    }

    /// Runs SQL text, through the text protocol (XA statements cannot be prepared statements).
    /// The fixed statements are `'static`, so that sqlx need not copy them.
    pub(crate) async fn execute_text(&mut self, sql: Cow<'static, str>) -> Result<(), sqlx::Error> {
        use sqlx::Executor as _;
        let sql = sqlx::AssertSqlSafe(sql);
        match &mut self.conn {
            PooledConnection::Sqlite(c) => c.execute(sql).await.map(drop),
            PooledConnection::Postgres(c) => c.execute(sql).await.map(drop),
            PooledConnection::MySql(c) => c.execute(sql).await.map(drop),
        }
    }
}

impl TxConnection {
    /// Runs a query of one count (`SELECT COUNT(*) ...`) given as text.
    pub(crate) async fn fetch_count(&mut self, sql: String) -> Result<i64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql);
        match &mut self.conn {
            // Not kept as a prepared statement: its text differs for every unit.
            PooledConnection::Sqlite(c) => sqlx::query_scalar(sql).persistent(false).fetch_one(&mut **c).await,
            PooledConnection::Postgres(c) => sqlx::query_scalar(sql).persistent(false).fetch_one(&mut **c).await,
            PooledConnection::MySql(c) => sqlx::query_scalar(sql).persistent(false).fetch_one(&mut **c).await,
        }
    }

    /// Records that COMMIT or ROLLBACK succeeded (or that the transaction now lives on the server
    /// as a prepared one): the connection may go back to the pool.
    pub(crate) fn mark_finished(&mut self) {
        self.in_transaction = false;
    }
}

impl Drop for TxConnection {
    fn drop(&mut self) {
        if self.in_transaction {
            match &mut self.conn {
                PooledConnection::Sqlite(c) => c.close_on_drop(),
                PooledConnection::Postgres(c) => c.close_on_drop(),
                PooledConnection::MySql(c) => c.close_on_drop(),
            }
            if let Some(session) = self.session {
                self.database.end_abandoned_session(session);
            }
        }
    }
}

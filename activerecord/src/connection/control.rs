//! The control connection of a server database: one connection kept outside the pool, opened on
//! first use, through which the library ends sessions it abandoned and asks whether a unit of work
//! committed (its marker). It works when the pool is exhausted or its connections are stuck
//! (that is when it is needed), and it never carries a transaction.
//!
//! Guarantees: [`Database::fence`] returns only once the server no longer has the session, so a
//! `COMMIT` sent on it can no longer take effect; a failed control statement drops the control
//! connection, and the next use opens a new one.

use super::Database;
use super::database::Pool;
use crate::backend::{ask, count_markers};
use crate::error::{Error, Result};
use sqlx::{Connection as _, MySqlConnection, PgConnection};
use std::time::Duration;

/// How long [`Database::fence`] waits between two looks at the server's session list.
const FENCE_POLL: Duration = Duration::from_millis(2);

/// How long ending an abandoned session may take before the background task gives up on it.
const ABANDONED_WITHIN: Duration = Duration::from_secs(5);

/// The control connection's slot: `None` until first use, or after a failure.
#[derive(Default)]
pub(super) struct Control {
    slot: tokio::sync::Mutex<Option<ControlConnection>>,
}

enum ControlConnection {
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

/// What a control statement is expected to answer.
#[derive(Clone, Copy)]
enum Ask {
    /// Nothing (a statement).
    Nothing,
    /// One integer.
    Count,
    /// Rows of two integers.
    Pairs,
}

/// A control statement's answer, shaped as its [`Ask`].
enum Answer {
    Nothing,
    Count(i64),
    Pairs(Vec<(i64, i64)>),
}

impl Database {
    /// Runs one control statement on the control connection, opening it first if needed. A
    /// control connection found broken (the server ended it, say) is replaced and the statement
    /// sent once more: every control statement may safely run twice. SQLite has no server
    /// session: no control connection either.
    async fn control(&self, sql: String, ask: Ask) -> Result<Answer> {
        match self.control_once(&sql, ask).await {
            Err(Error::ConnectionLost { .. }) => self.control_once(&sql, ask).await,
            done => done,
        }
    }

    /// Runs a control query answering one integer.
    async fn control_count(&self, sql: String) -> Result<i64> {
        match self.control(sql, Ask::Count).await? {
            Answer::Count(count) => Ok(count),
            _ => unreachable!("a count was asked for"),
        }
    }

    async fn control_once(&self, sql: &str, ask: Ask) -> Result<Answer> {
        use sqlx::Executor as _;
        let mut slot = self.control_slot().slot.lock().await;
        // Out of the slot while the statement runs: if this future is dropped half way, the
        // connection (with an answer still on its way) is dropped too, never used again.
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => match self.pool() {
                Pool::Postgres(pool) => PgConnection::connect_with(&pool.connect_options())
                    .await
                    .map(ControlConnection::Postgres),
                Pool::MySql(pool) => MySqlConnection::connect_with(&pool.connect_options())
                    .await
                    .map(ControlConnection::MySql),
                Pool::Sqlite(_) => {
                    return Err(Error::Configuration {
                        connection: self.name().to_owned(),
                        message: "SQLite has no server session: nothing to end or look up from outside".to_owned(),
                        source: None,
                    });
                }
            }
            .map_err(|e| Error::from_sqlx(self.name(), e))?,
        };
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        // Not kept as prepared statements: their text differs from one call to the next.
        macro_rules! ask_on {
            ($conn:expr) => {
                match ask {
                    Ask::Count => sqlx::query_scalar(sql)
                        .persistent(false)
                        .fetch_one($conn)
                        .await
                        .map(Answer::Count),
                    Ask::Pairs => sqlx::query_as(sql)
                        .persistent(false)
                        .fetch_all($conn)
                        .await
                        .map(Answer::Pairs),
                    Ask::Nothing => $conn.execute(sql).await.map(|_| Answer::Nothing),
                }
            };
        }
        let answer = match &mut conn {
            ControlConnection::Postgres(c) => ask_on!(c),
            ControlConnection::MySql(c) => ask_on!(c),
        };
        let answer = answer.map_err(|e| Error::from_sqlx(self.name(), e));
        // A connection that is gone (or that the server ended) is not put back: the next
        // statement opens a new one.
        if !matches!(answer, Err(Error::ConnectionLost { .. })) {
            *slot = Some(conn);
        }
        answer
    }

    /// Ends server session `session` (the transaction it holds rolls back, the statement it runs
    /// stops) and returns once the server no longer lists it. Does not return while the session
    /// lives: bound it with a timeout. Needs the privilege to end the session (see
    /// `docs/transactions.md`, "Privileges").
    pub(crate) async fn fence(&self, session: u64) -> Result<()> {
        let dialect = self.backend().dialect();
        self.signal_session(dialect.terminate_session(session)).await?;
        while self.control_count(dialect.session_count(session)).await? > 0 {
            tokio::time::sleep(FENCE_POLL).await;
        }
        Ok(())
    }

    /// Ends server session `session` in the background, when a connection is dropped with its
    /// transaction open: its statement may be waiting on a lock, which the server would not notice
    /// the closed socket for (PostgreSQL keeps waiting; MariaDB until its lock-wait timeout).
    pub(crate) fn end_abandoned_session(&self, session: u64) {
        let database = self.clone();
        let spawned = super::background::spawn(async move {
            match tokio::time::timeout(ABANDONED_WITHIN, database.fence(session)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(connection = database.name(), session, error = %e, "could not end an abandoned session: the server ends it when it notices the closed connection")
                }
                Err(_) => tracing::warn!(
                    connection = database.name(),
                    session,
                    "an abandoned session did not end in time: the server ends it when it notices the closed connection"
                ),
            }
        });
        if spawned.is_none() {
            tracing::warn!(
                connection = self.name(),
                session,
                "no async runtime to end an abandoned session on: the server ends it when it notices the closed connection"
            );
        }
    }

    /// Runs `finish` (a `COMMIT PREPARED`/`ROLLBACK PREPARED` or XA statement made of checked ids)
    /// on the control connection. A branch the server does not know counts as done: call it only
    /// once the session that prepared it is gone ([`fence`](Self::fence)), when that answer is
    /// authoritative.
    pub(crate) async fn finish_prepared_elsewhere(&self, finish: String) -> Result<()> {
        match self.control(finish, Ask::Nothing).await {
            Err(Error::Query { source, .. })
                if source
                    .as_database_error()
                    .is_some_and(crate::backend::is_unknown_branch) =>
            {
                Ok(())
            }
            done => done.map(drop),
        }
    }

    /// Whether unit `unit` (a checked id) left its marker: read on the control connection, so it
    /// says "committed" or "not committed" only once the session that sent the `COMMIT` is gone
    /// (see [`fence`](Self::fence)).
    pub(crate) async fn has_marker(&self, unit: &str) -> Result<bool> {
        Ok(self.control_count(count_markers(unit)).await? > 0)
    }

    /// Every lock wait among the database's sessions, as (waiting, blocking) session ids, read on
    /// the control connection.
    pub(crate) async fn lock_waits(&self) -> Result<Vec<(u64, u64)>> {
        let sql = self.backend().dialect().lock_waits().to_owned();
        match self.control(sql, Ask::Pairs).await? {
            Answer::Pairs(pairs) => Ok(pairs
                .into_iter()
                .filter_map(|(waiting, blocking)| Some((u64::try_from(waiting).ok()?, u64::try_from(blocking).ok()?)))
                .collect()),
            _ => unreachable!("pairs were asked for"),
        }
    }

    /// Cancels the statement server session `session` is running (its lock wait ends with an
    /// error), from the control connection. Cancelling an idle session does nothing.
    pub(crate) async fn cancel_statement(&self, session: u64) -> Result<()> {
        self.signal_session(self.backend().dialect().cancel_statement(session))
            .await
    }

    /// Runs `signal`, a statement that ends a session or its statement, on the control
    /// connection; a session that is gone already counts as done.
    async fn signal_session(&self, signal: String) -> Result<()> {
        match self.control(signal, Ask::Nothing).await {
            Err(Error::Query { source, .. })
                if source
                    .as_database_error()
                    .is_some_and(|db| ask(db, |dialect, code| dialect.is_unknown_session(code))) =>
            {
                Ok(())
            }
            done => done.map(drop),
        }
    }
}

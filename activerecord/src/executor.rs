//! Where one statement runs: the [`Executor`] trait, and the target (a pool or an open transaction) an executor resolves to.
//!
//! Every model and query operation takes `&impl Executor`:
//! - a [`Database`] runs it on the pool, in autocommit;
//! - a transaction handle ([`Tx`](crate::Tx)) runs it inside that transaction;
//! - [`Using`](crate::Using) (from [`ConnectionManager::using`](crate::ConnectionManager::using))
//!   runs it in the innermost open scope on that connection in the current task, or on its pool
//!   when none is open (Django's `using=`);
//! - [`Ambient`](crate::Ambient) does the same for the model's own database
//!   (`#[activerecord(database = "..")]`), or, for a model that names none, in the innermost open
//!   scope of the task.
//!
//! Guarantees: the trait is sealed (only this crate's handles implement it); an executor is
//! resolved to a target once per operation, without taking any lock; a statement inside a
//! transaction runs on that transaction's connection, and a failure that aborts the transaction
//! is remembered, so that it can never commit as if nothing had failed.

use crate::connection::{Backend, Database, Pool, PooledConnection};
use crate::error::{Error, Result};
use crate::value::{Arguments, RowRef, Value};
use sqlx::SqlSafeStr;
use std::borrow::Cow;

/// Something a model operation can run on: a [`Database`], a [`Tx`](crate::Tx),
/// [`Using`](crate::Using), [`Ambient`](crate::Ambient) or a
/// [`TpcTransaction`](crate::two_phase::TpcTransaction). See the [module docs](self).
///
/// Sealed: the handles of this crate are the only executors.
pub trait Executor: sealed::Resolve + Send + Sync {}

impl<T: sealed::Resolve + Send + Sync + ?Sized> Executor for T {}

/// Public in name only, so that [`Executor`] can require it while nobody outside the crate can
/// name it (the sealed-trait pattern). What it mentions is crate-private on purpose.
#[allow(private_interfaces)]
pub(crate) mod sealed {
    use crate::connection::{Database, OpenTransaction};
    use crate::error::Result;
    use std::borrow::Cow;
    use std::sync::Arc;

    /// How an executor finds the connection for one operation.
    pub trait Resolve {
        /// The connection to use for a model whose default database is `model_database`.
        fn target(&self, model_database: Option<&'static str>) -> Result<Target<'_>>;
    }

    /// The connection one operation runs on, resolved from an [`Executor`](super::Executor).
    #[derive(Debug)]
    pub enum Target<'a> {
        /// Autocommit on a pool.
        Pool(Cow<'a, Database>),
        /// Inside an open transaction.
        Tx(Cow<'a, Arc<OpenTransaction>>),
    }
}

pub(crate) use sealed::{Resolve, Target};

/// What a statement that returns no rows reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    pub(crate) rows_affected: u64,
    /// MySQL's `LAST_INSERT_ID()` of the statement; 0 elsewhere.
    pub(crate) last_insert_id: u64,
}

impl From<sqlx::sqlite::SqliteQueryResult> for Done {
    fn from(r: sqlx::sqlite::SqliteQueryResult) -> Self {
        Done {
            rows_affected: r.rows_affected(),
            last_insert_id: 0,
        }
    }
}
impl From<sqlx::postgres::PgQueryResult> for Done {
    fn from(r: sqlx::postgres::PgQueryResult) -> Self {
        Done {
            rows_affected: r.rows_affected(),
            last_insert_id: 0,
        }
    }
}
impl From<sqlx::mysql::MySqlQueryResult> for Done {
    fn from(r: sqlx::mysql::MySqlQueryResult) -> Self {
        Done {
            rows_affected: r.rows_affected(),
            last_insert_id: r.last_insert_id(),
        }
    }
}

/// Runs `$body` with `$exec` bound to the sqlx executor of `$target` and `$args` to its
/// backend's arguments. `$body` evaluates to a `Result` and must not return early, so that a
/// failed statement inside a transaction is always seen.
macro_rules! on_target {
    ($target:expr, $args:expr, |$exec:ident, $arguments:ident| $body:expr) => {
        match ($target, $args) {
            (Target::Pool(db), args) => match (db.pool(), args) {
                (Pool::Sqlite($exec), Arguments::Sqlite($arguments)) => $body,
                (Pool::Postgres($exec), Arguments::Postgres($arguments)) => $body,
                (Pool::MySql($exec), Arguments::MySql($arguments)) => $body,
                _ => unreachable!("arguments are always built for the target's backend"),
            },
            (Target::Tx(tx), args) => {
                let mut slot = tx.lock().await;
                match slot.as_mut().map(|c| &mut c.conn) {
                    None => Err(tx.ended()),
                    Some(_) if let Err(refused) = tx.refuse_if_doomed() => Err(refused),
                    Some(conn) => {
                        // Seen by the deadlock detector while it runs.
                        let _running = tx.statement_runs();
                        match (conn, args) {
                            (PooledConnection::Sqlite(c), Arguments::Sqlite($arguments)) => {
                                let $exec = &mut **c;
                                $body
                            }
                            (PooledConnection::Postgres(c), Arguments::Postgres($arguments)) => {
                                let $exec = &mut **c;
                                $body
                            }
                            (PooledConnection::MySql(c), Arguments::MySql($arguments)) => {
                                let $exec = &mut **c;
                                $body
                            }
                            _ => unreachable!("arguments are always built for the target's backend"),
                        }
                    }
                }
            }
        }
    };
}

impl Target<'_> {
    /// The backend statements must be written for.
    pub(crate) fn backend(&self) -> Backend {
        self.database().backend()
    }

    /// The connection name, for error messages.
    pub(crate) fn connection_name(&self) -> &str {
        self.database().name()
    }

    fn database(&self) -> &Database {
        match self {
            Target::Pool(db) => db,
            Target::Tx(tx) => tx.database(),
        }
    }

    /// Empty arguments for this target's backend.
    pub(crate) fn arguments(&self) -> Arguments {
        Arguments::new(self.backend())
    }

    /// Classifies a statement's error, and remembers that it aborted the transaction it ran in
    /// where the backend aborts transactions on errors (PostgreSQL).
    fn error(&self, e: sqlx::Error) -> Error {
        if let Target::Tx(tx) = self
            && let Some(db) = e.as_database_error()
        {
            tx.set_aborted(true);
            if let Some(deadlock) = tx.deadlock() {
                // The deadlock detector cancelled the statement.
                return deadlock;
            }
            if crate::backend::rolls_back_transaction(db) {
                tx.set_rolled_back_by_server();
            }
        }
        Error::from_sqlx(self.connection_name(), e)
    }

    /// Runs a statement and maps every row it returns, each as it arrives (so that mapping
    /// overlaps with receiving the rest).
    pub(crate) async fn fetch_all<T>(
        &self,
        sql: impl SqlSafeStr,
        args: Arguments,
        mut map: impl FnMut(RowRef<'_>) -> Result<T> + Send,
    ) -> Result<Vec<T>> {
        use futures_util::TryStreamExt as _;
        let sql = sql.into_sql_str();
        on_target!(self, args, |exec, args| {
            let mut rows = sqlx::query_with(sql, args).fetch(exec);
            let mut mapped = Vec::new();
            loop {
                match rows.try_next().await {
                    Ok(Some(row)) => match map(RowRef::from(&row)) {
                        Ok(value) => mapped.push(value),
                        Err(e) => break Err(e),
                    },
                    Ok(None) => break Ok(mapped),
                    Err(e) => break Err(self.error(e)),
                }
            }
        })
    }

    /// Runs a statement and maps its first row, if any.
    pub(crate) async fn fetch_optional<T>(
        &self,
        sql: impl SqlSafeStr,
        args: Arguments,
        map: impl FnOnce(RowRef<'_>) -> Result<T> + Send,
    ) -> Result<Option<T>> {
        let sql = sql.into_sql_str();
        on_target!(self, args, |exec, args| {
            match sqlx::query_with(sql, args).fetch_optional(exec).await {
                Ok(row) => row.as_ref().map(|row| map(RowRef::from(row))).transpose(),
                Err(e) => Err(self.error(e)),
            }
        })
    }

    /// Records that the statement about to run may write, where it runs in a transaction: a
    /// transaction that wrote leaves a commit marker. Statements that return no rows are writes;
    /// a query that writes (an `INSERT ... RETURNING`, raw SQL) says so through this.
    pub(crate) fn note_write(&self) {
        if let Target::Tx(tx) = self {
            tx.note_write();
        }
    }

    /// Runs a statement that returns no rows.
    pub(crate) async fn execute(&self, sql: impl SqlSafeStr, args: Arguments) -> Result<Done> {
        self.note_write();
        let sql = sql.into_sql_str();
        on_target!(self, args, |exec, args| {
            sqlx::query_with(sql, args)
                .execute(exec)
                .await
                .map(Done::from)
                .map_err(|e| self.error(e))
        })
    }
}

impl Target<'_> {
    /// Runs SQL text with no parameters; several statements separated by `;` are allowed.
    pub(crate) async fn execute_text(&self, sql: &str) -> Result<()> {
        use sqlx::Executor as _;
        self.note_write();
        let sql = sqlx::AssertSqlSafe(sql);
        let args = self.arguments();
        on_target!(self, args, |exec, _args| exec
            .execute(sql)
            .await
            .map(drop)
            .map_err(|e| self.error(e)))
    }
}

/// The first column of every row of a query given as SQL text without parameters, read as `V`:
/// for what models do not cover (server functions, reports, diagnostics). Never put values into
/// this text.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{ConnectionManager, fetch_column};
///
/// let db = ConnectionManager::configure("column_doc", "sqlite::memory:").await?;
/// let answer: Vec<i64> = fetch_column(&db, "SELECT 6 * 7").await?;
/// assert_eq!(answer, [42]);
/// # Ok(()) }
/// ```
pub async fn fetch_column<V: Value, C: Executor + ?Sized>(conn: &C, sql: &str) -> Result<Vec<V>> {
    let target = conn.target(None)?;
    // Raw SQL may write (a function with side effects, `RETURNING`): counted as a write.
    target.note_write();
    let args = target.arguments();
    target.fetch_all(sqlx::AssertSqlSafe(sql), args, |row| row.get(0)).await
}

impl Database {
    /// Runs SQL text with no parameters (DDL, set-up scripts); several statements separated by
    /// `;` are allowed. Never put values into this text: use models or queries, which bind them.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        self.target(None)?.execute_text(sql).await
    }
}

impl Resolve for Database {
    fn target(&self, _: Option<&'static str>) -> Result<Target<'_>> {
        Ok(Target::Pool(Cow::Borrowed(self)))
    }
}

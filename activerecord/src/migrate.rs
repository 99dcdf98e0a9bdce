//! The crate's own tables, created and evolved by sqlx's migrator.
//!
//! Some features keep state in tables of their own: today the two-phase coordinator's decision
//! log (`activerecord_two_phase_log`) and the commit markers (`activerecord_markers`, which units
//! of work write into once this ran: see `docs/transactions.md`, "Outcomes"). Later features add
//! theirs as further migrations (the journal, the barrier, the outbox, the inbox, the idempotency
//! keys), one migration per table, so that a database set up by an older version is brought up to date by
//! the same call.
//!
//! - The migrations are embedded in the library at compile time, one directory per backend
//!   (`activerecord/migrations/{sqlite,postgres,mysql}/`), and picked by the connection's backend.
//! - What has been applied is recorded in [`MIGRATIONS_TABLE`] (`activerecord_migrations`), never
//!   in sqlx's default `_sqlx_migrations`: your own sqlx migrations, and their table, are left
//!   alone, and ours never show up among them.
//! - They run only when asked: call [`run`] at install or configure time, for every connection
//!   that holds one of these tables. [`Coordinator::install`](crate::two_phase::Coordinator::install)
//!   runs it on its log's connection. Never inside a unit of work: from a task that holds an open
//!   transaction scope on the connection it is refused with [`Error::MigrateInScope`].
//! - Running it again, or from several processes at once, is safe. On PostgreSQL and
//!   MySQL/MariaDB sqlx takes an advisory lock for the duration. SQLite has none: each migration
//!   and its row in [`MIGRATIONS_TABLE`] commit in one transaction, and a run that loses the race
//!   to another process (busy, or its row already there) starts over and finds nothing left to do.
//! - The first migration creates its table with `CREATE TABLE IF NOT EXISTS`, so a database whose
//!   decision log was created by earlier versions of the crate (with the same statement) keeps it
//!   as it is.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
//! use activerecord::{ConnectionManager, fetch_column};
//!
//! let db = ConnectionManager::configure("migrate_module_doc", "sqlite::memory:").await?;
//! activerecord::migrate::run(&db).await?;
//! activerecord::migrate::run(&db).await?; // the second run has nothing to do
//! let applied: Vec<i64> = fetch_column(&db, "SELECT version FROM activerecord_migrations").await?;
//! assert_eq!(applied, [1, 2, 3, 4, 5]);
//! # Ok(()) }
//! ```

use crate::connection::{Backend, Database, Pool};
use crate::error::{Error, Result};
use crate::transaction::innermost_frame;
use sqlx::migrate::{MigrateError, Migrator};
use std::time::Duration;

/// The table that records which of the crate's own migrations a database has applied (sqlx's
/// default, `_sqlx_migrations`, is left to your own migrations).
///
/// ```
/// assert_eq!(activerecord::migrate::MIGRATIONS_TABLE, "activerecord_migrations");
/// ```
pub const MIGRATIONS_TABLE: &str = "activerecord_migrations";

/// How long one `GET_LOCK` waits before it is asked again (MySQL/MariaDB).
const LOCK_WAIT_SECONDS: i64 = 60;

/// How many times a SQLite run starts over after losing a race to another migrating process.
const SQLITE_ATTEMPTS: u32 = 5;

/// The migrator of `backend`, recording into [`MIGRATIONS_TABLE`].
fn migrator(backend: Backend) -> Migrator {
    let mut migrator = backend.dialect().migrations();
    // Our own table, so that a user's `_sqlx_migrations` is never read or written.
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// The crate's migrations for `backend`, as `(version, description)`, oldest first.
///
/// ```
/// use activerecord::Backend;
///
/// let migrations = activerecord::migrate::migrations(Backend::Postgres);
/// assert_eq!(migrations[0], (1, "two phase log".to_owned()));
/// ```
pub fn migrations(backend: Backend) -> Vec<(i64, String)> {
    migrator(backend)
        .iter()
        .map(|m| (m.version, m.description.to_string()))
        .collect()
}

/// Creates or updates the crate's own tables on `database`: applies, in order, every migration it
/// has not applied yet, and records each in [`MIGRATIONS_TABLE`]. A database that is up to date is
/// left unchanged. See the [module documentation](self) for when to call it.
///
/// Errors: [`Error::MigrateInScope`] (at once, changing nothing) when the calling task holds an
/// open transaction scope on `database`; [`Error::Migrate`] when a migration fails, or when the
/// applied migrations do not match the crate's (a database migrated by a newer version of the
/// crate, or an edited migration).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// let db = activerecord::ConnectionManager::configure("migrate_run_doc", "sqlite::memory:").await?;
/// activerecord::migrate::run(&db).await?;
/// db.execute("SELECT gtrid, coordinator, branches, decided_at FROM activerecord_two_phase_log").await?;
/// # Ok(()) }
/// ```
pub async fn run(database: &Database) -> Result<()> {
    if innermost_frame(Some(database.name())).is_some() {
        return Err(Error::MigrateInScope {
            connection: database.name().to_owned(),
        });
    }
    let migrator = migrator(database.backend());
    let mut attempt = 1;
    loop {
        // One pooled connection for the whole run. sqlx leaves its session lock held when a
        // migration fails, so after a failure the connection is closed rather than pooled.
        macro_rules! on_one_connection {
            ($pool:expr, $lock:path, $unlock:path) => {{
                async {
                    let mut conn = $pool.acquire().await?;
                    let mut outcome = $lock(&mut conn).await;
                    if outcome.is_ok() {
                        outcome = migrator.run(&mut *conn).await;
                    }
                    if outcome.is_ok() {
                        outcome = $unlock(&mut conn).await;
                    }
                    if outcome.is_err() {
                        conn.close_on_drop();
                    }
                    outcome
                }
                .await
            }};
        }
        let outcome = match database.pool() {
            Pool::Sqlite(pool) => on_one_connection!(pool, no_lock, no_lock),
            // sqlx takes `pg_advisory_lock` itself.
            Pool::Postgres(pool) => on_one_connection!(pool, no_lock, no_lock),
            Pool::MySql(pool) => on_one_connection!(pool, lock_mysql, unlock_mysql),
        };
        match outcome {
            Ok(()) => {
                database.enable_markers();
                return Ok(());
            }
            Err(e) if database.backend() == Backend::Sqlite && attempt < SQLITE_ATTEMPTS && lost_race(&e) => {
                tracing::debug!(connection = database.name(), error = %e, "migration raced another process; starting over");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => {
                return Err(Error::Migrate {
                    connection: database.name().to_owned(),
                    source: Box::new(e),
                });
            }
        }
    }
}

/// SQLite has no session lock (see [`lost_race`]); PostgreSQL's is sqlx's.
async fn no_lock<C>(_: &mut C) -> Result<(), MigrateError> {
    Ok(())
}

/// The name of the MySQL/MariaDB lock of the session's database, computed by the server.
const MYSQL_LOCK_NAME: &str = "CONCAT('activerecord_migrate_', SHA1(COALESCE(DATABASE(), '')))";

/// Takes a named lock for this database on a MySQL/MariaDB session, waiting for as long as another
/// session holds it. sqlx's own lock is `GET_LOCK(name, -1)`, and MariaDB does not take a negative
/// timeout as "wait forever": it returns 0 at once, sqlx ignores it, and two migrating processes
/// would run side by side. The lock is released when the session ends (the connection is closed
/// after a failed run) or by [`unlock_mysql`] after a successful one.
async fn lock_mysql(conn: &mut sqlx::MySqlConnection) -> Result<(), MigrateError> {
    loop {
        let locked: Option<i64> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT GET_LOCK({MYSQL_LOCK_NAME}, ?)")))
                .bind(LOCK_WAIT_SECONDS)
                .fetch_one(&mut *conn)
                .await?;
        match locked {
            Some(1) => return Ok(()),
            // Still held by another session: wait again.
            Some(_) => continue,
            None => {
                return Err(MigrateError::Execute(sqlx::Error::Protocol(
                    "GET_LOCK returned NULL (the session was killed, or the server ran out of memory)".to_owned(),
                )));
            }
        }
    }
}

/// Releases the lock of [`lock_mysql`].
async fn unlock_mysql(conn: &mut sqlx::MySqlConnection) -> Result<(), MigrateError> {
    sqlx::query(sqlx::AssertSqlSafe(format!("DO RELEASE_LOCK({MYSQL_LOCK_NAME})")))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether a SQLite migration failed because another process migrated the same file at the same
/// time: the database was busy, the migration's row was written by the other process first, or
/// the column it adds was added by the other process first. The failed migration's transaction
/// rolled back, so starting over is safe.
fn lost_race(error: &MigrateError) -> bool {
    let (MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _)) = error else {
        return false;
    };
    e.as_database_error().is_some_and(|db| {
        db.kind() == sqlx::error::ErrorKind::UniqueViolation
            || matches!(db.code().as_deref(), Some("5" | "6" | "517"))
            || db.message().starts_with("duplicate column name")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_has_the_same_migrations() {
        let sqlite = migrations(Backend::Sqlite);
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, migrations(Backend::Postgres));
        assert_eq!(sqlite, migrations(Backend::MySql));
    }

    #[test]
    fn the_hint_for_a_half_applied_migration_names_our_table() {
        let err = Error::Migrate {
            connection: "c".to_owned(),
            source: Box::new(MigrateError::Dirty(1)),
        };
        assert!(err.to_string().contains(MIGRATIONS_TABLE), "{err}");
    }
}

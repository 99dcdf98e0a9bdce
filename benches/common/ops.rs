//! Each measured operation twice: through the ORM, and as the same statements by hand with sqlx.

use super::{Account, new_owner, placeholder};
use activerecord::{Backend, ConnectionManager, Database, Model, Result, col};
use std::hint::black_box;

/// Runs `$body` with `$pool` bound to the database's sqlx pool (SQLite or PostgreSQL).
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db.backend() {
            Backend::Sqlite => {
                let $pool = $db.sqlite_pool().unwrap();
                $body
            }
            Backend::Postgres => {
                let $pool = $db.postgres_pool().unwrap();
                $body
            }
            Backend::MySql => unreachable!("the hand-written side runs on SQLite and PostgreSQL"),
        }
    };
}

/// The hand-written statements, as `&'static str` like the literals a sqlx user writes (so that
/// sqlx does not copy them on every call).
#[derive(Clone, Copy)]
pub struct Sql {
    insert: &'static str,
    find: &'static str,
    find_for_update: &'static str,
    update: &'static str,
    hundred: &'static str,
}

impl Sql {
    pub fn new(backend: Backend) -> Sql {
        let p = |n| placeholder(backend, n);
        let leak = |sql: String| -> &'static str { Box::leak(sql.into_boxed_str()) };
        let find = format!("SELECT id, owner, balance FROM accounts WHERE id = {}", p(1));
        let lock = if backend == Backend::Sqlite { "" } else { " FOR UPDATE" };
        Sql {
            insert: leak(format!(
                "INSERT INTO accounts (owner, balance) VALUES ({}, {}) RETURNING id",
                p(1),
                p(2)
            )),
            find_for_update: leak(format!("{find}{lock}")),
            find: leak(find),
            update: leak(format!(
                "UPDATE accounts SET owner = {}, balance = {} WHERE id = {}",
                p(1),
                p(2),
                p(3)
            )),
            hundred: leak(format!(
                "SELECT id, owner, balance FROM accounts WHERE balance >= {} LIMIT {}",
                p(1),
                p(2)
            )),
        }
    }
}

pub async fn orm_insert(db: &Database) {
    black_box(
        Account::create(
            db,
            Account {
                id: None,
                owner: new_owner(),
                balance: 1,
            },
        )
        .await
        .unwrap(),
    );
}

pub async fn sqlx_insert(db: &Database, sql: Sql) {
    with_pool!(db, |pool| {
        let owner = new_owner();
        let (id,): (i64,) = sqlx::query_as(sql.insert)
            .bind(&owner)
            .bind(1_i64)
            .fetch_one(pool)
            .await
            .unwrap();
        black_box(Account {
            id: Some(id),
            owner,
            balance: 1,
        });
    })
}

pub async fn orm_find(db: &Database) {
    black_box(Account::find(db, 42).await.unwrap());
}

pub async fn sqlx_find(db: &Database, sql: Sql) {
    with_pool!(db, |pool| {
        let (id, owner, balance): (i64, String, i64) =
            sqlx::query_as(sql.find).bind(42_i64).fetch_one(pool).await.unwrap();
        black_box(Account {
            id: Some(id),
            owner,
            balance,
        });
    })
}

/// Writes `account` back (every column but the key), as `save` does for a loaded record.
pub async fn orm_update(db: &Database, account: Account) {
    account.update(db).await.unwrap();
}

pub async fn sqlx_update(db: &Database, sql: Sql, account: Account) {
    with_pool!(db, |pool| {
        let done = sqlx::query(sql.update)
            .bind(&account.owner)
            .bind(account.balance)
            .bind(account.id.unwrap())
            .execute(pool)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    })
}

pub async fn orm_query_100(db: &Database) {
    let rows = Account::query()
        .filter(col("balance").ge(0_i64))
        .limit(100)
        .all(db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 100);
    black_box(rows);
}

pub async fn sqlx_query_100(db: &Database, sql: Sql) {
    with_pool!(db, |pool| {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(sql.hundred)
            .bind(0_i64)
            .bind(100_i64)
            .fetch_all(pool)
            .await
            .unwrap();
        let rows: Vec<Account> = rows
            .into_iter()
            .map(|(id, owner, balance)| Account {
                id: Some(id),
                owner,
                balance,
            })
            .collect();
        assert_eq!(rows.len(), 100);
        black_box(rows);
    })
}

/// Moves 1 from account 1 of `first` to account 1 of `second`: a scope with a nested one.
pub async fn orm_transfer(first: &str, second: &str, two_phase: bool) -> Result<()> {
    orm_transfer_of(first, second, 1, two_phase).await
}

/// [`orm_transfer`] between the accounts numbered `account` of each database.
pub async fn orm_transfer_of(first: &str, second: &str, account: i64, two_phase: bool) -> Result<()> {
    let outer = ConnectionManager::using(first);
    let outer = if two_phase { outer.two_phase() } else { outer };
    outer
        .transaction(async |tx| {
            let mut payer = Account::find_for_update(tx, account).await?;
            payer.balance -= 1;
            payer.save(tx).await?;
            ConnectionManager::using(second)
                .transaction(async |tx| {
                    let mut payee = Account::find_for_update(tx, account).await?;
                    payee.balance += 1;
                    payee.save(tx).await
                })
                .await
        })
        .await
}

/// One side of a transfer by hand: a database and the statements written for its backend.
pub type Side<'a> = (&'a Database, Sql);

/// The same statements by hand: two sqlx transactions, committed one after the other.
macro_rules! sqlx_transfer {
    ($begin:expr, $pool1:expr, $sql1:expr, $pool2:expr, $sql2:expr) => {{
        let mut tx1 = $pool1.begin_with($begin).await.unwrap();
        let (id, owner, balance): (i64, String, i64) = sqlx::query_as($sql1.find_for_update)
            .bind(1_i64)
            .fetch_one(&mut *tx1)
            .await
            .unwrap();
        sqlx::query($sql1.update)
            .bind(owner)
            .bind(balance - 1)
            .bind(id)
            .execute(&mut *tx1)
            .await
            .unwrap();
        let mut tx2 = $pool2.begin_with($begin).await.unwrap();
        let (id, owner, balance): (i64, String, i64) = sqlx::query_as($sql2.find_for_update)
            .bind(1_i64)
            .fetch_one(&mut *tx2)
            .await
            .unwrap();
        sqlx::query($sql2.update)
            .bind(owner)
            .bind(balance + 1)
            .bind(id)
            .execute(&mut *tx2)
            .await
            .unwrap();
        tx1.commit().await.unwrap();
        tx2.commit().await.unwrap();
    }};
}

/// A plain transfer by hand (`BEGIN`, the row locked and updated, on each side, then both
/// `COMMIT`s): on two SQLite files, two PostgreSQL databases, or PostgreSQL then MariaDB.
pub async fn sqlx_transfer((one, sql1): Side<'_>, (two, sql2): Side<'_>) {
    match (one.backend(), two.backend()) {
        // The ORM's write scopes on SQLite take the write lock up front; so does this.
        (Backend::Sqlite, Backend::Sqlite) => {
            let (pool1, pool2) = (one.sqlite_pool().unwrap(), two.sqlite_pool().unwrap());
            sqlx_transfer!("BEGIN IMMEDIATE", pool1, sql1, pool2, sql2)
        }
        (Backend::Postgres, Backend::Postgres) => {
            let (pool1, pool2) = (one.postgres_pool().unwrap(), two.postgres_pool().unwrap());
            sqlx_transfer!("BEGIN", pool1, sql1, pool2, sql2)
        }
        (Backend::Postgres, Backend::MySql) => {
            let (pool1, pool2) = (one.postgres_pool().unwrap(), two.mysql_pool().unwrap());
            sqlx_transfer!("BEGIN", pool1, sql1, pool2, sql2)
        }
        pair => unimplemented!("a transfer by hand between {pair:?}"),
    }
}

/// The lock-wait limit the ORM sets in a unit of work that spans two databases: each
/// connection's default, 5 s.
const LOCK_TIMEOUT_MS: u64 = 5_000;

/// What the ORM sends to open and limit a transaction on one backend (see
/// [`sqlx_transfer_as_the_orm_does`]).
#[derive(Clone, Copy)]
pub struct Control {
    /// The root's `BEGIN` batch: the transaction, the connection's lock-wait limit reset (MariaDB,
    /// whose limit is a session setting), the session id.
    begin_root: &'static str,
    /// A joined database's `BEGIN` batch: the transaction, its lock-wait limit, the session id.
    begin_joined: &'static str,
    /// The root's lock-wait limit, sent when the second database joins.
    limit: &'static str,
}

impl Control {
    pub fn new(backend: Backend) -> Control {
        let leak = |sql: String| -> &'static str { Box::leak(sql.into_boxed_str()) };
        let (begin, reset, limit, session) = match backend {
            Backend::Postgres => (
                "BEGIN",
                None,
                format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'"),
                "SELECT pg_backend_pid()",
            ),
            Backend::MySql => (
                "START TRANSACTION",
                Some("SET SESSION innodb_lock_wait_timeout = DEFAULT"),
                format!(
                    "SET SESSION innodb_lock_wait_timeout = {}",
                    LOCK_TIMEOUT_MS.div_ceil(1000)
                ),
                "SELECT CONNECTION_ID()",
            ),
            Backend::Sqlite => unimplemented!("the ORM's statements by hand run on PostgreSQL and MariaDB"),
        };
        let batch = |middle: Option<&str>| match middle {
            Some(middle) => format!("{begin}; {middle}; {session}"),
            None => format!("{begin}; {session}"),
        };
        Control {
            begin_root: leak(batch(reset)),
            begin_joined: leak(batch(Some(&limit))),
            limit: leak(limit),
        }
    }
}

/// A pooled connection to PostgreSQL or MariaDB, for a transfer by hand across them.
enum Connection {
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    MySql(sqlx::pool::PoolConnection<sqlx::MySql>),
}

/// Runs `$body` with `$conn` bound to the connection of whichever backend it is.
macro_rules! on_connection {
    ($connection:expr, |$conn:ident| $body:expr) => {
        match $connection {
            Connection::Postgres($conn) => $body,
            Connection::MySql($conn) => $body,
        }
    };
}

/// A row whose first column is a server session id, decoded as the ORM decodes it.
trait SessionRow {
    fn session(&self) -> u64;
}

impl SessionRow for sqlx::postgres::PgRow {
    fn session(&self) -> u64 {
        sqlx::Row::get::<i32, _>(self, 0) as u64
    }
}

impl SessionRow for sqlx::mysql::MySqlRow {
    fn session(&self) -> u64 {
        sqlx::Row::get(self, 0)
    }
}

impl Connection {
    async fn acquire(db: &Database) -> Connection {
        match db.backend() {
            Backend::Postgres => Connection::Postgres(db.postgres_pool().unwrap().acquire().await.unwrap()),
            Backend::MySql => Connection::MySql(db.mysql_pool().unwrap().acquire().await.unwrap()),
            Backend::Sqlite => unimplemented!("the ORM's statements by hand run on PostgreSQL and MariaDB"),
        }
    }

    /// Runs SQL text (one statement or a batch), as the ORM runs its control statements.
    async fn execute(&mut self, sql: impl sqlx::SqlSafeStr) {
        on_connection!(self, |conn| {
            sqlx::raw_sql(sql).execute(&mut **conn).await.unwrap();
        })
    }

    /// One side of a transfer by hand, sending what the ORM sends: the `begin` batch, which ends
    /// with the session id, then the row locked and updated; the transaction stays open.
    async fn begin_and_move(db: &Database, sql: Sql, begin: &'static str, delta: i64) -> Connection {
        let mut connection = Connection::acquire(db).await;
        on_connection!(&mut connection, |conn| {
            let session = sqlx::raw_sql(begin).fetch_one(&mut **conn).await.unwrap().session();
            black_box(session);
            let (id, owner, balance): (i64, String, i64) = sqlx::query_as(sql.find_for_update)
                .bind(1_i64)
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            sqlx::query(sql.update)
                .bind(owner)
                .bind(balance + delta)
                .bind(id)
                .execute(&mut **conn)
                .await
                .unwrap();
        });
        connection
    }
}

/// The ORM's two-database transfer by hand, statement for statement, on PostgreSQL + PostgreSQL
/// or PostgreSQL + MariaDB: each `BEGIN` batched with the session id (the joined database's with
/// its lock-wait limit, a MariaDB root's with its limit reset), the root's lock-wait limit set
/// when the second database joins, and, with `marker` (a unit id and its creation time in ms),
/// each `COMMIT` batched with the insert of the unit's commit marker.
pub async fn sqlx_transfer_as_the_orm_does(
    (one, sql1, control1): (&Database, Sql, Control),
    (two, sql2, control2): (&Database, Sql, Control),
    marker: Option<(&str, u128)>,
) {
    let mut root = Connection::begin_and_move(one, sql1, control1.begin_root, -1).await;
    root.execute(control1.limit).await;
    let mut joined = Connection::begin_and_move(two, sql2, control2.begin_joined, 1).await;
    for conn in [&mut root, &mut joined] {
        match marker {
            Some((unit, created_ms)) => {
                let batch = format!(
                    "INSERT INTO activerecord_markers (unit_id, created_ms) VALUES ('{unit}', {created_ms}); COMMIT"
                );
                conn.execute(sqlx::AssertSqlSafe(batch)).await;
            }
            None => conn.execute("COMMIT").await,
        }
    }
}

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
    let outer = ConnectionManager::using(first);
    let outer = if two_phase { outer.two_phase() } else { outer };
    outer
        .transaction(async |tx| {
            let mut payer = Account::find_for_update(tx, 1).await?;
            payer.balance -= 1;
            payer.save(tx).await?;
            ConnectionManager::using(second)
                .transaction(async |tx| {
                    let mut payee = Account::find_for_update(tx, 1).await?;
                    payee.balance += 1;
                    payee.save(tx).await
                })
                .await
        })
        .await
}

/// The same statements by hand: two sqlx transactions, committed one after the other.
macro_rules! sqlx_transfer {
    ($pool1:expr, $pool2:expr, $begin:expr, $sql:expr) => {{
        let mut tx1 = $pool1.begin_with($begin).await.unwrap();
        let (id, owner, balance): (i64, String, i64) = sqlx::query_as($sql.find_for_update)
            .bind(1_i64)
            .fetch_one(&mut *tx1)
            .await
            .unwrap();
        sqlx::query($sql.update)
            .bind(owner)
            .bind(balance - 1)
            .bind(id)
            .execute(&mut *tx1)
            .await
            .unwrap();
        let mut tx2 = $pool2.begin_with($begin).await.unwrap();
        let (id, owner, balance): (i64, String, i64) = sqlx::query_as($sql.find_for_update)
            .bind(1_i64)
            .fetch_one(&mut *tx2)
            .await
            .unwrap();
        sqlx::query($sql.update)
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

pub async fn sqlx_transfer(one: &Database, two: &Database, sql: Sql) {
    match one.backend() {
        // The ORM's write scopes on SQLite take the write lock up front; so does this.
        Backend::Sqlite => {
            sqlx_transfer!(
                one.sqlite_pool().unwrap(),
                two.sqlite_pool().unwrap(),
                "BEGIN IMMEDIATE",
                sql
            )
        }
        Backend::Postgres => sqlx_transfer!(one.postgres_pool().unwrap(), two.postgres_pool().unwrap(), "BEGIN", sql),
        Backend::MySql => unreachable!("the hand-written side runs on SQLite and PostgreSQL"),
    }
}

/// One side of a transfer by hand, sending what the ORM sends on PostgreSQL: `BEGIN` with the
/// session id in one round trip (the joined side also sets its lock-wait limit in it), the row
/// locked and updated; returns the connection, its transaction open.
async fn sqlx_begin_and_move(
    pool: &sqlx::PgPool,
    sql: Sql,
    begin: &'static str,
    delta: i64,
) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    let mut conn = pool.acquire().await.unwrap();
    let _session: i32 = sqlx::Row::get(&sqlx::raw_sql(begin).fetch_one(&mut *conn).await.unwrap(), 0);
    let (id, owner, balance): (i64, String, i64) = sqlx::query_as(sql.find_for_update)
        .bind(1_i64)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    sqlx::query(sql.update)
        .bind(owner)
        .bind(balance + delta)
        .bind(id)
        .execute(&mut *conn)
        .await
        .unwrap();
    conn
}

/// The ORM's two-database transfer on PostgreSQL by hand, statement for statement: each `BEGIN`
/// batched with the session id, the root's lock-wait limit set when the second database joins,
/// and, with `marker`, each `COMMIT` batched with the insert of the unit's commit marker.
pub async fn sqlx_transfer_as_the_orm_does(one: &Database, two: &Database, sql: Sql, marker: Option<(&str, u128)>) {
    let mut root = sqlx_begin_and_move(one.postgres_pool().unwrap(), sql, "BEGIN; SELECT pg_backend_pid()", -1).await;
    sqlx::raw_sql("SET LOCAL lock_timeout = '5000ms'")
        .execute(&mut *root)
        .await
        .unwrap();
    let mut joined = sqlx_begin_and_move(
        two.postgres_pool().unwrap(),
        sql,
        "BEGIN; SET LOCAL lock_timeout = '5000ms'; SELECT pg_backend_pid()",
        1,
    )
    .await;
    for conn in [&mut root, &mut joined] {
        match marker {
            Some((unit, created_ms)) => {
                let batch = format!(
                    "INSERT INTO activerecord_markers (unit_id, created_ms) VALUES ('{unit}', {created_ms}); COMMIT"
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(batch))
                    .execute(&mut **conn)
                    .await
                    .unwrap();
            }
            None => {
                sqlx::raw_sql("COMMIT").execute(&mut **conn).await.unwrap();
            }
        }
    }
}

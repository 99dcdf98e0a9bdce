//! What the ORM costs over raw sqlx: each single-row operation and a 100-row query, written once
//! with the ORM and once by hand with sqlx, on the same pool in the same run, on SQLite (a file,
//! WAL) and on PostgreSQL.
//!
//! `cargo bench --bench orm_vs_sqlx`; results and ratios: docs/performance.md.

mod common;

use activerecord::{Backend, Database, Model, col};
use common::{Account, bank, placeholder, runtime};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// Runs `$body` with `$pool` bound to the database's sqlx pool.
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
            Backend::MySql => unreachable!("this benchmark runs on SQLite and PostgreSQL"),
        }
    };
}

/// The hand-written statements, as `&'static str` like the literals a sqlx user writes (so that
/// sqlx does not copy them on every call).
struct Sql {
    insert: &'static str,
    find: &'static str,
    update: &'static str,
    hundred: &'static str,
}

impl Sql {
    fn new(backend: Backend) -> Sql {
        let p = |n| placeholder(backend, n);
        let leak = |sql: String| -> &'static str { Box::leak(sql.into_boxed_str()) };
        Sql {
            insert: leak(format!(
                "INSERT INTO accounts (owner, balance) VALUES ({}, {}) RETURNING id",
                p(1),
                p(2)
            )),
            find: leak(format!("SELECT id, owner, balance FROM accounts WHERE id = {}", p(1))),
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

fn single_row_and_query(c: &mut Criterion) {
    let rt = runtime();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let sql = Sql::new(backend);
        let mut group = c.benchmark_group(format!("{backend:?}").to_lowercase());
        // Each measurement gets a database of its own, seeded alike, so that neither side runs on
        // a table the other has grown or churned.
        let mut databases = 0;
        let mut fresh = || -> Database {
            databases += 1;
            rt.block_on(bank(backend, &format!("bench_{backend:?}_{databases}"), 200))
        };

        let db = fresh();
        group.bench_function(BenchmarkId::new("insert", "orm"), |b| {
            b.to_async(&rt).iter(|| async {
                let account = Account::create(
                    &db,
                    Account {
                        id: None,
                        owner: "new".into(),
                        balance: 1,
                    },
                )
                .await
                .unwrap();
                black_box(account)
            })
        });
        let db = fresh();
        group.bench_function(BenchmarkId::new("insert", "sqlx"), |b| {
            b.to_async(&rt).iter(|| async {
                with_pool!(db, |pool| {
                    let (id,): (i64,) = sqlx::query_as(sql.insert)
                        .bind("new")
                        .bind(1_i64)
                        .fetch_one(pool)
                        .await
                        .unwrap();
                    black_box(Account {
                        id: Some(id),
                        owner: "new".into(),
                        balance: 1,
                    })
                })
            })
        });

        let db = fresh();
        group.bench_function(BenchmarkId::new("find", "orm"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(Account::find(&db, 42).await.unwrap()) })
        });
        let db = fresh();
        group.bench_function(BenchmarkId::new("find", "sqlx"), |b| {
            b.to_async(&rt).iter(|| async {
                with_pool!(db, |pool| {
                    let (id, owner, balance): (i64, String, i64) =
                        sqlx::query_as(sql.find).bind(42_i64).fetch_one(pool).await.unwrap();
                    black_box(Account {
                        id: Some(id),
                        owner,
                        balance,
                    })
                })
            })
        });

        let db = fresh();
        let mut account = rt.block_on(Account::find(&db, 7)).unwrap();
        group.bench_function(BenchmarkId::new("update", "orm"), |b| {
            b.to_async(&rt).iter(|| {
                account.balance += 1;
                let account = account.clone();
                let db = &db;
                async move { account.update(db).await.unwrap() }
            })
        });
        let db = fresh();
        group.bench_function(BenchmarkId::new("update", "sqlx"), |b| {
            b.to_async(&rt).iter(|| {
                account.balance += 1;
                let account = account.clone();
                let (db, sql) = (&db, &sql);
                async move {
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
            })
        });

        let db = fresh();
        group.bench_function(BenchmarkId::new("query_100_rows", "orm"), |b| {
            b.to_async(&rt).iter(|| async {
                let rows = Account::query()
                    .filter(col("balance").ge(0))
                    .limit(100)
                    .all(&db)
                    .await
                    .unwrap();
                assert_eq!(rows.len(), 100);
                black_box(rows)
            })
        });
        let db = fresh();
        group.bench_function(BenchmarkId::new("query_100_rows", "sqlx"), |b| {
            b.to_async(&rt).iter(|| async {
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
                    black_box(rows)
                })
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(60).measurement_time(std::time::Duration::from_secs(4));
    targets = single_row_and_query
}
criterion_main!(benches);

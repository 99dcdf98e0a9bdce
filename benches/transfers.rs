//! What a transfer between two databases costs, per strategy:
//! - a best-effort nested scope against the same statements written by hand with two sqlx
//!   transactions, on two SQLite files and on two PostgreSQL databases;
//! - a two-phase scope against a best-effort scope, on PostgreSQL + MariaDB.
//!
//! `cargo bench --bench transfers`; results and ratios: docs/performance.md.

mod common;

use activerecord::two_phase::{Coordinator, CoordinatorConfig};
use activerecord::{Backend, ConnectionManager, Database, Error, Model, Result};
use common::{Account, bank, placeholder, runtime};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// The ORM transfer: a scope on the first database, a nested one on the second.
async fn orm_transfer(first: &str, second: &str, two_phase: bool) -> Result<()> {
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
    ($pool1:expr, $pool2:expr, $begin:expr, $select:expr, $update:expr) => {{
        let mut tx1 = $pool1.begin_with($begin).await.unwrap();
        let (id, owner, balance): (i64, String, i64) =
            sqlx::query_as($select).bind(1_i64).fetch_one(&mut *tx1).await.unwrap();
        sqlx::query($update)
            .bind(owner)
            .bind(balance - 1)
            .bind(id)
            .execute(&mut *tx1)
            .await
            .unwrap();
        let mut tx2 = $pool2.begin_with($begin).await.unwrap();
        let (id, owner, balance): (i64, String, i64) =
            sqlx::query_as($select).bind(1_i64).fetch_one(&mut *tx2).await.unwrap();
        sqlx::query($update)
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

/// The hand-written transfer's statements for `backend`, as `&'static str` like a sqlx user's
/// literals.
fn transfer_sql(backend: Backend) -> (&'static str, &'static str) {
    let p = |n| placeholder(backend, n);
    let lock = if backend == Backend::Sqlite { "" } else { " FOR UPDATE" };
    let select = format!("SELECT id, owner, balance FROM accounts WHERE id = {}{lock}", p(1));
    let update = format!(
        "UPDATE accounts SET owner = {}, balance = {} WHERE id = {}",
        p(1),
        p(2),
        p(3)
    );
    (Box::leak(select.into_boxed_str()), Box::leak(update.into_boxed_str()))
}

async fn sqlx_transfer(one: &Database, two: &Database, (select, update): (&'static str, &'static str)) {
    match one.backend() {
        Backend::Sqlite => {
            let (a, b) = (one.sqlite_pool().unwrap(), two.sqlite_pool().unwrap());
            sqlx_transfer!(a, b, "BEGIN IMMEDIATE", select, update)
        }
        Backend::Postgres => {
            let (a, b) = (one.postgres_pool().unwrap(), two.postgres_pool().unwrap());
            sqlx_transfer!(a, b, "BEGIN", select, update)
        }
        Backend::MySql => unreachable!("the hand-written transfer runs on SQLite and PostgreSQL"),
    }
}

fn best_effort_against_sqlx(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("transfer");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let label = format!("{backend:?}").to_lowercase();
        // Each side gets databases of its own, seeded alike.
        let (first, second) = (format!("transfer_{label}_1"), format!("transfer_{label}_2"));
        rt.block_on(bank(backend, &first, 1));
        rt.block_on(bank(backend, &second, 1));
        let one = rt.block_on(bank(backend, &format!("transfer_{label}_sqlx_1"), 1));
        let two = rt.block_on(bank(backend, &format!("transfer_{label}_sqlx_2"), 1));
        group.bench_function(BenchmarkId::new(format!("{label}_best_effort"), "orm"), |b| {
            b.to_async(&rt)
                .iter(|| async { orm_transfer(&first, &second, false).await.unwrap() })
        });
        let sql = transfer_sql(backend);
        group.bench_function(BenchmarkId::new(format!("{label}_best_effort"), "sqlx"), |b| {
            b.to_async(&rt).iter(|| sqlx_transfer(&one, &two, sql))
        });
        for (a, b) in [(first.as_str(), second.as_str()), (one.name(), two.name())] {
            let total = rt
                .block_on(async {
                    let a = ConnectionManager::get(a)?;
                    let b = ConnectionManager::get(b)?;
                    Ok::<_, Error>(Account::find(&a, 1).await?.balance + Account::find(&b, 1).await?.balance)
                })
                .unwrap();
            assert_eq!(total, 2_000_000, "the benchmark's transfers kept the total");
        }
    }
    group.finish();
}

fn two_phase_against_best_effort(c: &mut Criterion) {
    let rt = runtime();
    rt.block_on(async {
        bank(Backend::Postgres, "strategy_pg", 1).await;
        bank(Backend::MySql, "strategy_mariadb", 1).await;
        let log = testkit::scratch_dir().join("bench-two-phase.db");
        Coordinator::install(CoordinatorConfig::new("bench").log_in_file(log))
            .await
            .unwrap();
    });
    let mut group = c.benchmark_group("strategy_postgres_mariadb");
    group.bench_function("best_effort", |b| {
        b.to_async(&rt)
            .iter(|| async { orm_transfer("strategy_pg", "strategy_mariadb", false).await.unwrap() })
    });
    group.bench_function("two_phase", |b| {
        b.to_async(&rt)
            .iter(|| async { orm_transfer("strategy_pg", "strategy_mariadb", true).await.unwrap() })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).measurement_time(std::time::Duration::from_secs(5));
    targets = best_effort_against_sqlx, two_phase_against_best_effort
}
criterion_main!(benches);

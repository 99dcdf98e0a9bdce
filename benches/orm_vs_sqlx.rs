//! What the ORM costs over raw sqlx: each single-row operation and a 100-row query, written once
//! with the ORM and once by hand with sqlx, on SQLite (a file, WAL) and on PostgreSQL, in one
//! run. Each measurement gets a database of its own, seeded alike, so that neither side runs on a
//! table the other has grown or churned. `benches/interleaved.rs` measures the same pairs
//! alternating, for ratios free of drift.
//!
//! `cargo bench --bench orm_vs_sqlx`; results and ratios: docs/performance.md.

mod common;

use activerecord::{Backend, Database, Model};
use common::ops::{self, Sql};
use common::{Account, bank, runtime};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn single_row_and_query(c: &mut Criterion) {
    let rt = runtime();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let sql = Sql::new(backend);
        let mut group = c.benchmark_group(format!("{backend:?}").to_lowercase());
        let mut databases = 0;
        let mut fresh = || -> Database {
            databases += 1;
            rt.block_on(bank(backend, &format!("bench_{backend:?}_{databases}"), 200))
        };

        let db = fresh();
        group.bench_function(BenchmarkId::new("insert", "orm"), |b| {
            b.to_async(&rt).iter(|| ops::orm_insert(&db))
        });
        let db = fresh();
        group.bench_function(BenchmarkId::new("insert", "sqlx"), |b| {
            b.to_async(&rt).iter(|| ops::sqlx_insert(&db, sql))
        });

        let db = fresh();
        group.bench_function(BenchmarkId::new("find", "orm"), |b| {
            b.to_async(&rt).iter(|| ops::orm_find(&db))
        });
        let db = fresh();
        group.bench_function(BenchmarkId::new("find", "sqlx"), |b| {
            b.to_async(&rt).iter(|| ops::sqlx_find(&db, sql))
        });

        let db = fresh();
        let mut account: Account = rt.block_on(Account::find(&db, 7)).unwrap();
        group.bench_function(BenchmarkId::new("update", "orm"), |b| {
            b.to_async(&rt).iter(|| {
                account.balance += 1;
                ops::orm_update(&db, account.clone())
            })
        });
        let db = fresh();
        group.bench_function(BenchmarkId::new("update", "sqlx"), |b| {
            b.to_async(&rt).iter(|| {
                account.balance += 1;
                ops::sqlx_update(&db, sql, account.clone())
            })
        });

        let db = fresh();
        group.bench_function(BenchmarkId::new("query_100_rows", "orm"), |b| {
            b.to_async(&rt).iter(|| ops::orm_query_100(&db))
        });
        let db = fresh();
        group.bench_function(BenchmarkId::new("query_100_rows", "sqlx"), |b| {
            b.to_async(&rt).iter(|| ops::sqlx_query_100(&db, sql))
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

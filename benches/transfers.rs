//! What a transfer between two databases costs: a best-effort nested scope against the same
//! statements written by hand with two sqlx transactions, on two SQLite files and on two
//! PostgreSQL databases. Two-phase commit against best effort: `benches/strategies.rs`.
//!
//! `cargo bench --bench transfers`; results and ratios: docs/performance.md.

mod common;

use activerecord::{Backend, ConnectionManager, Error, Model};
use common::ops::{self, Sql};
use common::{Account, bank, runtime};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

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
                .iter(|| async { ops::orm_transfer(&first, &second, false).await.unwrap() })
        });
        let sql = Sql::new(backend);
        group.bench_function(BenchmarkId::new(format!("{label}_best_effort"), "sqlx"), |b| {
            b.to_async(&rt).iter(|| ops::sqlx_transfer((&one, sql), (&two, sql)))
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).measurement_time(std::time::Duration::from_secs(5));
    targets = best_effort_against_sqlx
}
criterion_main!(benches);

//! The ORM against raw sqlx, measured alternating: every round runs the ORM side, then the sqlx
//! side, of each pair, on databases of their own. Drift over the run (WAL checkpoints, autovacuum,
//! the page cache, other work on the machine) then falls on both sides alike, which a benchmark that
//! measures one side after the other cannot promise. Prints a table of mean times and ratios.
//!
//! `cargo bench --bench interleaved`; results: docs/performance.md.

mod common;

use activerecord::{Backend, Database, Model};
use common::ops::{self, Sql};
use common::{Account, bank, runtime};
use std::time::{Duration, Instant};

const ROUNDS: u32 = 3000;
const WARM_UP: u32 = 200;

/// Sums the time of `run` over the measured rounds.
struct Timer(Duration);

impl Timer {
    async fn time(&mut self, round: u32, run: impl Future<Output = ()>) {
        let started = Instant::now();
        run.await;
        if round >= WARM_UP {
            self.0 += started.elapsed();
        }
    }

    fn mean(&self) -> Duration {
        self.0 / (ROUNDS - WARM_UP)
    }
}

fn report(operation: &str, orm: &Timer, sqlx: &Timer) {
    let ratio = orm.mean().as_secs_f64() / sqlx.mean().as_secs_f64();
    println!(
        "| {operation} | {:.1?} | {:.1?} | {ratio:.2}x |",
        orm.mean(),
        sqlx.mean()
    );
}

fn main() {
    // `cargo test --benches` runs benchmarks once as tests: nothing to measure then.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let rt = runtime();
    rt.block_on(async {
        println!("| operation | ORM | sqlx | ORM / sqlx |\n| --- | --- | --- | --- |");
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let label = format!("{backend:?}").to_lowercase();
            let sql = Sql::new(backend);
            let fresh = async |side: &str| bank(backend, &format!("interleaved_{label}_{side}"), 200).await;
            let (orm_db, sqlx_db): (Database, Database) = (fresh("orm").await, fresh("sqlx").await);
            let mut timers: Vec<(Timer, Timer)> =
                (0..4).map(|_| (Timer(Duration::ZERO), Timer(Duration::ZERO))).collect();
            let mut account = Account::find(&orm_db, 7).await.unwrap();
            for round in 0..ROUNDS {
                let [find, update, query, insert] = timers.as_mut_slice() else {
                    unreachable!()
                };
                find.0.time(round, ops::orm_find(&orm_db)).await;
                find.1.time(round, ops::sqlx_find(&sqlx_db, sql)).await;
                account.balance += 1;
                update.0.time(round, ops::orm_update(&orm_db, account.clone())).await;
                update
                    .1
                    .time(round, ops::sqlx_update(&sqlx_db, sql, account.clone()))
                    .await;
                query.0.time(round, ops::orm_query_100(&orm_db)).await;
                query.1.time(round, ops::sqlx_query_100(&sqlx_db, sql)).await;
                insert.0.time(round, ops::orm_insert(&orm_db)).await;
                insert.1.time(round, ops::sqlx_insert(&sqlx_db, sql)).await;
            }
            for ((orm, sqlx), operation) in timers.iter().zip(["find", "update", "query, 100 rows", "insert"]) {
                report(&format!("{label}: {operation}"), orm, sqlx);
            }

            let names = [1, 2].map(|n| format!("interleaved_{label}_transfer_{n}"));
            for name in &names {
                bank(backend, name, 1).await;
            }
            let (one, two) = (fresh("sqlx_transfer_1").await, fresh("sqlx_transfer_2").await);
            let (mut orm, mut sqlx) = (Timer(Duration::ZERO), Timer(Duration::ZERO));
            for round in 0..ROUNDS {
                orm.time(round, async {
                    ops::orm_transfer(&names[0], &names[1], false).await.unwrap()
                })
                .await;
                sqlx.time(round, ops::sqlx_transfer(&one, &two, sql)).await;
            }
            report(&format!("{label}: transfer between two databases"), &orm, &sqlx);
        }
    });
}

//! The ORM against raw sqlx, measured alternating: every round runs both sides of each pair, each on
//! a database of its own (seeded alike), the ORM first in even rounds and sqlx first in odd ones. Drift over the
//! run (WAL checkpoints, autovacuum, the page cache, other work on the machine) then falls on both
//! sides alike, and so does the cost of going first (on SQLite, the first fsync of a round also
//! flushes what the round before left to the file system's journal), which a benchmark that
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

/// The times of `run` over the measured rounds.
#[derive(Default)]
struct Timer(Vec<Duration>);

impl Timer {
    async fn time(&mut self, round: u32, run: impl Future<Output = ()>) {
        let started = Instant::now();
        run.await;
        if round >= WARM_UP {
            self.0.push(started.elapsed());
        }
    }

    fn mean(&self) -> Duration {
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }

    fn median(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    }
}

/// Runs both sides of a pair, in the order that alternates with `round`.
async fn both(
    round: u32,
    orm: &mut Timer,
    run_orm: impl Future<Output = ()>,
    sqlx: &mut Timer,
    run_sqlx: impl Future<Output = ()>,
) {
    if round.is_multiple_of(2) {
        orm.time(round, run_orm).await;
        sqlx.time(round, run_sqlx).await;
    } else {
        sqlx.time(round, run_sqlx).await;
        orm.time(round, run_orm).await;
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
            let orm_db: &Database = &bank(backend, &format!("interleaved_{label}_orm"), 200).await;
            let sqlx_db: &Database = &bank(backend, &format!("interleaved_{label}_sqlx"), 200).await;
            let mut timers: Vec<(Timer, Timer)> = (0..4).map(|_| (Timer::default(), Timer::default())).collect();
            let mut account = Account::find(orm_db, 7).await.unwrap();
            for round in 0..ROUNDS {
                let [find, update, query, insert] = timers.as_mut_slice() else {
                    unreachable!()
                };
                both(
                    round,
                    &mut find.0,
                    ops::orm_find(orm_db),
                    &mut find.1,
                    ops::sqlx_find(sqlx_db, sql),
                )
                .await;
                account.balance += 1;
                let (mine, theirs) = (account.clone(), account.clone());
                let orm_update = ops::orm_update(orm_db, mine);
                both(
                    round,
                    &mut update.0,
                    orm_update,
                    &mut update.1,
                    ops::sqlx_update(sqlx_db, sql, theirs),
                )
                .await;
                let orm_query = ops::orm_query_100(orm_db);
                both(
                    round,
                    &mut query.0,
                    orm_query,
                    &mut query.1,
                    ops::sqlx_query_100(sqlx_db, sql),
                )
                .await;
                both(
                    round,
                    &mut insert.0,
                    ops::orm_insert(orm_db),
                    &mut insert.1,
                    ops::sqlx_insert(sqlx_db, sql),
                )
                .await;
            }
            for ((orm, sqlx), operation) in timers.iter().zip(["find", "update", "query, 100 rows", "insert"]) {
                report(&format!("{label}: {operation}"), orm, sqlx);
            }

            let names = [1, 2].map(|n| format!("interleaved_{label}_transfer_{n}"));
            for name in &names {
                bank(backend, name, 1).await;
            }
            let one = bank(backend, &format!("interleaved_{label}_sqlx_transfer_1"), 1).await;
            let two = bank(backend, &format!("interleaved_{label}_sqlx_transfer_2"), 1).await;
            let (mut orm, mut sqlx) = (Timer::default(), Timer::default());
            for round in 0..ROUNDS {
                let orm_transfer = async { ops::orm_transfer(&names[0], &names[1], false).await.unwrap() };
                both(
                    round,
                    &mut orm,
                    orm_transfer,
                    &mut sqlx,
                    ops::sqlx_transfer(&one, &two, sql),
                )
                .await;
            }
            report(&format!("{label}: transfer between two databases"), &orm, &sqlx);
        }
        markers().await;
    });
}

/// The two-database transfer on PostgreSQL with commit markers (both databases migrated), against
/// raw sqlx sending the same statements with the same marker inserts, the same without the marker
/// inserts, and a plain `BEGIN` ... `COMMIT` transfer, in rotating order each round.
async fn markers() {
    let sql = Sql::new(Backend::Postgres);
    let names = [1, 2].map(|n| format!("interleaved_markers_orm_{n}"));
    for name in &names {
        activerecord::migrate::run(&bank(Backend::Postgres, name, 1).await)
            .await
            .unwrap();
    }
    // Each raw side on two databases of its own, migrated like the ORM's.
    let mut raw = Vec::new();
    for side in ["marked", "unmarked", "plain"] {
        let mut pair = Vec::new();
        for n in 1..=2 {
            let db = bank(Backend::Postgres, &format!("interleaved_markers_sqlx_{side}_{n}"), 1).await;
            activerecord::migrate::run(&db).await.unwrap();
            pair.push(db);
        }
        raw.push(pair);
    }
    let mut timers: [Timer; 4] = std::array::from_fn(|_| Timer::default());
    for round in 0..ROUNDS {
        // A unit id and a creation time shaped like the ORM's.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let unit = format!("{now:x}-{round:016x}");
        for turn in 0..4 {
            let side = (turn + round as usize) % 4;
            let timer = &mut timers[side];
            match side {
                0 => {
                    timer
                        .time(round, async {
                            ops::orm_transfer(&names[0], &names[1], false).await.unwrap()
                        })
                        .await
                }
                1 => {
                    timer
                        .time(
                            round,
                            ops::sqlx_transfer_as_the_orm_does(&raw[0][0], &raw[0][1], sql, Some((&unit, now))),
                        )
                        .await
                }
                2 => {
                    timer
                        .time(
                            round,
                            ops::sqlx_transfer_as_the_orm_does(&raw[1][0], &raw[1][1], sql, None),
                        )
                        .await
                }
                _ => timer.time(round, ops::sqlx_transfer(&raw[2][0], &raw[2][1], sql)).await,
            }
        }
    }
    let [orm, marked, unmarked, plain] = &timers;
    println!(
        "\n| PostgreSQL, transfer between two databases | median | mean | ratio of medians (of means) |\n| --- | --- | --- | --- |"
    );
    let line = |what: &str, timer: &Timer, to: &Timer, against: &str| {
        println!(
            "| {what} | {:.1?} | {:.1?} | {:.2}x ({:.2}x) {against} |",
            timer.median(),
            timer.mean(),
            timer.median().as_secs_f64() / to.median().as_secs_f64(),
            timer.mean().as_secs_f64() / to.mean().as_secs_f64()
        );
    };
    line("ORM, with markers", orm, marked, "of raw sqlx with markers");
    line(
        "raw sqlx, the ORM's statements with markers",
        marked,
        unmarked,
        "of the same without markers",
    );
    line(
        "raw sqlx, the ORM's statements without markers",
        unmarked,
        plain,
        "of a plain BEGIN/COMMIT transfer",
    );
    line("raw sqlx, plain BEGIN ... COMMIT", plain, plain, "");
}

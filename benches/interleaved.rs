//! The ORM against raw sqlx, measured alternating: every round runs both sides of each pair, each on
//! a database of its own (seeded alike), the ORM first in even rounds and sqlx first in odd ones. Drift over the
//! run (WAL checkpoints, autovacuum, the page cache, other work on the machine) then falls on both
//! sides alike, and so does the cost of going first (on SQLite, the first fsync of a round also
//! flushes what the round before left to the file system's journal), which a benchmark that
//! measures one side after the other cannot promise. Prints a table of mean times and ratios.
//!
//! `cargo bench --bench interleaved [-- pairs|markers]` runs every section or the one named;
//! `ACTIVERECORD_BENCH_ROUNDS=N` measures N rounds instead of 3,000 (for a quick check), and
//! `ACTIVERECORD_BENCH_DURABLE=1` runs on PostgreSQL and MariaDB servers that sync every commit to
//! the disk (`testkit::Durability`), and `ACTIVERECORD_BENCH_DETECT_DEADLOCKS=0` turns the ORM's
//! deadlock detector off (it is on by default). Results: docs/performance.md.

mod common;

use activerecord::{Backend, Database, Model};
use common::ops::{self, Control, Sql};
use common::{Account, bank, runtime, settings};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The rounds measured: 3,000 unless `ACTIVERECORD_BENCH_ROUNDS` says otherwise.
fn rounds() -> u32 {
    static ROUNDS: OnceLock<u32> = OnceLock::new();
    *ROUNDS.get_or_init(|| match std::env::var("ACTIVERECORD_BENCH_ROUNDS") {
        Ok(n) => n.parse().expect("ACTIVERECORD_BENCH_ROUNDS must be a whole number"),
        Err(_) => 3000,
    })
}

/// The rounds run first and not measured: one fifteenth of the measured ones (200 of 3,000).
fn warm_up() -> u32 {
    rounds() / 15
}

/// All the rounds of a section: the warm-up, then the measured ones.
fn all_rounds() -> std::ops::Range<u32> {
    0..warm_up() + rounds()
}

/// The times of `run` over the measured rounds.
#[derive(Default)]
struct Timer(Vec<Duration>);

impl Timer {
    async fn time(&mut self, round: u32, run: impl Future<Output = ()>) {
        let started = Instant::now();
        run.await;
        if round >= warm_up() {
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

/// A time in microseconds, to a tenth.
fn micros(time: Duration) -> String {
    format!("{:.1} µs", time.as_secs_f64() * 1e6)
}

fn report(operation: &str, orm: &Timer, sqlx: &Timer) {
    let ratio = orm.mean().as_secs_f64() / sqlx.mean().as_secs_f64();
    println!(
        "| {operation} | {} | {} | {ratio:.2}x |",
        micros(orm.mean()),
        micros(sqlx.mean())
    );
}

fn main() {
    // `cargo test --benches` runs benchmarks once as tests: nothing to measure then.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    // `cargo bench` passes `--bench`; a word names the section to run.
    let asked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs = |section: &str| asked.is_empty() || asked.iter().any(|a| a == section);
    if std::env::var("ACTIVERECORD_BENCH_DETECT_DEADLOCKS").as_deref() == Ok("0") {
        activerecord::ConnectionManager::detect_deadlocks(None);
    }
    let rt = runtime();
    rt.block_on(async {
        if runs("pairs") {
            pairs().await;
        }
        if runs("markers") {
            markers(Backend::Postgres).await;
            markers(Backend::MySql).await;
        }
    });
}

/// Each operation of the ORM against raw sqlx, on SQLite and on PostgreSQL, and the two-database
/// transfer against a plain hand-written one.
async fn pairs() {
    println!("| operation | ORM | sqlx | ORM / sqlx |\n| --- | --- | --- | --- |");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let label = format!("{backend:?}").to_lowercase();
        let sql = Sql::new(backend);
        let orm_db: &Database = &bank(backend, &format!("interleaved_{label}_orm"), 200).await;
        let sqlx_db: &Database = &bank(backend, &format!("interleaved_{label}_sqlx"), 200).await;
        let mut timers: Vec<(Timer, Timer)> = (0..4).map(|_| (Timer::default(), Timer::default())).collect();
        let mut account = Account::find(orm_db, 7).await.unwrap();
        for round in all_rounds() {
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
        for round in all_rounds() {
            let orm_transfer = async { ops::orm_transfer(&names[0], &names[1], false).await.unwrap() };
            both(
                round,
                &mut orm,
                orm_transfer,
                &mut sqlx,
                ops::sqlx_transfer((&one, sql), (&two, sql)),
            )
            .await;
        }
        report(&format!("{label}: transfer between two databases"), &orm, &sqlx);
    }
}

/// A new database on `backend` named `name`, with one account and the ORM's tables (markers).
async fn migrated_bank(backend: Backend, name: &str) -> Database {
    let db = bank(backend, name, 1).await;
    activerecord::migrate::run(&db).await.unwrap();
    db
}

/// The two-database transfer with commit markers (both databases migrated), PostgreSQL as the root
/// and `joined` (PostgreSQL or MariaDB) as the second database, against raw sqlx sending the same
/// statements with the same marker inserts, the same without the marker inserts, and a plain
/// `BEGIN` ... `COMMIT` transfer, in rotating order each round.
async fn markers(joined: Backend) {
    let label = format!("{joined:?}").to_lowercase();
    let backends = [Backend::Postgres, joined];
    let names = [1, 2].map(|n| format!("interleaved_markers_{label}_orm_{n}"));
    for (backend, name) in backends.iter().zip(&names) {
        migrated_bank(*backend, name).await;
    }
    // Each raw side on two databases of its own, migrated like the ORM's.
    let mut raw = Vec::new();
    for side in ["marked", "unmarked", "plain"] {
        let mut pair = Vec::new();
        for (n, backend) in backends.iter().enumerate() {
            let name = format!("interleaved_markers_{label}_sqlx_{side}_{}", n + 1);
            pair.push(migrated_bank(*backend, &name).await);
        }
        raw.push(pair);
    }
    let sql = backends.map(Sql::new);
    let control = backends.map(Control::new);
    let sides: Vec<[(&Database, Sql, Control); 2]> = raw
        .iter()
        .map(|pair| [0, 1].map(|n| (&pair[n], sql[n], control[n])))
        .collect();
    let mut timers: [Timer; 4] = std::array::from_fn(|_| Timer::default());
    for round in all_rounds() {
        // A unit id and a creation time shaped like the ORM's.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let unit = format!("{now:x}-{round:016x}");
        for turn in 0..4 {
            let which = (turn + round as usize) % 4;
            let timer = &mut timers[which];
            match which {
                0 => {
                    timer
                        .time(round, async {
                            ops::orm_transfer(&names[0], &names[1], false).await.unwrap()
                        })
                        .await
                }
                1 | 2 => {
                    let ([one, two], marker) = if which == 1 {
                        (sides[0], Some((unit.as_str(), now)))
                    } else {
                        (sides[1], None)
                    };
                    let transfer = ops::sqlx_transfer_as_the_orm_does(one, two, marker);
                    timer.time(round, transfer).await
                }
                _ => {
                    let transfer = ops::sqlx_transfer((&raw[2][0], sql[0]), (&raw[2][1], sql[1]));
                    timer.time(round, transfer).await
                }
            }
        }
    }
    let [orm, marked, unmarked, plain] = &timers;
    let pair = match joined {
        Backend::MySql => "PostgreSQL + MariaDB",
        _ => "PostgreSQL + PostgreSQL",
    };
    println!("\n{pair}, {} rounds after {} of warm-up", rounds(), warm_up());
    println!("- PostgreSQL: {}", settings(&raw[0][0]).await);
    if joined == Backend::MySql {
        println!("- MariaDB: {}", settings(&raw[0][1]).await);
    }
    println!(
        "\n| {pair}, transfer between two databases | median | mean | ratio of medians (of means) |\n| --- | --- | --- | --- |"
    );
    let line = |what: &str, timer: &Timer, to: &Timer, against: &str| {
        println!(
            "| {what} | {} | {} | {:.2}x ({:.2}x) {against} |",
            micros(timer.median()),
            micros(timer.mean()),
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

//! Two-phase commit against best effort, on the same transfer (two rows, each read `FOR UPDATE`
//! and updated, on two databases), PostgreSQL + MariaDB and PostgreSQL + PostgreSQL:
//! - best effort, both databases with the marker table (each `COMMIT` carries its marker);
//! - two-phase with a commit point site (the same databases' set-up: the root is the site, the
//!   joined database is prepared, no log write);
//! - two-phase with the decision in the coordinator's log (databases without the marker table: both
//!   prepared, one log row, in a SQLite file in WAL mode with `synchronous` FULL).
//!
//! One task: every round runs each strategy once, in an order that rotates with the round, so
//! drift falls on all alike; medians and their ratios. Sixteen tasks, each on accounts of its own:
//! each strategy runs for a few seconds in turn, three times over; transfers per second and the
//! median time of one transfer.
//!
//! `cargo bench --bench strategies`; `ACTIVERECORD_BENCH_DURABLE=1` for servers that sync every
//! commit to the disk (the figures in docs/performance.md), `ACTIVERECORD_BENCH_ROUNDS=N` for N
//! single-task rounds instead of 1,000, `ACTIVERECORD_BENCH_SECONDS=S` for S seconds per
//! sixteen-task turn instead of 4.

mod common;

use activerecord::Backend;
use activerecord::two_phase::{Coordinator, CoordinatorConfig};
use common::ops::orm_transfer_of;
use common::{bank, runtime, settings};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How many tasks run at once in the concurrent part.
const TASKS: i64 = 16;

/// The strategies compared, in the order of the tables.
const STRATEGIES: [&str; 3] = [
    "best effort (markers)",
    "two-phase, commit point site",
    "two-phase, decision in the log",
];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name} must be a whole number"))
    })
}

fn main() {
    // `cargo test --benches` runs benchmarks once as tests: nothing to measure then.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let rt = runtime();
    rt.block_on(async {
        let log = testkit::scratch_dir().join("bench-strategies-log.db");
        Coordinator::install(CoordinatorConfig::new("bench").log_in_file(&log))
            .await
            .unwrap();
        println!("Decision log: {} (SQLite, WAL, synchronous FULL)", log.display());
        for joined in [Backend::MySql, Backend::Postgres] {
            compare(joined).await;
        }
    });
}

/// The databases of one strategy: the root's and the joined one's connection names.
type Pair = [String; 2];

async fn compare(joined: Backend) {
    let label = format!("{joined:?}").to_lowercase();
    let title = match joined {
        Backend::MySql => "PostgreSQL + MariaDB",
        _ => "PostgreSQL + PostgreSQL",
    };
    let mut pairs: Vec<Pair> = Vec::new();
    for (s, migrated) in [("best_effort", true), ("site", true), ("log", false)] {
        let names = [1, 2].map(|n| format!("strategies_{label}_{s}_{n}"));
        for (backend, name) in [Backend::Postgres, joined].iter().zip(&names) {
            let db = bank(*backend, name, TASKS).await;
            if migrated {
                activerecord::migrate::run(&db).await.unwrap();
            }
            if s == "best_effort" {
                println!("- {title}, {}: {}", name, settings(&db).await);
            }
        }
        pairs.push(names);
    }
    let two_phase = |s: usize| s > 0;

    // One task.
    let rounds = env_number("ACTIVERECORD_BENCH_ROUNDS", 1000) as usize;
    let warm_up = rounds / 10;
    let mut times: [Vec<Duration>; 3] = Default::default();
    for round in 0..warm_up + rounds {
        for turn in 0..3 {
            let s = (turn + round) % 3;
            let started = Instant::now();
            orm_transfer_of(&pairs[s][0], &pairs[s][1], 1, two_phase(s))
                .await
                .unwrap();
            if round >= warm_up {
                times[s].push(started.elapsed());
            }
        }
    }
    let medians = times.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    });
    println!("\n{title}, one task, {rounds} rounds after {warm_up} of warm-up\n");
    println!("| strategy | median | ratio to best effort |\n| --- | --- | --- |");
    for (s, name) in STRATEGIES.iter().enumerate() {
        println!(
            "| {name} | {:.0} µs | {:.2}x |",
            medians[s].as_secs_f64() * 1e6,
            medians[s].as_secs_f64() / medians[0].as_secs_f64()
        );
    }

    // Sixteen tasks, each strategy in turn, three times over.
    let seconds = Duration::from_secs(env_number("ACTIVERECORD_BENCH_SECONDS", 4));
    let mut counts = [0u64; 3];
    let mut latencies: [Vec<Duration>; 3] = Default::default();
    for _ in 0..3 {
        for s in 0..3 {
            let (done, mut took) = concurrently(&pairs[s], two_phase(s), seconds).await;
            counts[s] += done;
            latencies[s].append(&mut took);
        }
    }
    let per_second = counts.map(|n| n as f64 / (3.0 * seconds.as_secs_f64()));
    let medians = latencies.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    });
    println!("\n{title}, {TASKS} tasks, three turns of {seconds:?} per strategy\n");
    println!(
        "| strategy | transfers/s | median time of one | ratio of medians to best effort |\n| --- | --- | --- | --- |"
    );
    for (s, name) in STRATEGIES.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:.0} µs | {:.2}x |",
            per_second[s],
            medians[s].as_secs_f64() * 1e6,
            medians[s].as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}

/// Runs [`TASKS`] tasks of transfers on `pair` for `seconds`, each on its own accounts; returns how
/// many committed and the time of each.
async fn concurrently(pair: &Pair, two_phase: bool, seconds: Duration) -> (u64, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for account in 1..=TASKS {
        let (pair, stop) = (pair.clone(), stop.clone());
        tasks.spawn(async move {
            let mut took = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                orm_transfer_of(&pair[0], &pair[1], account, two_phase).await.unwrap();
                took.push(started.elapsed());
            }
            took
        });
    }
    tokio::time::sleep(seconds).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    while let Some(took) = tasks.join_next().await {
        all.append(&mut took.unwrap());
    }
    (all.len() as u64, all)
}

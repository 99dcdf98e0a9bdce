//! Opposite transfers across two databases, with the process's deadlock detector on and off.
//!
//! Four tasks move money between one account on each database, two in each direction, for a fixed
//! time: every pair of opposite transfers that overlap deadlocks across the databases. A failed
//! transfer is retried after a short pause with jitter. With detection on, the younger unit of
//! each cycle gets `Error::Deadlock` soon after the threshold; with it off, the waits end at the
//! lock-wait limit (`Error::LockTimeout`, 1 s: MariaDB's smallest), often both at once. Printed:
//! transfers committed per second, deadlocks broken and the time each had waited (p50, p99), lock
//! waits given up.
//!
//! `cargo bench --bench deadlocks` (starts the servers it needs, like the tests).

mod common;

use activerecord::{Backend, ConnectionManager, Error};
use std::time::{Duration, Instant};
use testkit::bank::transfer_in;

/// How long each configuration runs.
const RUN: Duration = Duration::from_secs(20);
/// The lock-wait limit of every unit of work.
const LIMIT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Run {
    elapsed: Duration,
    committed: usize,
    deadlocks: Vec<Duration>,
    lock_timeouts: usize,
}

fn main() {
    testkit::init_logging();
    let runtime = common::runtime();
    runtime.block_on(async {
        println!(
            "| databases | detection | transfers/s | deadlocks broken | waited p50 | waited p99 | lock waits given up |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for (first, second) in [
            (Backend::Postgres, Backend::Postgres),
            (Backend::Postgres, Backend::MySql),
            (Backend::Sqlite, Backend::Sqlite),
        ] {
            for detection in [Some(Duration::from_millis(150)), None] {
                ConnectionManager::detect_deadlocks(detection);
                let run = opposite(first, second, detection.is_some()).await;
                let mut waited = run.deadlocks.clone();
                waited.sort();
                let percentile = |p: f64| {
                    waited
                        .get(((waited.len() as f64 - 1.0) * p).round() as usize)
                        .map_or("-".to_owned(), |d| format!("{d:.0?}"))
                };
                println!(
                    "| {first:?} + {second:?} | {} | {:.1} | {} | {} | {} | {} |",
                    if detection.is_some() { "on (150 ms)" } else { "off" },
                    run.committed as f64 / run.elapsed.as_secs_f64(),
                    run.deadlocks.len(),
                    percentile(0.5),
                    percentile(0.99),
                    run.lock_timeouts,
                );
            }
        }
    });
}

/// Runs the four tasks on a fresh pair of databases for [`RUN`].
async fn opposite(first: Backend, second: Backend, detection: bool) -> Run {
    let label = format!("deadlocks_{first:?}_{second:?}_{detection}").to_lowercase();
    let (n1, n2) = (format!("{label}_1"), format!("{label}_2"));
    common::bank(first, &n1, 1).await;
    common::bank(second, &n2, 1).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let (from, to) = if task % 2 == 0 {
                (n1.clone(), n2.clone())
            } else {
                (n2.clone(), n1.clone())
            };
            tokio::spawn(async move {
                let mut run = Run::default();
                while started.elapsed() < RUN {
                    let result = ConnectionManager::using(&from)
                        .lock_timeout(LIMIT)
                        .transaction(async |tx| transfer_in(tx, 1, (&to, 1), 1).await)
                        .await;
                    match result {
                        Ok(()) => {
                            run.committed += 1;
                            continue;
                        }
                        Err(Error::Deadlock { waited, .. }) => run.deadlocks.push(waited),
                        Err(Error::LockTimeout { .. }) => run.lock_timeouts += 1,
                        Err(e) => panic!("a transfer failed otherwise: {e}"),
                    }
                    // A pause with jitter before the retry, so that two units that gave up at
                    // once do not meet again at once.
                    let jitter = started.elapsed().subsec_nanos() % 20;
                    tokio::time::sleep(Duration::from_millis(2 + u64::from(jitter))).await;
                }
                run
            })
        })
        .collect();
    let mut total = Run::default();
    for task in tasks {
        let run = task.await.expect("a task");
        total.committed += run.committed;
        total.deadlocks.extend(run.deadlocks);
        total.lock_timeouts += run.lock_timeouts;
    }
    total.elapsed = started.elapsed();
    total
}

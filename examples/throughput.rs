//! Throughput of cross-database transfers: N concurrent tasks share a fixed number of transfers
//! between two databases (best-effort nested scopes), for N = 1 and N = 16; prints transfers per
//! second and the p50 and p99 latency of one transfer.
//!
//! Run: `cargo run --release --example throughput -- [sqlite|postgres|mariadb] [transfers]`
//! (default: sqlite, 2000). The servers are throwaway ones started for the run.

mod common;

use activerecord::{ActiveRecord, Backend, ConnectionManager, Model, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "accounts")]
struct Account {
    id: Option<i64>,
    owner: String,
    balance: i64,
}

const ACCOUNTS: i64 = 100;

/// Moves 1 from account `from` of the first database to account `to` of the second.
async fn transfer(from: i64, to: i64) -> Result<()> {
    ConnectionManager::using("throughput_1")
        .transaction(async |tx| {
            let mut payer = Account::find_for_update(tx, from).await?;
            payer.balance -= 1;
            payer.save(tx).await?;
            ConnectionManager::using("throughput_2")
                .transaction(async |tx| {
                    let mut payee = Account::find_for_update(tx, to).await?;
                    payee.balance += 1;
                    payee.save(tx).await
                })
                .await
        })
        .await
}

/// Runs `total` transfers on `tasks` tasks; returns every transfer's latency and the wall time.
async fn run(tasks: usize, total: usize) -> (Vec<Duration>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return latencies;
                    }
                    let account = (n as i64 * 7919) % ACCOUNTS + 1;
                    let began = Instant::now();
                    loop {
                        match transfer(account, account).await {
                            Ok(()) => break,
                            Err(e) if e.is_transient() => continue,
                            Err(e) => panic!("transfer failed: {e}"),
                        }
                    }
                    latencies.push(began.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for worker in workers {
        latencies.extend(worker.await.expect("a worker"));
    }
    (latencies, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let backend = match args.get(1).map(String::as_str).unwrap_or("sqlite") {
        "sqlite" => Backend::Sqlite,
        "postgres" => Backend::Postgres,
        "mariadb" | "mysql" => Backend::MySql,
        other => panic!("unknown backend {other}: use sqlite, postgres or mariadb"),
    };
    let total: usize = args.get(2).map_or(2000, |n| n.parse().expect("a number of transfers"));
    let databases = common::servers::connect_servers(&[("throughput_1", backend), ("throughput_2", backend)]).await?;
    for db in &databases {
        common::recreate_table(db, "accounts", "owner VARCHAR(100) NOT NULL, balance BIGINT NOT NULL").await?;
        for n in 0..ACCOUNTS {
            Account::create(
                db,
                Account {
                    id: None,
                    owner: format!("owner {n}"),
                    balance: 1_000_000,
                },
            )
            .await?;
        }
    }
    println!("{backend}: {total} transfers between two databases, best-effort nested scopes");
    println!("{:>6} {:>14} {:>10} {:>10}", "tasks", "transfers/s", "p50", "p99");
    for tasks in [1, 16] {
        let (mut latencies, wall) = run(tasks, total).await;
        latencies.sort();
        println!(
            "{tasks:>6} {:>14.0} {:>10.2?} {:>10.2?}",
            total as f64 / wall.as_secs_f64(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99)
        );
    }
    let mut sum = 0;
    for db in &databases {
        sum += Account::all(db).await?.iter().map(|a| a.balance).sum::<i64>();
    }
    assert_eq!(sum, 2 * ACCOUNTS * 1_000_000, "the transfers kept the total");
    Ok(())
}

//! The guide's `retry_operation` (best practices: "idempotent operations and retries"), first in
//! its own shape, then in the library's: `retry(&policy, ..)` for any operation, and
//! `ConnectionManager::using(..).retry(policy).transaction(..)` for a unit of work.
//!
//! The guide's helper retries every error. That also retries a refusal that no retry can change
//! (insufficient funds), and, worse, a partial or unknown commit, which a retry could apply twice.
//! The library's form retries only errors that are safe to retry (`Error::is_transient`: a lock
//! wait given up, a deadlock or serialization failure, a connection lost before anything
//! committed), with exponential backoff and jitter, and returns every other error at once.
//!
//! Run: `cargo run --example retry_operation` (two SQLite files), or with
//! `ACTIVERECORD_BANK_DB_1_URL` / `ACTIVERECORD_BANK_DB_2_URL` set to PostgreSQL or MariaDB URLs
//! to also see a lock wait given up and retried.

// The integration tests include this file as a module (to call `run`), beside the one `common`
// they include for every example.
#[cfg(not(test))]
mod common;
#[cfg(test)]
use super::common;

use activerecord::{ActiveRecord, Ambient, Backend, ConnectionManager, Error, Model, Result, RetryPolicy, retry};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "accounts")]
struct Account {
    id: Option<i64>,
    owner: String,
    balance: i64,
}

/// The connections the example runs on.
pub const CONNECTIONS: [&str; 2] = ["bank_db_1", "bank_db_2"];

/// The guide's `retry_operation`, line for line: up to `max_attempts` runs, `retry_delay` between
/// them, and the last error when every run failed, whatever the error.
async fn retry_operation<T>(
    mut operation: impl AsyncFnMut() -> Result<T>,
    max_attempts: u32,
    retry_delay: Duration,
) -> Result<T> {
    let mut attempts = 0;
    let mut last_error = None;
    while attempts < max_attempts {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                last_error = Some(e);
                attempts += 1;
                if attempts < max_attempts {
                    tokio::time::sleep(retry_delay).await;
                }
            }
        }
    }
    // If we get here, every attempt failed.
    Err(last_error.expect("at least one attempt ran"))
}

/// The guide's transfer: `amount` from `from` (in `bank_db_1`) to `to` (in `bank_db_2`), counting
/// its runs in `runs`.
async fn transfer(from: i64, to: i64, amount: i64, runs: &AtomicU32) -> Result<()> {
    ConnectionManager::using(CONNECTIONS[0])
        .transaction(async |_| transfer_body(from, to, amount, runs).await)
        .await
}

/// The body of a transfer, in the scope opened on `bank_db_1`.
async fn transfer_body(from: i64, to: i64, amount: i64, runs: &AtomicU32) -> Result<()> {
    runs.fetch_add(1, Ordering::SeqCst);
    let mut payer = Account::find_for_update(&Ambient, from).await?;
    if payer.balance < amount {
        return Err(Error::rejected("insufficient funds"));
    }
    payer.balance -= amount;
    payer.save(&Ambient).await?;
    ConnectionManager::using(CONNECTIONS[1])
        .transaction(async |_| {
            let mut payee = Account::find_for_update(&Ambient, to).await?;
            payee.balance += amount;
            payee.save(&Ambient).await
        })
        .await
}

async fn balances(alice: i64, bob: i64) -> Result<(i64, i64)> {
    let a = Account::find(&ConnectionManager::get(CONNECTIONS[0])?, alice).await?;
    let b = Account::find(&ConnectionManager::get(CONNECTIONS[1])?, bob).await?;
    Ok((a.balance, b.balance))
}

// Unused where the integration tests include this file as a module.
#[cfg_attr(test, expect(dead_code))]
#[tokio::main]
async fn main() -> Result<()> {
    common::connect(&CONNECTIONS).await?;
    run().await
}

/// The demo, on the configured connections `bank_db_1` and `bank_db_2`: alice (100) in the first,
/// bob (50) in the second. Moves 30 with the guide's helper; shows that the helper retries a
/// refusal three times where the library's form runs it once; and, on servers, a transfer whose
/// first run gives up waiting for a lock another transaction holds and whose retry goes through.
pub async fn run() -> Result<()> {
    let databases = [
        ConnectionManager::get(CONNECTIONS[0])?,
        ConnectionManager::get(CONNECTIONS[1])?,
    ];
    for db in &databases {
        common::recreate_table(db, "accounts", "owner VARCHAR(100) NOT NULL, balance BIGINT NOT NULL").await?;
    }
    let account = |owner: &str, balance| Account {
        id: None,
        owner: owner.into(),
        balance,
    };
    let alice = Account::create(&databases[0], account("alice", 100))
        .await?
        .id
        .expect("saved");
    let bob = Account::create(&databases[1], account("bob", 50))
        .await?
        .id
        .expect("saved");

    // 1. The guide's shape: the transfer succeeds at once.
    let runs = AtomicU32::new(0);
    retry_operation(
        async || transfer(alice, bob, 30, &runs).await,
        3,
        Duration::from_millis(10),
    )
    .await?;
    println!(
        "guide's retry_operation, transfer 30: {:?} after {} run",
        balances(alice, bob).await?,
        runs.load(Ordering::SeqCst)
    );

    // 2. The guide's shape on a refusal: three runs, the same answer each time.
    let runs = AtomicU32::new(0);
    let refused = retry_operation(
        async || transfer(alice, bob, 1_000, &runs).await,
        3,
        Duration::from_millis(10),
    )
    .await;
    assert!(matches!(refused, Err(Error::Rejected(_))), "{refused:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 3, "the guide's helper retries every error");
    println!("guide's retry_operation, transfer 1000: refused after 3 runs");

    // 3. The library's form runs a refusal once: it is not safe (or useful) to retry.
    let runs = AtomicU32::new(0);
    let policy = RetryPolicy::new(3).backoff(Duration::from_millis(10), Duration::from_millis(100));
    let refused = retry(&policy, async || transfer(alice, bob, 1_000, &runs).await).await;
    assert!(matches!(refused, Err(Error::Rejected(_))), "{refused:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "a refusal is not retried");
    println!("retry(&policy, ..), transfer 1000: refused after 1 run");
    assert_eq!(balances(alice, bob).await?, (70, 80), "the refusals changed nothing");

    // 4. A unit of work retried on a lock wait given up (servers: SQLite's writer would wait for
    //    its busy_timeout instead). Another transaction holds bob's row for a while.
    if databases[1].backend() != Backend::Sqlite {
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
        let holder = tokio::spawn(ConnectionManager::using(CONNECTIONS[1]).transaction(async move |_| {
            Account::find_for_update(&Ambient, bob).await?;
            locked_tx.send(()).expect("the demo waits for the lock");
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            Ok::<_, Error>(())
        }));
        locked_rx.await.expect("the holder took the lock");
        let runs = AtomicU32::new(0);
        ConnectionManager::using(CONNECTIONS[0])
            .lock_timeout(Duration::from_millis(200))
            .retry(RetryPolicy::new(6).backoff(Duration::from_millis(300), Duration::from_secs(1)))
            .transaction(async |_| transfer_body(alice, bob, 10, &runs).await)
            .await?;
        holder.await.expect("the holder ran")?;
        let runs = runs.load(Ordering::SeqCst);
        assert!(runs >= 2, "the first run gave up waiting for bob's row");
        println!("using(..).retry(policy), transfer 10 while bob's row was locked: done after {runs} runs");
        assert_eq!(balances(alice, bob).await?, (60, 90), "applied once");
    }
    Ok(())
}

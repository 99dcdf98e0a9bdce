//! The ported examples run as a user runs them (`cargo run --example NAME`), against the
//! databases named in the environment, and leave the databases as they promise.

use crate::common::Account;
use activerecord::{Backend, ConnectionManager, Database, Model, fetch_column};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs example `name` with `args` on two new databases of `backends`, given to it as the
/// connections `connections`; checks that it succeeded and printed `expected`. Returns the two
/// databases, to check what the example left in them.
async fn run_on(
    name: &str,
    args: &[&str],
    connections: [&str; 2],
    backends: [Backend; 2],
    expected: &str,
) -> [Database; 2] {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let urls = [
        testkit::fresh_database(backends[0]).await,
        testkit::fresh_database(backends[1]).await,
    ];
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["run", "--quiet", "--example", name, "--"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (connection, url) in connections.iter().zip(&urls) {
        command.env(format!("ACTIVERECORD_{}_URL", connection.to_uppercase()), url);
    }
    let output = command.output().expect("run cargo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "example {name} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(expected),
        "example {name} did not print {expected:?}:\n{stdout}"
    );
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let mut databases = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        databases.push(
            ConnectionManager::configure(&format!("example_{run}_{i}"), url.as_str())
                .await
                .unwrap(),
        );
    }
    databases.try_into().expect("two databases")
}

async fn balances(dbs: &[Database; 2]) -> (i64, i64) {
    (
        Account::find(&dbs[0], 1).await.unwrap().balance,
        Account::find(&dbs[1], 1).await.unwrap().balance,
    )
}

async fn users(dbs: &[Database; 2]) -> [i64; 2] {
    let mut counts = [0; 2];
    for (count, db) in counts.iter_mut().zip(dbs) {
        *count = fetch_column::<i64, _>(db, "SELECT COUNT(*) FROM t_user").await.unwrap()[0];
    }
    counts
}

async fn transfer_funds_on(backends: [Backend; 2]) {
    let dbs = run_on(
        "transfer_funds",
        &[],
        ["bank_db_1", "bank_db_2"],
        backends,
        "insufficient funds",
    )
    .await;
    assert_eq!(balances(&dbs).await, (70, 80), "only the first transfer moved money");
}

#[tokio::test]
async fn transfer_funds_on_sqlite() {
    transfer_funds_on([Backend::Sqlite, Backend::Sqlite]).await;
}

#[tokio::test]
async fn transfer_funds_on_postgres_and_mariadb() {
    transfer_funds_on([Backend::Postgres, Backend::MySql]).await;
}

async fn save_user_on(args: &[&str], backends: [Backend; 2]) {
    let connections = ["user_db_a", "user_db_b"];
    let dbs = run_on(
        "save_user_two_databases",
        args,
        connections,
        backends,
        "both databases rolled back",
    )
    .await;
    assert_eq!(users(&dbs).await, [1, 1], "only the first saveUser left a user");
}

#[tokio::test]
async fn save_user_two_databases_on_sqlite() {
    save_user_on(&[], [Backend::Sqlite, Backend::Sqlite]).await;
}

#[tokio::test]
async fn save_user_two_databases_on_postgres_and_mariadb() {
    save_user_on(&[], [Backend::Postgres, Backend::MySql]).await;
}

#[tokio::test]
async fn save_user_two_databases_in_two_phase_on_postgres_and_mariadb() {
    save_user_on(&["--two-phase"], [Backend::Postgres, Backend::MySql]).await;
}

#[tokio::test]
async fn two_phase_commit_transfer_on_postgres_and_mariadb() {
    let connections = ["bank_db_1", "bank_db_2"];
    let backends = [Backend::Postgres, Backend::MySql];
    let dbs = run_on(
        "two_phase_commit_transfer",
        &[],
        connections,
        backends,
        "insufficient funds",
    )
    .await;
    // 30 by tpc_* calls, 20 by a two-phase scope; the refused and failed transfers moved nothing.
    assert_eq!(balances(&dbs).await, (50, 100));
}

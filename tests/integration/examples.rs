//! The ported examples run as a user runs them (`cargo run --example NAME`), against the
//! databases named in the environment, and leave the databases as they promise.

use crate::common::Account;
use activerecord::{Backend, ConnectionManager, Model};
use std::process::Command;

/// Runs an example with `args` and connection URLs in its environment; returns what it printed.
fn run_example(name: &str, args: &[&str], urls: &[(&str, &str)]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["run", "--quiet", "--example", name, "--"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (connection, url) in urls {
        command.env(format!("ACTIVERECORD_{}_URL", connection.to_uppercase()), url);
    }
    let output = command.output().expect("run cargo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "example {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn transfer_funds_on(first: Backend, second: Backend) {
    let urls = [
        testkit::fresh_database(first).await,
        testkit::fresh_database(second).await,
    ];
    let printed = run_example(
        "transfer_funds",
        &[],
        &[("bank_db_1", &urls[0]), ("bank_db_2", &urls[1])],
    );
    assert!(printed.contains("insufficient funds"), "{printed}");
    let label = format!("{first:?}_{second:?}").to_lowercase();
    let one = ConnectionManager::configure(&format!("ex_transfer_1_{label}"), urls[0].as_str())
        .await
        .unwrap();
    let two = ConnectionManager::configure(&format!("ex_transfer_2_{label}"), urls[1].as_str())
        .await
        .unwrap();
    let alice = Account::all(&one).await.unwrap();
    let bob = Account::all(&two).await.unwrap();
    assert_eq!(
        (alice[0].owner.as_str(), alice[0].balance),
        ("alice", 70),
        "only the first transfer moved money"
    );
    assert_eq!((bob[0].owner.as_str(), bob[0].balance), ("bob", 80));
}

#[tokio::test]
async fn transfer_funds_on_sqlite() {
    transfer_funds_on(Backend::Sqlite, Backend::Sqlite).await;
}

#[tokio::test]
async fn transfer_funds_on_postgres_and_mariadb() {
    transfer_funds_on(Backend::Postgres, Backend::MySql).await;
}

async fn save_user_on(first: Backend, second: Backend) {
    let urls = [
        testkit::fresh_database(first).await,
        testkit::fresh_database(second).await,
    ];
    let printed = run_example(
        "save_user_two_databases",
        &[],
        &[("user_db_a", &urls[0]), ("user_db_b", &urls[1])],
    );
    assert!(printed.contains("both databases rolled back"), "{printed}");
    for (i, url) in urls.iter().enumerate() {
        let db = ConnectionManager::configure(&format!("ex_user_{i}_{first:?}_{second:?}"), url.as_str())
            .await
            .unwrap();
        let users: Vec<i64> = activerecord::fetch_column(&db, "SELECT COUNT(*) FROM t_user")
            .await
            .unwrap();
        assert_eq!(users, [1], "only the first saveUser left a user in database {i}");
    }
}

#[tokio::test]
async fn save_user_two_databases_on_sqlite() {
    save_user_on(Backend::Sqlite, Backend::Sqlite).await;
}

#[tokio::test]
async fn save_user_two_databases_on_postgres_and_mariadb() {
    save_user_on(Backend::Postgres, Backend::MySql).await;
}

#[tokio::test]
async fn two_phase_commit_transfer_on_postgres_and_mariadb() {
    let urls = [
        testkit::fresh_database(Backend::Postgres).await,
        testkit::fresh_database(Backend::MySql).await,
    ];
    let printed = run_example(
        "two_phase_commit_transfer",
        &[],
        &[("bank_db_1", &urls[0]), ("bank_db_2", &urls[1])],
    );
    assert!(printed.contains("insufficient funds"), "{printed}");
    let one = ConnectionManager::configure("ex_tpc_1", urls[0].as_str())
        .await
        .unwrap();
    let two = ConnectionManager::configure("ex_tpc_2", urls[1].as_str())
        .await
        .unwrap();
    // 30 by tpc_* calls, 20 by a two-phase scope; the refused and failed transfers moved nothing.
    assert_eq!(Account::find(&one, 1).await.unwrap().balance, 50);
    assert_eq!(Account::find(&two, 1).await.unwrap().balance, 100);
}

#[tokio::test]
async fn save_user_two_databases_in_two_phase_on_postgres_and_mariadb() {
    let urls = [
        testkit::fresh_database(Backend::Postgres).await,
        testkit::fresh_database(Backend::MySql).await,
    ];
    let printed = run_example(
        "save_user_two_databases",
        &["--two-phase"],
        &[("user_db_a", &urls[0]), ("user_db_b", &urls[1])],
    );
    assert!(printed.contains("both databases rolled back"), "{printed}");
    for (i, url) in urls.iter().enumerate() {
        let db = ConnectionManager::configure(&format!("ex_user_2pc_{i}"), url.as_str())
            .await
            .unwrap();
        let users: Vec<i64> = activerecord::fetch_column(&db, "SELECT COUNT(*) FROM t_user")
            .await
            .unwrap();
        assert_eq!(users, [1], "only the first saveUser left a user in database {i}");
    }
}

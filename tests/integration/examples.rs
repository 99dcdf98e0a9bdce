//! The ported examples, run by calling their `run` on new databases configured under the
//! connection names the examples use, and checked for what they leave in the databases. Each
//! example asserts its own failure paths (a transfer or a save that does not fail as the guide says
//! panics inside `run`); the balances and rows checked here show that the failures changed nothing.

// The examples' shared set-up, once for all of them (each example uses `super::common` in a test
// build).
#[path = "../../examples/common/mod.rs"]
mod common;
#[path = "../../examples/retry_operation.rs"]
mod retry_operation;
#[path = "../../examples/save_user_two_databases.rs"]
mod save_user_two_databases;
#[path = "../../examples/transfer_funds.rs"]
mod transfer_funds;
#[path = "../../examples/two_phase_commit_transfer.rs"]
mod two_phase_commit_transfer;

use crate::common::Account;
use activerecord::{Backend, ConnectionManager, Database, Model, fetch_column};
use tokio::sync::{Mutex, MutexGuard};

/// The examples run on fixed connection names (`bank_db_1`, ...) of the process-wide registry:
/// one at a time, each holding this lock until it has checked the databases.
static ONE_EXAMPLE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Takes the examples' lock and configures `connections` on new databases of `backends`.
async fn configure(connections: [&str; 2], backends: [Backend; 2]) -> (MutexGuard<'static, ()>, [Database; 2]) {
    testkit::init_logging();
    let guard = ONE_EXAMPLE_AT_A_TIME.lock().await;
    let mut databases = Vec::new();
    for (connection, backend) in connections.into_iter().zip(backends) {
        let url = testkit::fresh_database(backend).await;
        databases.push(ConnectionManager::configure(connection, url.as_str()).await.unwrap());
    }
    (guard, databases.try_into().expect("two databases"))
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
    let (_one_at_a_time, dbs) = configure(transfer_funds::CONNECTIONS, backends).await;
    transfer_funds::run().await.unwrap();
    assert_eq!(balances(&dbs).await, (70, 80), "only the first transfer moved money");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_funds_on_sqlite() {
    transfer_funds_on([Backend::Sqlite, Backend::Sqlite]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_funds_on_postgres_and_mariadb() {
    transfer_funds_on([Backend::Postgres, Backend::MySql]).await;
}

async fn retry_operation_on(backends: [Backend; 2]) {
    let (_one_at_a_time, dbs) = configure(retry_operation::CONNECTIONS, backends).await;
    retry_operation::run().await.unwrap();
    let expected = if backends[1] == Backend::Sqlite {
        (70, 80)
    } else {
        (60, 90)
    };
    assert_eq!(
        balances(&dbs).await,
        expected,
        "each transfer applied once, the refusals not at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_operation_on_sqlite() {
    retry_operation_on([Backend::Sqlite, Backend::Sqlite]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_operation_on_postgres_and_mariadb() {
    retry_operation_on([Backend::Postgres, Backend::MySql]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_operation_on_mariadb_and_postgres() {
    retry_operation_on([Backend::MySql, Backend::Postgres]).await;
}

async fn save_user_on(two_phase: bool, backends: [Backend; 2]) {
    let (_one_at_a_time, dbs) = configure(save_user_two_databases::CONNECTIONS, backends).await;
    if two_phase {
        // Its prepared branches must not show up in the two-phase tests' server-wide checks.
        let _no_two_phase_test = crate::two_phase::SERIAL.lock().await;
        crate::two_phase::coordinator().await;
        save_user_two_databases::run(true).await.unwrap();
    } else {
        save_user_two_databases::run(false).await.unwrap();
    }
    assert_eq!(users(&dbs).await, [1, 1], "only the first saveUser left a user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_user_two_databases_on_sqlite() {
    save_user_on(false, [Backend::Sqlite, Backend::Sqlite]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_user_two_databases_on_postgres_and_mariadb() {
    save_user_on(false, [Backend::Postgres, Backend::MySql]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_user_two_databases_in_two_phase_on_postgres_and_mariadb() {
    save_user_on(true, [Backend::Postgres, Backend::MySql]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_commit_transfer_on_postgres_and_mariadb() {
    let backends = [Backend::Postgres, Backend::MySql];
    let (_one_at_a_time, dbs) = configure(two_phase_commit_transfer::CONNECTIONS, backends).await;
    {
        let _no_two_phase_test = crate::two_phase::SERIAL.lock().await;
        crate::two_phase::coordinator().await;
        two_phase_commit_transfer::run().await.unwrap();
    }
    // 30 by tpc_* calls, 20 by a two-phase scope; the refused and failed transfers moved nothing.
    assert_eq!(balances(&dbs).await, (50, 100));
}

//! The guide's third example, "two-phase commit": a transfer between `bank_db_1` (PostgreSQL) and
//! `bank_db_2` (MySQL/MariaDB) that is atomic across both, first in the guide's own low-level
//! form (`tpc_begin`, `tpc_prepare`, `tpc_commit`, `tpc_rollback`), then as a two-phase scope,
//! which also logs the commit decision so that a crash at any point is recovered.
//!
//! Run: `cargo run --example two_phase_commit_transfer` (starts throwaway servers), or with
//! `ACTIVERECORD_BANK_DB_1_URL` / `ACTIVERECORD_BANK_DB_2_URL` set to PostgreSQL or MySQL URLs.

// The integration tests include this file as a module (to call `run`), beside the one `common`
// they include for every example.
#[cfg(not(test))]
mod common;
#[cfg(test)]
use super::common;

use activerecord::two_phase::{Coordinator, CoordinatorConfig};
use activerecord::{ActiveRecord, Backend, ConnectionManager, Error, Model, Result};

#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "accounts")]
struct Account {
    id: Option<i64>,
    owner: String,
    balance: i64,
}

/// The guide's `two_phase_commit_transfer`, line for line: prepare both branches, then commit
/// both; on any failure, roll back both. (Each branch gets its own id, so that both databases may
/// live on one server.) Without a decision log, a crash between the two commits needs an operator:
/// `transfer_in_two_phase_scope` below closes that gap.
async fn two_phase_commit_transfer(from_account_id: i64, to_account_id: i64, amount: i64) -> Result<bool> {
    let xid = uuid::Uuid::new_v4().simple().to_string();
    let conn1 = ConnectionManager::get("bank_db_1")?
        .tpc_begin(&format!("{xid}-1"))
        .await?;
    let prepared = async {
        // Phase 1: prepare.
        let mut from_account = Account::find_for_update(&conn1, from_account_id).await?;
        if from_account.balance < amount {
            return Err(Error::rejected("insufficient funds"));
        }
        from_account.balance -= amount;
        from_account.save(&conn1).await?;
        conn1.tpc_prepare().await?;

        let conn2 = ConnectionManager::get("bank_db_2")?
            .tpc_begin(&format!("{xid}-2"))
            .await?;
        let mut to_account = Account::find_for_update(&conn2, to_account_id).await?;
        to_account.balance += amount;
        to_account.save(&conn2).await?;
        conn2.tpc_prepare().await?;
        Ok(conn2)
    }
    .await;
    match prepared {
        Ok(conn2) => {
            // Phase 2: commit.
            conn1.tpc_commit().await?;
            conn2.tpc_commit().await?;
            Ok(true)
        }
        Err(e) => {
            // A failure: roll back. (The second branch, if it began, rolled back when dropped.)
            conn1.tpc_rollback().await?;
            Err(e)
        }
    }
}

/// The same transfer as a two-phase scope: the nested-scope code of `transfer_funds`, atomic.
async fn transfer_in_two_phase_scope(from_account_id: i64, to_account_id: i64, amount: i64) -> Result<()> {
    ConnectionManager::using("bank_db_1")
        .two_phase()
        .transaction(async |tx| {
            let mut from_account = Account::find_for_update(tx, from_account_id).await?;
            if from_account.balance < amount {
                return Err(Error::rejected("insufficient funds"));
            }
            from_account.balance -= amount;
            from_account.save(tx).await?;
            ConnectionManager::using("bank_db_2")
                .transaction(async |tx| {
                    let mut to_account = Account::find_for_update(tx, to_account_id).await?;
                    to_account.balance += amount;
                    to_account.save(tx).await
                })
                .await
        })
        .await
}

async fn show(label: &str) -> Result<()> {
    let alice = Account::find(&ConnectionManager::get("bank_db_1")?, 1).await?;
    let bob = Account::find(&ConnectionManager::get("bank_db_2")?, 1).await?;
    println!(
        "{label:<40} {}: {:>4}   {}: {:>4}",
        alice.owner, alice.balance, bob.owner, bob.balance
    );
    Ok(())
}

/// The connections the example runs on.
pub const CONNECTIONS: [&str; 2] = ["bank_db_1", "bank_db_2"];

// Unused where the integration tests include this file as a module.
#[cfg_attr(test, expect(dead_code))]
#[tokio::main]
async fn main() -> Result<()> {
    common::servers::connect_servers(&[(CONNECTIONS[0], Backend::Postgres), (CONNECTIONS[1], Backend::MySql)]).await?;
    let log = std::env::temp_dir().join(format!("two-phase-example-{}.db", std::process::id()));
    let (coordinator, recovered) = Coordinator::install(CoordinatorConfig::new("example").log_in_file(&log)).await?;
    println!(
        "coordinator {:?} installed; recovery at start-up: {} committed, {} rolled back, {} in flight",
        coordinator.name(),
        recovered.committed.len(),
        recovered.rolled_back.len(),
        recovered.in_flight.len(),
    );
    for failure in &recovered.errors {
        // Typed: failure.connection, failure.branch, failure.action, failure.error.
        println!("  recovery will try again: {failure}");
    }
    run().await?;
    let _ = std::fs::remove_file(log);
    Ok(())
}

/// The demo, on the configured connections `bank_db_1` and `bank_db_2` (PostgreSQL or
/// MySQL/MariaDB, with a coordinator installed for the two-phase scopes): creates the accounts,
/// moves 30 with the `tpc_*` calls and 20 with a two-phase scope; a transfer beyond the balance
/// and one to a missing account must fail and change nothing.
pub async fn run() -> Result<()> {
    let databases = [
        ConnectionManager::get(CONNECTIONS[0])?,
        ConnectionManager::get(CONNECTIONS[1])?,
    ];
    for db in &databases {
        common::recreate_table(db, "accounts", "owner VARCHAR(100) NOT NULL, balance BIGINT NOT NULL").await?;
    }
    Account::create(
        &databases[0],
        Account {
            id: None,
            owner: "alice".into(),
            balance: 100,
        },
    )
    .await?;
    Account::create(
        &databases[1],
        Account {
            id: None,
            owner: "bob".into(),
            balance: 50,
        },
    )
    .await?;
    show("start").await?;

    two_phase_commit_transfer(1, 1, 30).await?;
    show("tpc_* transfer 30").await?;
    let refused = two_phase_commit_transfer(1, 1, 1_000).await;
    assert!(matches!(refused, Err(Error::Rejected(_))), "{refused:?}");
    show("tpc_* transfer 1000: insufficient funds").await?;

    transfer_in_two_phase_scope(1, 1, 20).await?;
    show("two-phase scope transfer 20").await?;
    let missing = transfer_in_two_phase_scope(1, 999, 20).await;
    assert!(matches!(missing, Err(Error::NotFound { .. })), "{missing:?}");
    show("two-phase scope to a missing account").await?;
    Ok(())
}

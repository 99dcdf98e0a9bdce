//! The guide's first example, "best-effort transactions": move money from an account in
//! `bank_db_1` to an account in `bank_db_2` with one scope nested in another.
//!
//! The inner scope joins the outer one: nothing commits until the outer scope ends, and any
//! failure before that (insufficient funds, a missing account, an error in either body) leaves
//! both databases unchanged. Only the final commits themselves can fail halfway; that is reported
//! as `Error::PartialCommit`, never as a plain error.
//!
//! Run: `cargo run --example transfer_funds` (two SQLite files), or with
//! `ACTIVERECORD_BANK_DB_1_URL` / `ACTIVERECORD_BANK_DB_2_URL` set to any supported URLs.

// The integration tests include this file as a module (to call `run`), beside the one `common`
// they include for every example.
#[cfg(not(test))]
mod common;
#[cfg(test)]
use super::common;

use activerecord::{ActiveRecord, Ambient, ConnectionManager, Error, Model, Result};

#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "accounts")]
struct Account {
    id: Option<i64>,
    owner: String,
    balance: i64,
}

/// The guide's `transfer_funds`, line for line. Model calls that name no connection run in the
/// innermost open scope (`Ambient`); rows are read `for_update`, so that concurrent transfers
/// cannot lose each other's updates.
async fn transfer_funds(from_account_id: i64, to_account_id: i64, amount: i64) -> Result<bool> {
    ConnectionManager::using("bank_db_1")
        .transaction(async |_| {
            let mut from_account = Account::find_for_update(&Ambient, from_account_id).await?;
            if from_account.balance < amount {
                return Err(Error::rejected("insufficient funds"));
            }
            from_account.balance -= amount;
            from_account.save(&Ambient).await?;

            ConnectionManager::using("bank_db_2")
                .transaction(async |_| {
                    let mut to_account = Account::find_for_update(&Ambient, to_account_id).await?;
                    to_account.balance += amount;
                    to_account.save(&Ambient).await
                })
                .await?;
            // Both scopes succeeded; the outermost one commits both databases when it returns.
            Ok(true)
        })
        .await
}

async fn show(label: &str, alice: i64, bob: i64) -> Result<()> {
    let db1 = ConnectionManager::get("bank_db_1")?;
    let db2 = ConnectionManager::get("bank_db_2")?;
    let a = Account::find(&db1, alice).await?;
    let b = Account::find(&db2, bob).await?;
    println!(
        "{label:<36} {}: {:>4}   {}: {:>4}",
        a.owner, a.balance, b.owner, b.balance
    );
    Ok(())
}

/// The connections the example runs on.
pub const CONNECTIONS: [&str; 2] = ["bank_db_1", "bank_db_2"];

// Unused where the integration tests include this file as a module.
#[cfg_attr(test, expect(dead_code))]
#[tokio::main]
async fn main() -> Result<()> {
    common::connect(&CONNECTIONS).await?;
    run().await
}

/// The demo, on the configured connections `bank_db_1` and `bank_db_2`: creates the accounts
/// (alice in `bank_db_1`, bob in `bank_db_2`), moves 30, then tries a transfer beyond the balance
/// and one to a missing account, which must fail and change nothing.
pub async fn run() -> Result<()> {
    let databases = [
        ConnectionManager::get(CONNECTIONS[0])?,
        ConnectionManager::get(CONNECTIONS[1])?,
    ];
    for db in &databases {
        common::recreate_table(db, "accounts", "owner VARCHAR(100) NOT NULL, balance BIGINT NOT NULL").await?;
    }
    let alice = Account::create(
        &databases[0],
        Account {
            id: None,
            owner: "alice".into(),
            balance: 100,
        },
    )
    .await?;
    let bob = Account::create(
        &databases[1],
        Account {
            id: None,
            owner: "bob".into(),
            balance: 50,
        },
    )
    .await?;
    let (alice, bob) = (alice.id.expect("saved"), bob.id.expect("saved"));
    show("start", alice, bob).await?;

    let moved = transfer_funds(alice, bob, 30).await?;
    show(&format!("transfer 30 -> {moved}"), alice, bob).await?;

    match transfer_funds(alice, bob, 1_000).await {
        Err(Error::Rejected(reason)) => show(&format!("transfer 1000 -> {reason}"), alice, bob).await?,
        other => panic!("a transfer beyond the balance must be refused, got {other:?}"),
    }

    match transfer_funds(alice, 9_999, 10).await {
        Err(Error::NotFound { .. }) => show("transfer to a missing account", alice, bob).await?,
        other => panic!("a transfer to a missing account must fail, got {other:?}"),
    }
    Ok(())
}

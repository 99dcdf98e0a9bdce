//! The bank shared by the integration tests, the two-phase crash-test process and the benchmarks:
//! accounts, and movements that record every change of a balance in the same transaction, so that
//! each database can be checked for half-done work (`balance = start + sum(movements)`).

use activerecord::{ActiveRecord, Backend, ConnectionManager, Database, Error, Executor, Model, Result, Tx};

/// A bank account, as in the guide's examples.
#[derive(ActiveRecord, Debug, Clone, PartialEq)]
#[activerecord(table = "accounts")]
pub struct Account {
    pub id: Option<i64>,
    pub owner: String,
    pub balance: i64,
}

/// A change of one account's balance.
#[derive(ActiveRecord, Debug, Clone, PartialEq)]
#[activerecord(table = "movements")]
pub struct Movement {
    pub id: Option<i64>,
    pub account_id: i64,
    pub amount: i64,
}

impl Movement {
    /// Records a movement of `amount` on account `account_id`.
    pub async fn record<C: Executor + ?Sized>(conn: &C, account_id: i64, amount: i64) -> Result<Movement> {
        Movement::create(
            conn,
            Movement {
                id: None,
                account_id,
                amount,
            },
        )
        .await
    }
}

/// An auto-incrementing 64-bit primary key on `backend`.
pub fn serial_key(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "INTEGER PRIMARY KEY",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        Backend::MySql => "BIGINT AUTO_INCREMENT PRIMARY KEY",
    }
}

/// Creates the `accounts` (owners unique) and `movements` tables on `db`.
pub async fn create_tables(db: &Database) -> Result<()> {
    let key = serial_key(db.backend());
    db.execute(&format!(
        "CREATE TABLE accounts (id {key}, owner VARCHAR(100) NOT NULL UNIQUE, balance BIGINT NOT NULL)"
    ))
    .await?;
    db.execute(&format!(
        "CREATE TABLE movements (id {key}, account_id BIGINT NOT NULL, amount BIGINT NOT NULL)"
    ))
    .await
}

/// A new database on `backend`, configured as `name`, with the bank's tables and one account per
/// owner, each holding `balance`. Returns the database and the account ids in `owners` order.
pub async fn open(
    backend: Backend,
    name: &str,
    owners: impl IntoIterator<Item = String>,
    balance: i64,
) -> Result<(Database, Vec<i64>)> {
    let url = crate::fresh_database(backend).await;
    let db = ConnectionManager::configure(name, url.as_str()).await?;
    create_tables(&db).await?;
    let mut ids = Vec::new();
    for owner in owners {
        let account = Account::create(
            &db,
            Account {
                id: None,
                owner,
                balance,
            },
        )
        .await?;
        ids.push(account.id.expect("a created account has its key"));
    }
    Ok((db, ids))
}

/// Moves `amount` from account `from.1` on connection `from.0` to account `to.1` on connection
/// `to.0`: a scope on the first database with one nested on the second (the guide's transfer), in
/// two-phase mode if asked. See [`transfer_in`].
pub async fn transfer(from: (&str, i64), to: (&str, i64), amount: i64, two_phase: bool) -> Result<()> {
    let outer = ConnectionManager::using(from.0);
    let outer = if two_phase { outer.two_phase() } else { outer };
    outer
        .transaction(async |tx| transfer_in(tx, from.1, to, amount).await)
        .await
}

/// The body of a transfer, in a scope open on the payer's database: moves `amount` from account
/// `from` to account `to.1` on connection `to.0`, in a scope nested on the second database. Each
/// side reads its row `for_update` and records a movement. A payer without the funds is
/// `Error::Rejected("insufficient funds")`.
pub async fn transfer_in(tx: &mut Tx, from: i64, to: (&str, i64), amount: i64) -> Result<()> {
    adjust(tx, from, -amount).await?;
    ConnectionManager::using(to.0)
        .transaction(async |tx| adjust(tx, to.1, amount).await)
        .await
}

/// Adds `amount` to account `id` (a negative amount takes from it), its row read `for_update`, and
/// records the movement. A balance that would go below zero is
/// `Error::Rejected("insufficient funds")`.
pub async fn adjust(tx: &mut Tx, id: i64, amount: i64) -> Result<()> {
    let mut account = Account::find_for_update(tx, id).await?;
    if account.balance + amount < 0 {
        return Err(Error::rejected("insufficient funds"));
    }
    account.balance += amount;
    account.save(tx).await?;
    Movement::record(tx, id, amount).await?;
    Ok(())
}

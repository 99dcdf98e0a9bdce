//! The Spring/JTA example in two-phase mode, as the study runs it with JOTM or Atomikos: `saveUser`
//! writes one user to database A (PostgreSQL) and B (MySQL/MariaDB) under one global transaction.
//! B's column is too small for the value, so B fails and A is rolled back with it.
//!
//! Run: `cargo run --example save_user_two_phase` (starts throwaway servers), or with
//! `ACTIVERECORD_USER_DB_A_URL` / `ACTIVERECORD_USER_DB_B_URL` set to PostgreSQL or MySQL URLs.

mod common;

use activerecord::two_phase::{Coordinator, CoordinatorConfig};
use activerecord::{ActiveRecord, Backend, ConnectionManager, Error, Model, Result};

#[derive(ActiveRecord, Debug)]
#[activerecord(table = "t_user", database = "user_db_a")]
struct UserA {
    id: Option<i64>,
    username: String,
    gender: String,
}

#[derive(ActiveRecord, Debug)]
#[activerecord(table = "t_user", database = "user_db_b")]
struct UserB {
    id: Option<i64>,
    name: String,
    sex: String,
}

/// `UserServiceImpl.saveUser`, with JTA's global transaction as a two-phase scope.
async fn save_user(username: &str, sex_in_b: &str) -> Result<()> {
    ConnectionManager::using("user_db_a")
        .two_phase()
        .transaction(async |a| {
            UserA::create(
                a,
                UserA {
                    id: None,
                    username: username.into(),
                    gender: "1".into(),
                },
            )
            .await?;
            ConnectionManager::using("user_db_b")
                .transaction(async |b| {
                    UserB::create(
                        b,
                        UserB {
                            id: None,
                            name: username.into(),
                            sex: sex_in_b.into(),
                        },
                    )
                    .await?;
                    Ok(())
                })
                .await
        })
        .await
}

#[tokio::main]
async fn main() -> Result<()> {
    let databases =
        common::servers::connect_servers(&[("user_db_a", Backend::Postgres), ("user_db_b", Backend::MySql)]).await?;
    common::recreate_table(
        &databases[0],
        "t_user",
        "username VARCHAR(50) NOT NULL, gender VARCHAR(1) NOT NULL",
    )
    .await?;
    common::recreate_table(
        &databases[1],
        "t_user",
        "name VARCHAR(50) NOT NULL, sex VARCHAR(1) NOT NULL",
    )
    .await?;
    let log = std::env::temp_dir().join(format!("save-user-2pc-{}.db", std::process::id()));
    Coordinator::install(CoordinatorConfig::new("save_user").log_in_file(&log)).await?;

    let username = format!("user_{}", std::process::id() % 10_000);
    save_user(&username, "1").await?;
    println!("saveUser({username}, sex = \"1\"): committed in A and B");
    match save_user(&format!("{username}_2"), "男的").await {
        Err(Error::ConstraintViolation { connection, kind, .. }) => {
            println!(
                "saveUser({username}_2, sex = \"男的\"): {kind} on {connection}; the global transaction rolled back"
            )
        }
        other => panic!("B's insert must violate its column limit, got {other:?}"),
    }
    let (in_a, in_b) = (UserA::count(&databases[0]).await?, UserB::count(&databases[1]).await?);
    println!("users in A: {in_a}, users in B: {in_b}");
    assert_eq!((in_a, in_b), (1, 1));
    let _ = std::fs::remove_file(log);
    Ok(())
}

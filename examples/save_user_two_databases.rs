//! The Spring/JTA example: `saveUser` writes one user to database A and to database B in one unit
//! of work. B's column is too small for the value (the original's "值超出范围"), so B's insert
//! fails, and A's insert is rolled back with it: neither database keeps the user.
//!
//! Run it as the study's plain JTA setup, best effort, on two SQLite files:
//! `cargo run --example save_user_two_databases`; or as its JOTM/Atomikos setup, with two-phase
//! commit across PostgreSQL (A) and MariaDB (B), started for the run:
//! `cargo run --example save_user_two_databases -- --two-phase`.
//! `ACTIVERECORD_USER_DB_A_URL` / `ACTIVERECORD_USER_DB_B_URL` name other databases.

// The integration tests include this file as a module (to call `run`), beside the one `common`
// they include for every example.
#[cfg(not(test))]
mod common;
#[cfg(test)]
use super::common;

use activerecord::two_phase::{Coordinator, CoordinatorConfig};
use activerecord::{ActiveRecord, Backend, ConnectionManager, Error, Model, Result};

/// `t_user` in database A.
#[derive(ActiveRecord, Debug)]
#[activerecord(table = "t_user", database = "user_db_a")]
struct UserA {
    id: Option<i64>,
    username: String,
    gender: String,
}

/// `t_user` in database B: the same user under other column names.
#[derive(ActiveRecord, Debug)]
#[activerecord(table = "t_user", database = "user_db_b")]
struct UserB {
    id: Option<i64>,
    name: String,
    sex: String,
}

/// `UserServiceImpl.saveUser`: both inserts in one unit of work.
async fn save_user(username: &str, sex_in_b: &str, two_phase: bool) -> Result<()> {
    let scope = ConnectionManager::using("user_db_a");
    let scope = if two_phase { scope.two_phase() } else { scope };
    scope
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

/// The connections the example runs on: database A and database B.
pub const CONNECTIONS: [&str; 2] = ["user_db_a", "user_db_b"];

// Unused where the integration tests include this file as a module.
#[cfg_attr(test, expect(dead_code))]
#[tokio::main]
async fn main() -> Result<()> {
    let two_phase = std::env::args().any(|arg| arg == "--two-phase");
    let log = std::env::temp_dir().join(format!("save-user-2pc-{}.db", std::process::id()));
    if two_phase {
        common::servers::connect_servers(&[(CONNECTIONS[0], Backend::Postgres), (CONNECTIONS[1], Backend::MySql)])
            .await?;
        Coordinator::install(CoordinatorConfig::new("save_user").log_in_file(&log)).await?;
    } else {
        common::connect(&CONNECTIONS).await?;
    }
    run(two_phase).await?;
    if two_phase {
        let _ = std::fs::remove_file(log);
    }
    Ok(())
}

/// The demo, on the configured connections `user_db_a` and `user_db_b` (with `two_phase`, both
/// PostgreSQL or MySQL/MariaDB, and a coordinator installed): creates both `t_user` tables, saves
/// one user, then one that B refuses, which must leave neither database with it.
pub async fn run(two_phase: bool) -> Result<()> {
    let (a, b) = (
        &ConnectionManager::get(CONNECTIONS[0])?,
        &ConnectionManager::get(CONNECTIONS[1])?,
    );
    common::recreate_table(a, "t_user", "username VARCHAR(50) NOT NULL, gender VARCHAR(1) NOT NULL").await?;
    // SQLite does not enforce declared lengths: a CHECK does.
    let sex = match b.backend() {
        Backend::Sqlite => "sex TEXT NOT NULL CHECK (length(sex) <= 1)",
        Backend::Postgres | Backend::MySql => "sex VARCHAR(1) NOT NULL",
    };
    common::recreate_table(b, "t_user", &format!("name VARCHAR(50) NOT NULL, {sex}")).await?;

    let username = format!("user_{}", std::process::id() % 10_000);
    save_user(&username, "1", two_phase).await?;
    println!("saveUser({username}, sex = \"1\"): saved in A and B");
    match save_user(&format!("{username}_2"), "男的", two_phase).await {
        Err(Error::ConstraintViolation { connection, kind, .. }) => {
            println!("saveUser({username}_2, sex = \"男的\"): {kind} on {connection}; both databases rolled back")
        }
        other => panic!("B's insert must violate its column limit, got {other:?}"),
    }
    let (in_a, in_b) = (UserA::count(a).await?, UserB::count(b).await?);
    println!("users in A: {in_a}, users in B: {in_b}");
    assert_eq!((in_a, in_b), (1, 1), "the failed saveUser left nothing behind");
    Ok(())
}

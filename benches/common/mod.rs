//! Set-up shared by the benchmarks: a runtime, databases on the real servers, the bank schema.

// Each benchmark uses part of this module.
#![allow(dead_code)]

pub mod ops;

use activerecord::{ActiveRecord, Backend, ConnectionManager, Database, Model};

#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "accounts")]
pub struct Account {
    pub id: Option<i64>,
    pub owner: String,
    pub balance: i64,
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A new database on `backend` named `name`, with an accounts table of `rows` accounts.
pub async fn bank(backend: Backend, name: &str, rows: i64) -> Database {
    let url = testkit::fresh_database(backend).await;
    let db = ConnectionManager::configure(name, url.as_str())
        .await
        .expect("configure");
    let key = match backend {
        Backend::Sqlite => "INTEGER PRIMARY KEY",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        Backend::MySql => "BIGINT AUTO_INCREMENT PRIMARY KEY",
    };
    db.execute(&format!(
        "CREATE TABLE accounts (id {key}, owner VARCHAR(100) NOT NULL, balance BIGINT NOT NULL)"
    ))
    .await
    .expect("create table");
    for n in 0..rows {
        Account::create(
            &db,
            Account {
                id: None,
                owner: format!("owner {n}"),
                balance: 1_000_000,
            },
        )
        .await
        .expect("seed");
    }
    db
}

/// `?` or `$n` placeholders: the one thing the hand-written statements must vary by backend.
pub fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Postgres => format!("${n}"),
        Backend::Sqlite | Backend::MySql => "?".to_owned(),
    }
}

//! Set-up shared by the benchmarks: a runtime, databases on the real servers, the bank schema.

// Each benchmark uses part of this module.
#![allow(dead_code)]

pub mod ops;

use activerecord::{Backend, Database};
use std::sync::atomic::{AtomicU64, Ordering};

pub use testkit::bank::Account;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A new database on `backend` named `name`, with the bank's tables and `rows` accounts.
pub async fn bank(backend: Backend, name: &str, rows: i64) -> Database {
    let owners = (0..rows).map(|n| format!("owner {n}"));
    testkit::bank::open(backend, name, owners, 1_000_000)
        .await
        .expect("open a bank")
        .0
}

/// An owner name no account has yet (owners are unique).
pub fn new_owner() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("new {}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `?` or `$n` placeholders: the one thing the hand-written statements must vary by backend.
pub fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Postgres => format!("${n}"),
        Backend::Sqlite | Backend::MySql => "?".to_owned(),
    }
}

/// The settings a commit's cost depends on, as the server reports them, and the file system of
/// its data directory.
pub async fn settings(db: &Database) -> String {
    let (settings, data): (String, String) = match db.backend() {
        Backend::Postgres => sqlx::query_as(
            "SELECT 'fsync=' || current_setting('fsync') \
             || ', synchronous_commit=' || current_setting('synchronous_commit') \
             || ', full_page_writes=' || current_setting('full_page_writes'), \
             current_setting('data_directory')",
        )
        .fetch_one(db.postgres_pool().unwrap())
        .await
        .unwrap(),
        Backend::MySql => sqlx::query_as(
            "SELECT CAST(CONCAT('innodb_flush_log_at_trx_commit=', @@innodb_flush_log_at_trx_commit, \
             ', log_bin=', @@log_bin, ', sync_binlog=', @@sync_binlog) AS CHAR), CAST(@@datadir AS CHAR)",
        )
        .fetch_one(db.mysql_pool().unwrap())
        .await
        .unwrap(),
        Backend::Sqlite => unimplemented!("SQLite's settings are the connection's"),
    };
    let file_system = std::process::Command::new("df")
        .args(["--output=fstype,source"])
        .arg(&data)
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| {
            text.lines()
                .nth(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" on "))
        })
        .unwrap_or_else(|| "a file system this process cannot see".to_owned());
    format!("{settings}; data in {data} ({file_system})")
}

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

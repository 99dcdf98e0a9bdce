//! An ActiveRecord-style ORM for SQLite, PostgreSQL and MySQL/MariaDB whose transactions span
//! several databases.
//!
//! - `#[derive(ActiveRecord)]` on a plain struct makes it a [`Model`]: `find`, `save`, `delete`,
//!   queries. The same model works on all three backends, chosen at run time by the URL.
//! - [`ConnectionManager`] maps names such as `"bank_db_1"` to connection pools.
//! - Every operation takes an [`Executor`]: a [`Database`] (autocommit on the pool), a
//!   transaction, [`ConnectionManager::using`] or [`Ambient`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
//! use activerecord::{ActiveRecord, ConnectionManager, Model};
//!
//! #[derive(ActiveRecord, Debug)]
//! #[activerecord(table = "accounts")]
//! struct Account {
//!     id: Option<i64>,
//!     owner: String,
//!     balance: i64,
//! }
//!
//! let db = ConnectionManager::configure("crate_doc", "sqlite::memory:").await?;
//! db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER)").await?;
//! let alice = Account::create(&db, Account { id: None, owner: "alice".into(), balance: 10 }).await?;
//! assert_eq!(Account::find(&db, alice.id.unwrap()).await?.owner, "alice");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

// Lets the crate derive its own models (the two-phase decision log).
extern crate self as activerecord;

mod backend;
pub mod connection;
mod context;
pub mod error;
pub mod executor;
pub mod migrate;
pub mod model;
pub mod query;
pub mod schema;
mod sql;
pub mod transaction;
pub mod two_phase;
pub mod value;

pub use activerecord_derive::ActiveRecord;
pub use connection::{Backend, ConnectionManager, Database, DatabaseConfig, DatabaseUrl, JournalMode, Synchronous};
pub use error::{ConnectFailure, ConstraintKind, DatabaseOutcome, Error, PartialCommit, Result, TwoPhaseError};
pub use executor::{Executor, fetch_column};
pub use model::{Model, ModelMeta};
pub use query::{Column, Condition, Order, Query, col};
pub use schema::{ColumnKind, ColumnType, SchemaMismatch};
pub use transaction::{
    Ambient, Event, EventKind, Idempotent, Isolation, Observer, ObserverId, RetryPolicy, Retrying, Transient, Tx,
    UnitId, UnitOutcome, Using, retry,
};
pub use value::{Arguments, IntoParam, Json, OutOfRange, RowRef, Value};

/// Items the derive macro's generated code refers to. Not a public API.
#[doc(hidden)]
pub mod __private {
    use crate::{Arguments, ColumnType, Result, RowRef, Value};

    pub use crate::sql::{StatementCache, Statements};

    /// How to read and bind one column of type `V`. The derive makes one `const` of it per
    /// field, so that the `Value` bound is checked once, at the field type's span.
    pub struct ColumnFns<V> {
        /// Reads column `index` of a row of `table`.
        pub get: fn(RowRef<'_>, &'static str, usize) -> Result<V>,
        pub bind: fn(&V, &mut Arguments) -> Result<()>,
        pub column_type: fn() -> ColumnType,
    }

    /// The functions for a column of type `V`.
    pub const fn column<V: Value>() -> ColumnFns<V> {
        ColumnFns {
            get: get::<V>,
            bind: bind::<V>,
            column_type: V::column_type,
        }
    }

    fn get<V: Value>(row: RowRef<'_>, table: &'static str, index: usize) -> Result<V> {
        row.get_in(table, index)
    }

    fn bind<V: Value>(value: &V, args: &mut Arguments) -> Result<()> {
        args.add(value)
    }
}

/// The README's example, compiled as a doctest so that it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The guide's code blocks, compiled as doctests so that they stay true.
#[doc = include_str!("../../docs/transactions.md")]
#[doc = include_str!("../../docs/configuration.md")]
#[doc = include_str!("../../docs/two_phase.md")]
#[cfg(doctest)]
pub struct GuideDoctests;

//! Named connections: the process-wide [`ConnectionManager`] that maps names such as
//! `"bank_db_1"` to connection pools, in the manner of Rails' `database.yml` and Django's
//! `DATABASES`.
//!
//! Guarantees: the backend is chosen at run time from the URL scheme (`sqlite:`, `postgres:`,
//! `mysql:`/`mariadb:`); a URL's password never appears in `Debug`, `Display`, errors or logs;
//! an unknown name is an error that lists the configured names; looking a name up takes no lock.

pub(crate) mod background;
mod config;
mod control;
mod database;
mod registry;
mod transaction;
mod url;
mod waits;

pub use crate::backend::Backend;
pub use config::{DatabaseConfig, JournalMode, Synchronous};
pub(crate) use config::{configs_from_process_env, configs_from_toml_file};
pub use database::Database;
pub(crate) use database::Pool;
pub use registry::ConnectionManager;
pub(crate) use registry::{register, unregister, unregister_all};
pub(crate) use transaction::{OpenTransaction, PooledConnection};
pub use url::DatabaseUrl;
pub(crate) use waits::{UnitTag, set_threshold as set_deadlock_threshold};

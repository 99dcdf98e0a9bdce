//! The registry of named connections, kept in the process-wide context: lookups take no lock.

use super::database::Database;
use crate::context::context;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The configured connections by name, as the context keeps them.
type Registry = BTreeMap<String, Database>;

fn registry() -> std::sync::Arc<Registry> {
    context().get::<Registry>().unwrap_or_default()
}

/// The process-wide registry of named connections.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{ConnectionManager, Error};
///
/// ConnectionManager::configure("manager_doc", "sqlite::memory:").await?;
/// let db = ConnectionManager::get("manager_doc")?;
/// assert_eq!(db.name(), "manager_doc");
///
/// let err = ConnectionManager::get("manager_dco").unwrap_err();
/// assert!(err.to_string().contains("manager_doc"), "the error lists what is configured");
/// ConnectionManager::close("manager_doc").await?;
/// # Ok(()) }
/// ```
pub struct ConnectionManager;

impl ConnectionManager {
    /// The connection registered as `name`.
    pub fn get(name: &str) -> Result<Database> {
        let registry = registry();
        registry.get(name).cloned().ok_or_else(|| Error::UnknownConnection {
            name: name.to_owned(),
            configured: registry.keys().cloned().collect(),
        })
    }

    /// The names of every configured connection, sorted.
    pub fn names() -> Vec<String> {
        registry().keys().cloned().collect()
    }
}

// The registry's mechanics. The public methods that change it (`configure*`, `close*`) are in
// `transaction::manage`, because they must first check the calling task's open scopes.

/// Registers `database` under its name; returns the pool it replaces, for the caller to close.
pub(crate) fn register(database: Database) -> Option<Database> {
    let name = database.name().to_owned();
    let previous = context().update(|registry: Option<&Registry>| {
        let mut registry = registry.cloned().unwrap_or_default();
        registry.insert(name.clone(), database.clone());
        registry
    });
    previous?.get(&name).cloned()
}

/// Forgets `name`; returns its pool, for the caller to close.
pub(crate) fn unregister(name: &str) -> Option<Database> {
    let previous = context().update(|registry: Option<&Registry>| {
        let mut registry = registry.cloned().unwrap_or_default();
        registry.remove(name);
        registry
    });
    previous?.get(name).cloned()
}

/// Forgets every connection; returns their pools, for the caller to close.
pub(crate) fn unregister_all() -> Vec<Database> {
    let previous = context().update(|_: Option<&Registry>| Registry::new());
    previous
        .map(|registry| registry.values().cloned().collect())
        .unwrap_or_default()
}

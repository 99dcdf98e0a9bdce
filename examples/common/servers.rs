//! Connections for the examples that need PostgreSQL or MySQL/MariaDB servers.

use activerecord::{Backend, ConnectionManager, Database, Result};

/// Configures each `(name, backend)`: from `ACTIVERECORD_<NAME>_URL` when it is set, else on a
/// throwaway server of that backend, started for this run (and stopped at its end) by `testkit`.
pub async fn connect_servers(connections: &[(&str, Backend)]) -> Result<Vec<Database>> {
    let mut databases = Vec::new();
    for (name, backend) in connections {
        let url = match std::env::var(format!("ACTIVERECORD_{}_URL", name.to_uppercase())) {
            Ok(url) => url,
            Err(_) => testkit::fresh_database(*backend).await,
        };
        let database = ConnectionManager::configure(name, url.as_str()).await?;
        println!("{name}: {} ({})", database.url(), database.backend());
        databases.push(database);
    }
    Ok(databases)
}

//! Set-up shared by the examples: named connections, and tables created afresh.

// Each example uses part of this module.
#![allow(dead_code)]

pub mod servers;

use activerecord::{Backend, ConnectionManager, Database, Result};

/// Configures each of `names`: from `ACTIVERECORD_<NAME>_URL` when it is set (any backend), else
/// as a SQLite file under `target/demo/`.
pub async fn connect(names: &[&str]) -> Result<Vec<Database>> {
    ConnectionManager::configure_from_env().await?;
    let demo_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/demo");
    let mut databases = Vec::new();
    for name in names {
        let database = match ConnectionManager::get(name) {
            Ok(database) => database,
            Err(_) => {
                std::fs::create_dir_all(&demo_dir).expect("create target/demo");
                let url = format!("sqlite://{}?mode=rwc", demo_dir.join(format!("{name}.db")).display());
                ConnectionManager::configure(name, url).await?
            }
        };
        println!("{name}: {} ({})", database.url(), database.backend());
        databases.push(database);
    }
    Ok(databases)
}

/// Drops and creates `table` with `columns`, after an auto-incrementing `id` key.
pub async fn recreate_table(db: &Database, table: &str, columns: &str) -> Result<()> {
    let key = match db.backend() {
        Backend::Sqlite => "INTEGER PRIMARY KEY",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        Backend::MySql => "BIGINT AUTO_INCREMENT PRIMARY KEY",
    };
    db.execute(&format!("DROP TABLE IF EXISTS {table}")).await?;
    db.execute(&format!("CREATE TABLE {table} (id {key}, {columns})")).await
}

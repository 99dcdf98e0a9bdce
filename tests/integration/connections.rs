//! The connection registry: names, bad configurations, password redaction, TOML files, and the
//! `Using` and `Ambient` executors.

use crate::common::{Account, connect};
use activerecord::{ActiveRecord, Ambient, Backend, ConnectionManager, DatabaseConfig, Error, Model};
use std::time::Duration;

#[tokio::test]
async fn unknown_names_list_what_is_configured() {
    ConnectionManager::configure("listed_a", "sqlite::memory:")
        .await
        .unwrap();
    let err = ConnectionManager::get("listed_b").unwrap_err();
    match &err {
        Error::UnknownConnection { name, configured } => {
            assert_eq!(name, "listed_b");
            assert!(configured.iter().any(|n| n == "listed_a"), "{configured:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("listed_a"), "{err}");
    // The same error comes from a `using` handle, when it is used.
    let err = Account::count(&ConnectionManager::using("listed_b")).await.unwrap_err();
    assert!(matches!(err, Error::UnknownConnection { .. }), "{err:?}");
}

#[tokio::test]
async fn unsupported_schemes_name_the_connection() {
    let err = ConnectionManager::configure("oracle_db", "oracle://scott:tiger@db/orcl")
        .await
        .unwrap_err();
    match &err {
        Error::Configuration {
            connection, message, ..
        } => {
            assert_eq!(connection, "oracle_db");
            assert!(message.contains("sqlite:, postgres:"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("tiger"), "{err:?}");
    assert!(
        ConnectionManager::get("oracle_db").is_err(),
        "a failed configuration registers nothing"
    );
}

#[tokio::test]
async fn unreachable_servers_never_show_the_password() {
    let config = DatabaseConfig::new("postgres://app:hunter2@127.0.0.1:1/bank").acquire_timeout(Duration::from_secs(2));
    let err = ConnectionManager::configure_with("unreachable", config.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Configuration { .. }), "{err:?}");
    let shown = format!("{err} {err:?} {config:?} {}", config.url);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("unreachable"), "{shown}");
}

#[tokio::test]
async fn refused_credentials_never_show_the_password() {
    let url = testkit::fresh_database(Backend::MySql).await;
    let with_password = url.replacen("root@", "root:hunter2@", 1);
    let err = ConnectionManager::configure("refused", with_password.as_str())
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("refused"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn handles_show_no_password() {
    let url = testkit::fresh_database(Backend::Postgres).await;
    // The test server trusts local connections, so any password is accepted.
    let with_password = url.replacen("postgres@", "postgres:hunter2@", 1);
    let db = ConnectionManager::configure("shown_pg", with_password.as_str())
        .await
        .unwrap();
    let shown = format!("{db:?} {}", db.url());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("postgres:***@"), "{shown}");
}

#[tokio::test]
async fn toml_files_configure_several_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("databases.toml");
    let one = dir.path().join("one.db");
    let two = dir.path().join("two.db");
    std::fs::write(
        &path,
        format!(
            "[databases.toml_one]\nurl = \"sqlite://{}?mode=rwc\"\nmax_connections = 2\n\n\
             [databases.toml_two]\nurl = \"sqlite://{}?mode=rwc\"\n",
            one.display(),
            two.display()
        ),
    )
    .unwrap();
    let opened = ConnectionManager::configure_from_toml(&path).await.unwrap();
    assert_eq!(
        opened.iter().map(|d| d.name()).collect::<Vec<_>>(),
        ["toml_one", "toml_two"]
    );
    ConnectionManager::get("toml_two")
        .unwrap()
        .execute("CREATE TABLE t (x INTEGER)")
        .await
        .unwrap();
    assert!(two.exists());

    std::fs::write(
        &path,
        "[databases.bad]\nurl = \"sqlite::memory:\"\nmax_conections = 2\n",
    )
    .unwrap();
    let err = ConnectionManager::configure_from_toml(&path).await.unwrap_err();
    assert!(err.to_string().contains("max_conections"), "{err}");
    let err = ConnectionManager::configure_from_toml(dir.path().join("absent.toml"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Configuration { .. }), "{err:?}");
}

#[tokio::test]
async fn closed_connections_are_forgotten() {
    ConnectionManager::configure("closing", "sqlite::memory:")
        .await
        .unwrap();
    ConnectionManager::close("closing").await;
    assert!(matches!(
        ConnectionManager::get("closing"),
        Err(Error::UnknownConnection { .. })
    ));
}

/// A model whose default database is named by attribute.
#[derive(ActiveRecord, Debug, Clone, PartialEq)]
#[activerecord(table = "accounts", database = "ambient_bank")]
struct BankAccount {
    id: Option<i64>,
    owner: String,
    balance: i64,
}

#[tokio::test]
async fn ambient_uses_the_models_database() {
    let db = connect(Backend::Sqlite, "ambient_setup").await;
    testkit::bank::create_tables(&db).await.unwrap();
    ConnectionManager::configure("ambient_bank", db.url().expose())
        .await
        .unwrap();
    let saved = BankAccount::create(
        &Ambient,
        BankAccount {
            id: None,
            owner: "amb".into(),
            balance: 3,
        },
    )
    .await
    .unwrap();
    assert_eq!(Account::find(&db, saved.id.unwrap()).await.unwrap().owner, "amb");

    let err = Account::count(&Ambient).await.unwrap_err();
    assert!(err.to_string().contains("names no database"), "{err}");
}

#[tokio::test]
async fn an_exhausted_pool_is_a_typed_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("busy.db").display());
    let config = DatabaseConfig::new(url)
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200));
    let db = ConnectionManager::configure_with("exhausted", config).await.unwrap();
    testkit::bank::create_tables(&db).await.unwrap();
    // The scope holds the pool's only connection; the pool handle asks for another.
    let err = ConnectionManager::using("exhausted")
        .transaction(async |_tx| Account::count(&db).await)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PoolTimeout { connection } if connection == "exhausted"),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("max_connections"), "{err}");
}

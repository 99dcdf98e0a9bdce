//! The connection registry: names, bad configurations, password redaction, TOML files, and the
//! `Using` and `Ambient` executors.

use crate::common::{Account, connect, test_matrix};
use activerecord::{
    ActiveRecord, Ambient, Backend, ConnectFailure, ConnectionManager, DatabaseConfig, Error, JournalMode, Model,
    Synchronous, fetch_column,
};
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
    assert!(
        matches!(&err, Error::Connect { cause: ConnectFailure::Refused { address }, .. } if address == "127.0.0.1:1"),
        "{err:?}"
    );
    let shown = format!("{err} {err:?} {config:?} {}", config.get_url());
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
    ConnectionManager::close("closing").await.unwrap();
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

/// A configuration file with a syntax error on its `url` line: the TOML error quotes the line,
/// and the password must not come with it, whatever the shape of the URL.
#[tokio::test]
async fn toml_syntax_errors_never_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("databases.toml");
    // (the `url` line, the passwords that must not show)
    let shapes: &[(&str, &[&str])] = &[
        // A missing closing quote.
        ("url = \"postgres://app:s3cret@db/bank", &["s3cret"]),
        // No quotes at all.
        ("url = postgres://app:s3cret@db/bank", &["s3cret"]),
        // Percent-encoded: neither the encoded nor the decoded form.
        (
            "url = \"postgres://app:p%40ss%3Aw0rd@db/bank",
            &["p%40ss%3Aw0rd", "p@ss:w0rd", "p@ss"],
        ),
        // Raw `@` and `:` in the password.
        (
            "url = 'mysql://root:p@ss:w0rd@db:3306/bank",
            &["p@ss:w0rd", "p@ss", "ss:w0rd"],
        ),
        (
            "url = mariadb://root:p@ss:w0rd@db/bank",
            &["p@ss:w0rd", "p@ss", "ss:w0rd"],
        ),
        // Garbage after a well-formed URL.
        ("url = \"postgres://app:hunter2@db/bank\" extra", &["hunter2"]),
        // An empty user name.
        ("url = postgres://:t0ps3cret@db/bank", &["t0ps3cret"]),
        // A malformed URL that no URL parser accepts.
        ("url = \"postgres://app:sw0rdf1sh@[db/bank", &["sw0rdf1sh"]),
    ];
    for (line, secrets) in shapes {
        std::fs::write(&path, format!("[databases.leaky]\n{line}\nmax_connections = 2\n")).unwrap();
        let err = ConnectionManager::configure_from_toml(&path).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(matches!(err, Error::Configuration { .. }), "{line}: {shown}");
        assert!(shown.contains("line 2"), "the error still says where: {shown}");
        for secret in *secrets {
            assert!(!shown.contains(secret), "{line}: {secret} shows in {shown}");
        }
    }
}

/// A free local port nothing listens on.
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `url` with its user name and password replaced by `userinfo`.
fn with_userinfo(url: &str, userinfo: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{userinfo}@{host}")
}

/// `url` naming another database on the same server.
fn with_database(url: &str, database: &str) -> String {
    format!("{}/{database}", url.rsplit_once('/').unwrap().0)
}

/// Configures `url` patiently (the acquire timeout is a minute) and expects the failure well
/// before that: the cause must be reported at once, not after the pool gave up.
async fn configure_failure(name: &str, url: &str) -> Error {
    let config = DatabaseConfig::new(url).acquire_timeout(Duration::from_secs(60));
    let err = tokio::time::timeout(Duration::from_secs(20), ConnectionManager::configure_with(name, config))
        .await
        .unwrap_or_else(|_| panic!("{name}: configure did not report the failure within 20 s"))
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        ConnectionManager::get(name).is_err(),
        "a failed configuration registers nothing"
    );
    err
}

async fn connection_failures_name_their_cause(backend: Backend) -> activerecord::Result<()> {
    let label = format!("{backend:?}").to_lowercase();
    let url = testkit::fresh_database(backend).await;
    if backend == Backend::Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no_such_dir").join("bank.db");
        let url = format!("sqlite://{}?mode=rwc", missing.display());
        let err = configure_failure("missing_dir_sqlite", &url).await;
        assert!(
            matches!(&err, Error::Connect { cause: ConnectFailure::CannotOpen { path }, .. } if path.contains("no_such_dir")),
            "{err:?}"
        );
        assert!(err.to_string().contains("directory exists"), "{err}");
        // Lazy: configures, and fails only when used.
        let lazy = DatabaseConfig::new(url.as_str()).lazy(true);
        let db = ConnectionManager::configure_with("missing_dir_lazy", lazy).await?;
        assert!(db.execute("SELECT 1").await.is_err());
        ConnectionManager::close("missing_dir_lazy").await?;
        return Ok(());
    }
    let scheme = url.split("://").next().unwrap();

    // Nothing listens on the port.
    let port = refused_port();
    let refused = format!("{scheme}://app:hunter2@127.0.0.1:{port}/bank");
    let err = configure_failure(&format!("refused_{label}"), &refused).await;
    let expected = format!("127.0.0.1:{port}");
    assert!(
        matches!(&err, Error::Connect { cause: ConnectFailure::Refused { address }, .. } if *address == expected),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("connection refused at {expected}")),
        "{err}"
    );

    // Rejected credentials. The test PostgreSQL server trusts every local connection, so no
    // password can be wrong there: an unknown role is what it rejects.
    let rejected = match backend {
        Backend::Postgres => with_userinfo(&url, "no_such_role:hunter2"),
        _ => with_userinfo(&url, "root:hunter2"),
    };
    let err = configure_failure(&format!("rejected_{label}"), &rejected).await;
    assert!(
        matches!(
            &err,
            Error::Connect {
                cause: ConnectFailure::Authentication,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("check the credentials"), "{err}");

    // No such database on a server that is up.
    let err = configure_failure(&format!("unknown_db_{label}"), &with_database(&url, "no_such_database")).await;
    assert!(
        matches!(
            &err,
            Error::Connect {
                cause: ConnectFailure::UnknownDatabase,
                ..
            }
        ),
        "{err:?}"
    );

    // A lazy pool configures without a server, and fails when used.
    let name = format!("lazy_refused_{label}");
    let lazy = DatabaseConfig::new(refused.as_str())
        .lazy(true)
        .acquire_timeout(Duration::from_millis(300));
    let db = ConnectionManager::configure_with(&name, lazy).await?;
    assert!(db.execute("SELECT 1").await.is_err());
    ConnectionManager::close(&name).await?;
    Ok(())
}

async fn closing_inside_a_scope_is_refused(backend: Backend) -> activerecord::Result<()> {
    let db = connect(backend, "close_in_scope").await;
    testkit::bank::create_tables(&db).await?;
    let name = db.name().to_owned();
    let url = db.url().expose().to_owned();
    let other = connect(backend, "close_other").await;
    let patiently = Duration::from_secs(20);
    ConnectionManager::using(&name)
        .transaction(async |tx| {
            Account::create(
                tx,
                Account {
                    id: None,
                    owner: "kept".into(),
                    balance: 1,
                },
            )
            .await?;
            let closed = tokio::time::timeout(patiently, ConnectionManager::close(&name))
                .await
                .expect("close inside a scope on the same name must return at once");
            assert!(
                matches!(&closed, Err(Error::InUse { connection }) if *connection == name),
                "{closed:?}"
            );
            assert!(closed.unwrap_err().to_string().contains("after the scope ends"));
            let replaced = tokio::time::timeout(patiently, ConnectionManager::configure(&name, url.as_str()))
                .await
                .expect("re-configure inside a scope on the same name must return at once");
            assert!(matches!(replaced, Err(Error::InUse { .. })), "{replaced:?}");
            // Another connection is not held by the scope: it can be replaced.
            tokio::time::timeout(
                patiently,
                ConnectionManager::configure(other.name(), other.url().expose()),
            )
            .await
            .expect("re-configure of another name returns")?;
            Ok::<_, Error>(())
        })
        .await?;
    assert_eq!(Account::count(&db).await?, 1, "the scope committed");
    tokio::time::timeout(patiently, ConnectionManager::close(&name))
        .await
        .expect("close after the scope returns")?;
    assert!(matches!(
        ConnectionManager::get(&name),
        Err(Error::UnknownConnection { .. })
    ));
    ConnectionManager::close(other.name()).await?;
    Ok(())
}

test_matrix!([sqlite, postgres, mariadb] => connection_failures_name_their_cause, closing_inside_a_scope_is_refused);

/// `PRAGMA journal_mode` and `PRAGMA synchronous` as the pool's connections report them.
async fn sqlite_pragmas(db: &activerecord::Database) -> (String, i64) {
    let mode = fetch_column::<String, _>(db, "PRAGMA journal_mode").await.unwrap();
    let sync = fetch_column::<i64, _>(db, "PRAGMA synchronous").await.unwrap();
    (mode[0].to_lowercase(), sync[0])
}

#[tokio::test]
async fn sqlite_durability_is_configurable() {
    // The default: WAL, FULL (2).
    let db = ConnectionManager::configure("durable_default", testkit::fresh_database(Backend::Sqlite).await)
        .await
        .unwrap();
    assert_eq!(sqlite_pragmas(&db).await, ("wal".to_owned(), 2));

    // URL parameters, in any case, mixed with sqlx's own.
    let url = format!(
        "{}&synchronous=normal&journal_mode=DELETE",
        testkit::fresh_database(Backend::Sqlite).await
    );
    let db = ConnectionManager::configure("durable_url", url).await.unwrap();
    assert_eq!(sqlite_pragmas(&db).await, ("delete".to_owned(), 1));

    // Builder methods.
    let config = DatabaseConfig::new(testkit::fresh_database(Backend::Sqlite).await)
        .synchronous(Synchronous::Off)
        .journal_mode(JournalMode::Truncate);
    let db = ConnectionManager::configure_with("durable_builder", config)
        .await
        .unwrap();
    assert_eq!(sqlite_pragmas(&db).await, ("truncate".to_owned(), 0));

    // TOML keys.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("databases.toml");
    let toml_url = testkit::fresh_database(Backend::Sqlite).await;
    std::fs::write(
        &path,
        format!(
            "[databases.durable_toml]\nurl = \"{toml_url}\"\nsynchronous = \"extra\"\njournal_mode = \"persist\"\n"
        ),
    )
    .unwrap();
    let opened = ConnectionManager::configure_from_toml(&path).await.unwrap();
    assert_eq!(sqlite_pragmas(&opened[0]).await, ("persist".to_owned(), 3));

    // Bad values are configuration errors that say what is accepted.
    let bad_url = format!("{}&synchronous=fast", testkit::fresh_database(Backend::Sqlite).await);
    let err = ConnectionManager::configure("durable_bad", bad_url).await.unwrap_err();
    assert!(
        matches!(&err, Error::Configuration { message, .. } if message.contains("OFF, NORMAL, FULL, EXTRA") && message.contains("fast")),
        "{err:?}"
    );
    let bad_url = format!("{}&journal_mode=wall", testkit::fresh_database(Backend::Sqlite).await);
    let err = ConnectionManager::configure("durable_bad", bad_url).await.unwrap_err();
    assert!(
        matches!(&err, Error::Configuration { message, .. } if message.contains("WAL, DELETE")),
        "{err:?}"
    );
    std::fs::write(
        &path,
        format!("[databases.durable_bad]\nurl = \"{toml_url}\"\nsynchronous = \"fast\"\n"),
    )
    .unwrap();
    let err = ConnectionManager::configure_from_toml(&path).await.unwrap_err();
    assert!(
        matches!(&err, Error::Configuration { message, .. } if message.contains("NORMAL")),
        "{err:?}"
    );
    // Set in two places to different values.
    let config = DatabaseConfig::new(format!("{toml_url}&synchronous=off")).synchronous(Synchronous::Full);
    let err = ConnectionManager::configure_with("durable_bad", config)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Configuration { message, .. } if message.contains("one place")),
        "{err:?}"
    );
    // On a server backend.
    let config = DatabaseConfig::new("postgres://app:hunter2@127.0.0.1:1/bank").synchronous(Synchronous::Normal);
    let err = ConnectionManager::configure_with("durable_bad", config)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Configuration { message, .. } if message.contains("SQLite only")),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains("hunter2"));
    assert!(ConnectionManager::get("durable_bad").is_err());
}

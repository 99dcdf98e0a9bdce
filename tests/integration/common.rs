//! Models, schemas and helpers shared by the integration tests.

use activerecord::{ActiveRecord, Backend, ConnectionManager, Database, Json, Model};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use testkit::bank::{Account, Movement};

/// The test matrix: for each scenario, a module named after it holding one `#[tokio::test]` per
/// backend combination, named after the combination, that calls the scenario with the
/// combination's backends (see [`combination!`]) and checks how it ended ([`ScenarioEnd`]):
///
/// ```ignore
/// test_matrix!([sqlite, postgres, mariadb] => every_type_round_trips, nulls_round_trip);
/// // crud::every_type_round_trips::sqlite, ::postgres, ::mariadb, crud::nulls_round_trip::sqlite, ...
/// test_matrix!([sqlite_and_sqlite, postgres_and_mariadb] => a_transfer_commits_both);
/// // nesting::a_transfer_commits_both::sqlite_and_sqlite calls a_transfer_commits_both(Sqlite, Sqlite)
/// test_matrix!([postgres_and_mariadb], one_at_a_time(SERIAL) => a_crash_after_prepare_rolls_back);
/// // each test first locks SERIAL, a `tokio::sync::Mutex<()>` of the calling module
/// ```
macro_rules! test_matrix {
    (@scenario $scenario:ident [$($combination:ident),+ $(,)?] $lock:tt) => {
        mod $scenario {
            $($crate::common::test_matrix!(@test $scenario $combination $lock);)+
        }
    };
    (@test $scenario:ident $combination:ident ($($lock:ident)?)) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $combination() {
            $(let _one_at_a_time = super::$lock.lock().await;)?
            $crate::common::ScenarioEnd::check($crate::common::combination!($combination, super::$scenario).await)
        }
    };
    // The combinations and the lock travel as single token trees: a list repeated inside the
    // repetition over scenarios could not be expanded by `macro_rules!`.
    ($combinations:tt, one_at_a_time $lock:tt => $($scenario:ident),+ $(,)?) => {
        $($crate::common::test_matrix!(@scenario $scenario $combinations $lock);)+
    };
    ($combinations:tt => $($scenario:ident),+ $(,)?) => {
        $crate::common::test_matrix!($combinations, one_at_a_time() => $($scenario),+);
    };
}
pub(crate) use test_matrix;

/// How a scenario ends: `()` (it asserts as it goes), or a `Result` whose error fails the test.
pub trait ScenarioEnd {
    /// Fails the test if the scenario failed.
    fn check(self);
}

impl ScenarioEnd for () {
    fn check(self) {}
}

impl<E: std::fmt::Debug> ScenarioEnd for Result<(), E> {
    fn check(self) {
        self.unwrap()
    }
}

/// The backend combinations [`test_matrix!`] knows, one line each: the name a test gets, and the
/// backends its scenario is called with.
#[rustfmt::skip] // one line per combination: a table
macro_rules! combination {
    (sqlite, $f:path) => { $f(activerecord::Backend::Sqlite) };
    (postgres, $f:path) => { $f(activerecord::Backend::Postgres) };
    (mariadb, $f:path) => { $f(activerecord::Backend::MySql) };
    (sqlite_and_sqlite, $f:path) => { $f(activerecord::Backend::Sqlite, activerecord::Backend::Sqlite) };
    (postgres_and_mariadb, $f:path) => { $f(activerecord::Backend::Postgres, activerecord::Backend::MySql) };
    (postgres_and_postgres, $f:path) => { $f(activerecord::Backend::Postgres, activerecord::Backend::Postgres) };
    (mariadb_and_postgres, $f:path) => { $f(activerecord::Backend::MySql, activerecord::Backend::Postgres) };
    (postgres_and_sqlite, $f:path) => { $f(activerecord::Backend::Postgres, activerecord::Backend::Sqlite) };
    (sqlite_and_mariadb, $f:path) => { $f(activerecord::Backend::Sqlite, activerecord::Backend::MySql) };
    (sqlite_and_postgres, $f:path) => { $f(activerecord::Backend::Sqlite, activerecord::Backend::Postgres) };
    ($unknown:ident, $f:path) => {
        compile_error!(concat!(
            "unknown backend combination `",
            stringify!($unknown),
            "`: add a line for it to `combination!` in tests/integration/common.rs"
        ))
    };
}
pub(crate) use combination;

/// Configures a connection named `<label>_<backend>` on a new, empty database.
pub async fn connect(backend: Backend, label: &str) -> Database {
    testkit::init_logging();
    let url = testkit::fresh_database(backend).await;
    let name = format!("{label}_{backend:?}").to_lowercase();
    ConnectionManager::configure(&name, url.as_str())
        .await
        .unwrap_or_else(|e| panic!("configure {name}: {e}"))
}

/// The DDL for a table, written once with per-backend column types.
pub struct Ddl(pub Backend);

impl Ddl {
    /// An identifier quoted for the backend (SQLite takes a double-quoted name that is no
    /// column as a string: backticks never are).
    pub fn quote(&self, ident: &str) -> String {
        match self.0 {
            Backend::MySql | Backend::Sqlite => format!("`{ident}`"),
            Backend::Postgres => format!("\"{ident}\""),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub theme: String,
    pub tags: Vec<String>,
}

/// One field of every supported type.
#[derive(ActiveRecord, Debug, Clone, PartialEq)]
#[activerecord(table = "samples")]
pub struct Sample {
    pub id: Option<i64>,
    pub small: i16,
    pub medium: i32,
    pub big: i64,
    pub single: f32,
    pub double: f64,
    pub flag: bool,
    pub text: String,
    pub bytes: Vec<u8>,
    pub amount: Decimal,
    pub at: DateTime<Utc>,
    pub local_at: NaiveDateTime,
    pub day: NaiveDate,
    pub uid: Uuid,
    pub doc: Json<Settings>,
    pub maybe_small: Option<i16>,
    pub maybe_medium: Option<i32>,
    pub maybe_big: Option<i64>,
    pub maybe_single: Option<f32>,
    pub maybe_double: Option<f64>,
    pub maybe_flag: Option<bool>,
    pub maybe_text: Option<String>,
    pub maybe_bytes: Option<Vec<u8>>,
    pub maybe_amount: Option<Decimal>,
    pub maybe_at: Option<DateTime<Utc>>,
    pub maybe_local_at: Option<NaiveDateTime>,
    pub maybe_day: Option<NaiveDate>,
    pub maybe_uid: Option<Uuid>,
    pub maybe_doc: Option<Json<Settings>>,
    #[activerecord(column = "label")]
    pub renamed: String,
    #[activerecord(skip)]
    pub not_stored: Vec<String>,
}

impl Ddl {
    pub fn samples(&self) -> String {
        let types: [(&str, &str, &str); 14] = [
            // (SQLite, PostgreSQL, MySQL/MariaDB)
            ("INTEGER", "SMALLINT", "SMALLINT"),
            ("INTEGER", "INTEGER", "INT"),
            ("INTEGER", "BIGINT", "BIGINT"),
            ("REAL", "REAL", "FLOAT"),
            ("REAL", "DOUBLE PRECISION", "DOUBLE"),
            ("BOOLEAN", "BOOLEAN", "BOOLEAN"),
            ("TEXT", "TEXT", "TEXT"),
            ("BLOB", "BYTEA", "LONGBLOB"),
            ("TEXT", "NUMERIC(30, 10)", "DECIMAL(30, 10)"),
            ("TEXT", "TIMESTAMPTZ", "DATETIME(6)"),
            ("TEXT", "TIMESTAMP", "DATETIME(6)"),
            ("TEXT", "DATE", "DATE"),
            ("BLOB", "UUID", "BINARY(16)"),
            ("TEXT", "JSONB", "JSON"),
        ];
        let names = [
            "small", "medium", "big", "single", "double", "flag", "text", "bytes", "amount", "at", "local_at", "day",
            "uid", "doc",
        ];
        let pick = |t: &(&'static str, &'static str, &'static str)| match self.0 {
            Backend::Sqlite => t.0,
            Backend::Postgres => t.1,
            Backend::MySql => t.2,
        };
        let mut columns = vec![format!("id {}", testkit::bank::serial_key(self.0))];
        for (name, ty) in names.iter().zip(&types) {
            columns.push(format!("{} {} NOT NULL", self.quote(name), pick(ty)));
        }
        for (name, ty) in names.iter().zip(&types) {
            columns.push(format!("{} {}", self.quote(&format!("maybe_{name}")), pick(ty)));
        }
        columns.push("label VARCHAR(50) NOT NULL".to_owned());
        format!("CREATE TABLE samples ({})", columns.join(", "))
    }
}

/// A sample with every optional field set and values at the edges of their types.
pub fn full_sample() -> Sample {
    let at = DateTime::parse_from_rfc3339("2026-11-21T08:30:15.123456Z")
        .unwrap()
        .with_timezone(&Utc);
    let settings = Settings {
        theme: "dark \"quoted\"".into(),
        tags: vec!["a".into(), "ü".into()],
    };
    Sample {
        id: None,
        small: i16::MIN,
        medium: i32::MAX,
        big: i64::MIN,
        single: 1.5,
        double: -2.25e100,
        flag: true,
        text: "héllo ✓ 中文 '; DROP TABLE samples; --".into(),
        bytes: vec![0, 1, 2, 254, 255],
        amount: "-12345678901234567890.0123456789".parse().unwrap(),
        at,
        local_at: at.naive_utc(),
        day: NaiveDate::from_ymd_opt(1999, 12, 31).unwrap(),
        uid: Uuid::new_v4(),
        doc: Json(settings.clone()),
        maybe_small: Some(7),
        maybe_medium: Some(-8),
        maybe_big: Some(i64::MAX),
        maybe_single: Some(-0.5),
        maybe_double: Some(1e-300),
        maybe_flag: Some(false),
        maybe_text: Some(String::new()),
        maybe_bytes: Some(Vec::new()),
        maybe_amount: Some(Decimal::new(1, 10)),
        maybe_at: Some(at),
        maybe_local_at: Some(at.naive_utc()),
        maybe_day: Some(NaiveDate::from_ymd_opt(2000, 2, 29).unwrap()),
        maybe_uid: Some(Uuid::nil()),
        maybe_doc: Some(Json(settings)),
        renamed: "label".into(),
        not_stored: Vec::new(),
    }
}

/// The same sample with every optional field NULL.
pub fn sample_with_nulls() -> Sample {
    Sample {
        maybe_small: None,
        maybe_medium: None,
        maybe_big: None,
        maybe_single: None,
        maybe_double: None,
        maybe_flag: None,
        maybe_text: None,
        maybe_bytes: None,
        maybe_amount: None,
        maybe_at: None,
        maybe_local_at: None,
        maybe_day: None,
        maybe_uid: None,
        maybe_doc: None,
        ..full_sample()
    }
}

/// A bank on one database: the accounts and movements tables, and one account per owner, each
/// starting with 100. Returns the database and the account ids in `owners` order.
pub async fn bank(backend: Backend, name: &str, owners: &[&str]) -> (Database, Vec<i64>) {
    testkit::init_logging();
    let owners = owners.iter().map(|o| (*o).to_owned());
    testkit::bank::open(backend, name, owners, 100)
        .await
        .unwrap_or_else(|e| panic!("open bank {name}: {e}"))
}

/// Every connection the pool holds, checked out at once and asked whether it is inside a
/// transaction: none may be.
pub async fn assert_no_open_transactions(db: &Database) {
    use sqlx::Connection;
    match db.backend() {
        Backend::Sqlite => {
            let pool = db.sqlite_pool().unwrap();
            let mut conns = Vec::new();
            for _ in 0..pool.size() {
                conns.push(pool.acquire().await.unwrap());
            }
            for conn in &mut conns {
                // BEGIN fails inside an open transaction.
                let tx = conn
                    .begin()
                    .await
                    .unwrap_or_else(|e| panic!("{}: pooled connection in a transaction: {e}", db.name()));
                tx.rollback().await.unwrap();
            }
        }
        Backend::Postgres => {
            let pool = db.postgres_pool().unwrap();
            let mut conns = Vec::new();
            for _ in 0..pool.size() {
                conns.push(pool.acquire().await.unwrap());
            }
            for conn in &mut conns {
                // PostgreSQL refuses a SAVEPOINT outside a transaction block.
                use sqlx::Executor;
                let probe = conn.execute("SAVEPOINT activerecord_probe").await;
                assert!(probe.is_err(), "{}: pooled connection in a transaction", db.name());
            }
        }
        Backend::MySql => {
            let pool = db.mysql_pool().unwrap();
            let mut conns = Vec::new();
            for _ in 0..pool.size() {
                conns.push(pool.acquire().await.unwrap());
            }
            for conn in &mut conns {
                let (open,): (u64,) = sqlx::query_as("SELECT @@in_transaction")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap();
                assert_eq!(open, 0, "{}: pooled connection in a transaction", db.name());
            }
        }
    }
}

/// The balance of account `id`, read outside any transaction.
pub async fn balance(db: &Database, id: i64) -> i64 {
    Account::find(db, id).await.unwrap().balance
}

/// Checks that no half-done work is visible on `db`: every account's balance is its start (100)
/// plus its movements.
pub async fn assert_balances_match_movements(db: &Database, ids: &[i64]) {
    let movements = Movement::all(db).await.unwrap();
    for id in ids {
        let moved: i64 = movements.iter().filter(|m| m.account_id == *id).map(|m| m.amount).sum();
        assert_eq!(
            balance(db, *id).await,
            100 + moved,
            "{}: account {id} is half-updated",
            db.name()
        );
    }
}

/// A task holding a lock on `account` of `name` (a `SELECT ... FOR UPDATE` in a scope) until the
/// returned sender is dropped or used.
pub async fn hold(
    name: &str,
    account: i64,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<activerecord::Result<()>>,
) {
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let scope = activerecord::ConnectionManager::using(name);
    let holding = tokio::spawn(scope.transaction(async move |tx| {
        testkit::bank::Account::find_for_update(tx, account).await?;
        locked_tx.send(()).unwrap();
        let _ = release_rx.await;
        Ok::<_, activerecord::Error>(())
    }));
    locked_rx.await.unwrap();
    (release_tx, holding)
}

//! `testkit`: real database servers for the integration tests, examples and benchmarks.
//!
//! PostgreSQL (with `max_prepared_transactions` > 0), MariaDB and Redis are started as child
//! processes, each in a temporary directory on a free loopback port, the first time a test asks
//! for one, and shared by every test of the process. They are stopped and their directories
//! removed when the process exits, also after a test panicked; if the process is killed, the
//! kernel kills them too (`PR_SET_PDEATHSIG`).
//!
//! To use servers you run yourself instead, set `ACTIVERECORD_TEST_POSTGRES_URL`,
//! `ACTIVERECORD_TEST_MYSQL_URL` or `ACTIVERECORD_TEST_REDIS_URL` (a PostgreSQL or MySQL URL
//! must name an account that may create databases). A test that needs a server that can be
//! neither started nor found fails, saying what is missing: no test passes by skipping.
//!
//! Each test gets a database of its own from [`fresh_database`].
//!
//! The servers trade durability for speed (PostgreSQL runs with `fsync=off`). A benchmark that
//! must pay for durable commits runs with `ACTIVERECORD_BENCH_DURABLE=1`: every PostgreSQL and
//! MariaDB server the process starts then syncs its commits to the disk ([`Durability`]).
//!
//! [`Proxy`] (module [`proxy`]) sits between a client and PostgreSQL or MariaDB and injects faults
//! on chosen statements: a lost answer, a held answer, a cut connection.

pub mod bank;
pub mod proxy;
mod server;

use activerecord::Backend;
use server::{Server, ServerKind};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use proxy::{Armed, Fault, Protocol, Proxy, Statement, Trigger};
pub use server::{DURABLE_ENV, Durability, scratch_dir};

/// The backends the suite runs against.
pub const BACKENDS: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::MySql];

static POSTGRES: OnceLock<Result<Endpoint, String>> = OnceLock::new();
static POSTGRES_WITHOUT_2PC: OnceLock<Result<Endpoint, String>> = OnceLock::new();
static MARIADB: OnceLock<Result<Endpoint, String>> = OnceLock::new();
static REDIS: OnceLock<Result<Endpoint, String>> = OnceLock::new();
static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

/// A server to connect to: one this process started, or one named by the environment.
#[derive(Debug, Clone)]
struct Endpoint {
    /// A URL for the server's administrative database, without a trailing path.
    base_url: String,
}

fn endpoint(cell: &'static OnceLock<Result<Endpoint, String>>, kind: ServerKind) -> &'static Endpoint {
    let endpoint = cell.get_or_init(|| {
        if let Ok(url) = std::env::var(kind.env_var()) {
            return Ok(Endpoint {
                base_url: url.trim_end_matches('/').to_owned(),
            });
        }
        Server::start_shared(kind).map(|server| Endpoint {
            base_url: server.base_url(),
        })
    });
    match endpoint {
        Ok(endpoint) => endpoint,
        Err(why) => panic!(
            "{} is needed by this test and could not be started: {why}\n\
             Run the test command from README.md (it installs the servers), or set {} to a running server.",
            kind.name(),
            kind.env_var()
        ),
    }
}

/// A URL for a new, empty database on `backend`, for one test.
///
/// SQLite gets a new file in the process's scratch directory; PostgreSQL and MariaDB get a new
/// database on the shared server.
pub async fn fresh_database(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => {
            let path: PathBuf = scratch_dir().join(format!("{}.db", new_database_name()));
            format!("sqlite://{}?mode=rwc", path.display())
        }
        Backend::Postgres => database_on(&POSTGRES, ServerKind::Postgres, backend).await,
        Backend::MySql => database_on(&MARIADB, ServerKind::MariaDb, backend).await,
    }
}

/// A URL for a new, empty database on a PostgreSQL server with `max_prepared_transactions` = 0,
/// as PostgreSQL is installed: two-phase commit is disabled there.
pub async fn fresh_database_without_prepared_transactions() -> String {
    database_on(
        &POSTGRES_WITHOUT_2PC,
        ServerKind::PostgresWithoutPreparedTransactions,
        Backend::Postgres,
    )
    .await
}

/// A name no other database of this process has.
fn new_database_name() -> String {
    format!(
        "test_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a new database on the shared server of `kind`; returns its URL.
async fn database_on(cell: &'static OnceLock<Result<Endpoint, String>>, kind: ServerKind, backend: Backend) -> String {
    let name = new_database_name();
    let base = &endpoint(cell, kind).base_url;
    server::create_database(backend, base, &name).await;
    format!("{base}/{name}")
}

/// The URL of the shared Redis server.
pub fn redis_url() -> String {
    endpoint(&REDIS, ServerKind::Redis).base_url.clone()
}

/// Logs to stderr at the level `RUST_LOG` asks for (nothing by default); safe to call often.
pub fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    });
}

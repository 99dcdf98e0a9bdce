//! The fault-injecting proxy of `testkit`, on PostgreSQL and MariaDB: transparent when no fault
//! is armed, and each fault doing what it says (the server's view is checked on a connection that
//! does not go through the proxy).

use crate::common::test_matrix;
use activerecord::Backend;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Executor, MySql, MySqlPool, PgPool, Postgres};
use std::time::Duration;
use testkit::{Fault, Proxy, Trigger};
use tokio::time::timeout;

test_matrix!([postgres, mariadb] =>
    queries_pass_through_unchanged,
    a_lost_commit_answer_leaves_the_commit_done,
    a_commit_cut_before_forwarding_never_commits,
    a_held_answer_keeps_the_call_pending_until_released,
    a_held_answer_is_lost_when_the_connection_is_cut,
    a_trigger_fires_on_the_prepare_of_two_phase_commit,
    cut_after_passes_only_the_first_bytes,
    nth_and_every_time_choose_the_statements,
    cut_all_closes_every_connection,
);

/// A pool on PostgreSQL or MariaDB, driven through sqlx directly.
#[derive(Clone)]
enum Pool {
    Pg(PgPool),
    My(MySqlPool),
}

/// One connection of a [`Pool`].
enum Conn {
    Pg(PoolConnection<Postgres>),
    My(PoolConnection<MySql>),
}

/// A fresh database with a table `items`, a proxy in front of its server, a pool of one
/// connection through the proxy and a pool that connects directly.
struct Setup {
    url: String,
    proxy: Proxy,
    via: Pool,
    direct: Pool,
}

async fn setup(backend: Backend) -> Setup {
    testkit::init_logging();
    let url = testkit::fresh_database(backend).await;
    let proxy = Proxy::for_url(&url).await;
    let direct = Pool::connect(backend, &url, 2).await;
    direct
        .run("CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(100) NOT NULL)")
        .await
        .unwrap();
    let via = Pool::connect(backend, &proxy.url_for(&url), 1).await;
    Setup {
        url,
        proxy,
        via,
        direct,
    }
}

impl Pool {
    async fn connect(backend: Backend, url: &str, size: u32) -> Pool {
        match backend {
            Backend::Postgres => Pool::Pg(PgPoolOptions::new().max_connections(size).connect(url).await.unwrap()),
            Backend::MySql => Pool::My(
                MySqlPoolOptions::new()
                    .max_connections(size)
                    .connect(url)
                    .await
                    .unwrap(),
            ),
            Backend::Sqlite => unreachable!("the proxy speaks to servers"),
        }
    }

    async fn conn(&self) -> Conn {
        match self {
            Pool::Pg(pool) => Conn::Pg(pool.acquire().await.unwrap()),
            Pool::My(pool) => Conn::My(pool.acquire().await.unwrap()),
        }
    }

    /// Runs `sql` as text (PostgreSQL simple query, MySQL COM_QUERY).
    async fn run(&self, sql: &str) -> Result<u64, sqlx::Error> {
        self.conn().await.run(sql).await
    }

    async fn count(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM items";
        match self {
            Pool::Pg(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Pool::My(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// Waits until `items` holds `n` rows (a hang guard of 30 s turns a bug into a failure).
    async fn wait_count(&self, n: i64) {
        poll(&format!("items to hold {n} rows"), || async { self.count().await == n }).await;
    }

    /// Waits until the server no longer lists session `id`.
    async fn wait_session_gone(&self, id: i64) {
        poll(&format!("session {id} to end"), || async {
            let listed: i64 = match self {
                Pool::Pg(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1")
                    .bind(i32::try_from(id).unwrap())
                    .fetch_one(pool)
                    .await
                    .unwrap(),
                Pool::My(pool) => {
                    sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?")
                        .bind(id)
                        .fetch_one(pool)
                        .await
                        .unwrap()
                }
            };
            listed == 0
        })
        .await;
    }
}

impl Conn {
    async fn run(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Conn::Pg(conn) => conn.execute(sql).await.map(|done| done.rows_affected()),
            Conn::My(conn) => conn.execute(sql).await.map(|done| done.rows_affected()),
        }
    }

    /// Inserts a row with a prepared statement and bind parameters.
    async fn insert(&mut self, id: i32, label: &str) -> Result<(), sqlx::Error> {
        match self {
            Conn::Pg(conn) => sqlx::query("INSERT INTO items (id, label) VALUES ($1, $2)")
                .bind(id)
                .bind(label)
                .execute(&mut **conn)
                .await
                .map(drop),
            Conn::My(conn) => sqlx::query("INSERT INTO items (id, label) VALUES (?, ?)")
                .bind(id)
                .bind(label)
                .execute(&mut **conn)
                .await
                .map(drop),
        }
    }

    /// The rows with `id >= from`, read with a prepared statement.
    async fn rows_from(&mut self, from: i32) -> Result<Vec<(i32, String)>, sqlx::Error> {
        match self {
            Conn::Pg(conn) => {
                sqlx::query_as("SELECT id, label FROM items WHERE id >= $1 ORDER BY id")
                    .bind(from)
                    .fetch_all(&mut **conn)
                    .await
            }
            Conn::My(conn) => {
                sqlx::query_as("SELECT id, label FROM items WHERE id >= ? ORDER BY id")
                    .bind(from)
                    .fetch_all(&mut **conn)
                    .await
            }
        }
    }

    /// The server's answer to `SELECT <text>`: a round trip of a long value.
    async fn echo(&mut self, text: &str) -> Result<String, sqlx::Error> {
        match self {
            Conn::Pg(conn) => {
                sqlx::query_scalar("SELECT $1::text")
                    .bind(text)
                    .fetch_one(&mut **conn)
                    .await
            }
            Conn::My(conn) => {
                sqlx::query_scalar("SELECT CAST(? AS CHAR)")
                    .bind(text)
                    .fetch_one(&mut **conn)
                    .await
            }
        }
    }

    /// The server's id of this session.
    async fn session_id(&mut self) -> i64 {
        match self {
            Conn::Pg(conn) => {
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap();
                i64::from(pid)
            }
            Conn::My(conn) => {
                let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap();
                i64::try_from(id).unwrap()
            }
        }
    }
}

/// Checks `done` until it holds; fails after 30 s, which only a bug can take.
async fn poll<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waiting = async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if timeout(Duration::from_secs(30), waiting).await.is_err() {
        panic!("gave up waiting for {what}");
    }
}

/// The error is the connection ending, not an answer from the server.
fn assert_connection_error(error: &sqlx::Error) {
    assert!(
        matches!(error, sqlx::Error::Io(_)),
        "expected the connection to end, got {error:?}"
    );
}

async fn queries_pass_through_unchanged(backend: Backend) {
    let s = setup(backend).await;
    let mut conn = s.via.conn().await;
    conn.run("BEGIN").await.unwrap();
    for id in 1..=300 {
        conn.insert(id, &format!("row {id}")).await.unwrap();
    }
    conn.run("COMMIT").await.unwrap();

    let rows = conn.rows_from(1).await.unwrap();
    let expected: Vec<(i32, String)> = (1..=300).map(|id| (id, format!("row {id}"))).collect();
    assert_eq!(rows, expected);
    assert_eq!(conn.rows_from(291).await.unwrap(), expected[290..]);
    assert_eq!(s.direct.count().await, 300);

    // A value longer than one read of the proxy, both ways.
    let long: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    assert_eq!(conn.echo(&long).await.unwrap(), long);

    // Each execution of the prepared INSERT is seen, though it was prepared once.
    assert_eq!(s.proxy.seen(&Trigger::statement("INSERT INTO items")), 300);
    assert_eq!(s.proxy.seen(&Trigger::statement("commit")), 1);
    assert_eq!(s.proxy.seen(&Trigger::contains("WHERE id >=")), 2);
    assert_eq!(s.proxy.connections(), 1);
}

async fn a_lost_commit_answer_leaves_the_commit_done(backend: Backend) {
    let s = setup(backend).await;
    let mut conn = s.via.conn().await;
    conn.run("BEGIN").await.unwrap();
    conn.insert(1, "committed").await.unwrap();
    let armed = s.proxy.arm(Trigger::statement("COMMIT"), Fault::DropAnswerAndClose);

    let error = conn.run("COMMIT").await.unwrap_err();
    assert_connection_error(&error);
    assert_eq!(armed.fired(), 1);
    // The server got the COMMIT: the row is there.
    assert_eq!(s.direct.count().await, 1);
    drop(conn);

    // The trigger fired once: the next commit, on a new connection, goes through.
    let mut conn = s.via.conn().await;
    conn.run("BEGIN").await.unwrap();
    conn.insert(2, "also committed").await.unwrap();
    conn.run("COMMIT").await.unwrap();
    assert_eq!(armed.fired(), 1);
    assert_eq!(s.direct.count().await, 2);
    assert_eq!(s.proxy.seen(&Trigger::statement("COMMIT")), 2);
}

async fn a_commit_cut_before_forwarding_never_commits(backend: Backend) {
    let s = setup(backend).await;
    let mut conn = s.via.conn().await;
    let session = conn.session_id().await;
    // The marker and the COMMIT in one batch, as the library sends them.
    conn.run("BEGIN").await.unwrap();
    conn.insert(1, "never committed").await.unwrap();
    let armed = s.proxy.arm(Trigger::statement("COMMIT"), Fault::CutBeforeForwarding);

    let error = conn
        .run("INSERT INTO items (id, label) VALUES (2, 'marker'); COMMIT")
        .await
        .unwrap_err();
    assert_connection_error(&error);
    assert_eq!(armed.fired(), 1);
    s.direct.wait_session_gone(session).await;
    assert_eq!(s.direct.count().await, 0);
}

/// Waits until the held COMMIT has fired and the server shows the row committed, failing if the
/// client's call finishes meanwhile.
async fn until_committed_while_held<T: std::fmt::Debug>(
    commit: std::pin::Pin<&mut impl Future<Output = T>>,
    armed: &testkit::Armed,
    s: &Setup,
) {
    tokio::select! {
        done = commit => panic!("COMMIT finished while its answer was held: {done:?}"),
        () = async { armed.wait_fired().await; s.direct.wait_count(1).await } => {}
    }
}

async fn a_held_answer_keeps_the_call_pending_until_released(backend: Backend) {
    let s = setup(backend).await;
    let mut conn = s.via.conn().await;
    conn.run("BEGIN").await.unwrap();
    conn.insert(1, "held").await.unwrap();
    let armed = s.proxy.arm(Trigger::statement("COMMIT"), Fault::HoldAnswer);
    {
        let commit = conn.run("COMMIT");
        tokio::pin!(commit);
        // The COMMIT reaches the server and commits, and the call still waits for its answer.
        until_committed_while_held(commit.as_mut(), &armed, &s).await;
        assert!(
            timeout(Duration::from_millis(50), &mut commit).await.is_err(),
            "COMMIT finished while its answer was held"
        );
        s.proxy.release();
        assert_eq!(commit.await.unwrap(), 0);
    }
    // The connection goes on normally.
    assert_eq!(conn.rows_from(1).await.unwrap(), vec![(1, "held".to_owned())]);
    assert_eq!(s.proxy.open_connections(), 1);
}

async fn a_held_answer_is_lost_when_the_connection_is_cut(backend: Backend) {
    let s = setup(backend).await;
    let mut conn = s.via.conn().await;
    conn.run("BEGIN").await.unwrap();
    conn.insert(1, "committed, answer lost").await.unwrap();
    let armed = s.proxy.arm(Trigger::statement("COMMIT"), Fault::HoldAnswer);
    let commit = conn.run("COMMIT");
    tokio::pin!(commit);
    until_committed_while_held(commit.as_mut(), &armed, &s).await;
    // The commit is in flight when the connection goes: the client sees it fail.
    s.proxy.cut_all();
    s.proxy.release();
    assert_connection_error(&commit.await.unwrap_err());
    assert_eq!(s.direct.count().await, 1);
}

async fn a_trigger_fires_on_the_prepare_of_two_phase_commit(backend: Backend) {
    // MariaDB lists prepared branches server-wide; the two-phase tests count them.
    let _one_at_a_time = crate::two_phase::SERIAL.lock().await;
    let s = setup(backend).await;
    let gid = s.url.rsplit('/').next().unwrap().to_owned();
    let mut conn = s.via.conn().await;
    let session = conn.session_id().await;
    let (prepare, commit_prepared) = match backend {
        Backend::Postgres => {
            conn.run("BEGIN").await.unwrap();
            conn.insert(1, "prepared").await.unwrap();
            ("PREPARE TRANSACTION", format!("COMMIT PREPARED '{gid}'"))
        }
        _ => {
            conn.run(&format!("XA START '{gid}'")).await.unwrap();
            conn.insert(1, "prepared").await.unwrap();
            conn.run(&format!("XA END '{gid}'")).await.unwrap();
            ("XA PREPARE", format!("XA COMMIT '{gid}'"))
        }
    };
    let armed = s.proxy.arm(Trigger::statement(prepare), Fault::DropAnswerAndClose);

    let error = conn.run(&format!("{prepare} '{gid}'")).await.unwrap_err();
    assert_connection_error(&error);
    assert_eq!(armed.fired(), 1);
    assert_eq!(s.proxy.seen(&Trigger::statement(prepare)), 1);
    drop(conn);
    // The branch was prepared: once its session is gone, another connection commits it.
    s.direct.wait_session_gone(session).await;
    assert_eq!(s.direct.count().await, 0);
    s.direct.run(&commit_prepared).await.unwrap();
    assert_eq!(s.direct.count().await, 1);
}

async fn cut_after_passes_only_the_first_bytes(backend: Backend) {
    let s = setup(backend).await;
    let mut conn = s.via.conn().await;
    for id in 1..=50 {
        conn.insert(id, "a row of some length").await.unwrap();
    }
    let armed = s.proxy.arm(Trigger::contains("WHERE id >="), Fault::CutAfter(100));
    let error = conn.rows_from(1).await.unwrap_err();
    assert_connection_error(&error);
    assert_eq!(armed.fired(), 1);
    drop(conn);
    poll("the cut connection to close", || async {
        s.proxy.open_connections() == 0
    })
    .await;
    // The server had answered in full; only the client lost it.
    assert_eq!(s.via.conn().await.rows_from(1).await.unwrap().len(), 50);
}

async fn nth_and_every_time_choose_the_statements(backend: Backend) {
    let s = setup(backend).await;
    let mut conn = s.via.conn().await;
    let third = s.proxy.arm(
        Trigger::statement("SELECT id, label").nth(3),
        Fault::CutBeforeForwarding,
    );
    conn.rows_from(1).await.unwrap();
    conn.rows_from(1).await.unwrap();
    assert_eq!(third.fired(), 0);
    assert_connection_error(&conn.rows_from(1).await.unwrap_err());
    assert_eq!(third.fired(), 1);
    drop(conn);

    // Every time, on every connection (each cut connection is replaced by a new one).
    let every = s
        .proxy
        .arm(Trigger::statement("INSERT").every_time(), Fault::CutBeforeForwarding);
    for id in 1..=2 {
        let mut conn = s.via.conn().await;
        assert_connection_error(&conn.insert(id, "refused").await.unwrap_err());
    }
    assert_eq!(every.fired(), 2);
    every.disarm();

    // Only on the connection it names: the one after the current one.
    let mut conn = s.via.conn().await;
    let current = s.proxy.connections();
    let named = s.proxy.arm(
        Trigger::statement("INSERT").every_time().on_connection(current + 1),
        Fault::CutBeforeForwarding,
    );
    conn.insert(3, "kept").await.unwrap();
    s.proxy.cut_all();
    drop(conn);
    let mut conn = s.via.conn().await;
    assert_eq!(s.proxy.connections(), current + 1);
    assert_connection_error(&conn.insert(4, "refused").await.unwrap_err());
    assert_eq!(named.fired(), 1);
    assert_eq!(s.direct.count().await, 1);
}

async fn cut_all_closes_every_connection(backend: Backend) {
    let s = setup(backend).await;
    let mut conn = s.via.conn().await;
    let session = conn.session_id().await;
    conn.run("BEGIN").await.unwrap();
    conn.insert(1, "rolled back").await.unwrap();
    s.proxy.cut_all();
    assert_connection_error(&conn.run("COMMIT").await.unwrap_err());
    s.direct.wait_session_gone(session).await;
    assert_eq!(s.direct.count().await, 0);
    assert_eq!(s.proxy.seen(&Trigger::statement("COMMIT")), 0);
    // The proxy still accepts connections.
    drop(conn);
    assert_eq!(s.via.conn().await.rows_from(1).await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_for_keeps_everything_but_the_address() {
    let proxy = Proxy::start("127.0.0.1:9", testkit::Protocol::Postgres).await;
    let addr = proxy.addr();
    assert_eq!(
        proxy.url_for("postgres://user:p@ss@db.example:5432/name?sslmode=disable"),
        format!("postgres://user:p@ss@{addr}/name?sslmode=disable")
    );
    assert_eq!(proxy.url_for("mysql://localhost"), format!("mysql://{addr}"));
}

/// PostgreSQL's untyped first messages: an SSLRequest (answered `N`), then the StartupMessage,
/// then typed messages whose statements the proxy sees. sqlx built without TLS never sends an
/// SSLRequest, so this speaks the protocol by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_ssl_request_answered_no_is_followed_by_a_readable_startup() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads messages until ReadyForQuery; returns their type bytes.
    async fn until_ready(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut types = Vec::new();
        loop {
            let mut header = [0u8; 5];
            socket.read_exact(&mut header).await.unwrap();
            let len = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
            let mut body = vec![0u8; len - 4];
            socket.read_exact(&mut body).await.unwrap();
            assert_ne!(
                header[0],
                b'E',
                "the server answered an error: {}",
                String::from_utf8_lossy(&body)
            );
            if header[0] == b'R' {
                assert_eq!(body[..4], [0, 0, 0, 0], "the suite's server asks for no password");
            }
            types.push(header[0]);
            if header[0] == b'Z' {
                return types;
            }
        }
    }

    let url = testkit::fresh_database(Backend::Postgres).await;
    let database = url.rsplit('/').next().unwrap();
    let proxy = Proxy::for_url(&url).await;
    let mut socket = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();

    socket.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.unwrap();
    let mut answer = [0u8; 1];
    socket.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer[0], b'N', "the suite's server does not speak TLS");

    let mut startup = 196_608u32.to_be_bytes().to_vec();
    for text in ["user", "postgres", "database", database, ""] {
        startup.extend_from_slice(text.as_bytes());
        startup.push(0);
    }
    let mut message = u32::try_from(startup.len() + 4).unwrap().to_be_bytes().to_vec();
    message.extend_from_slice(&startup);
    socket.write_all(&message).await.unwrap();
    until_ready(&mut socket).await;

    let query = b"SELECT 1\0";
    let mut message = vec![b'Q'];
    message.extend_from_slice(&u32::try_from(query.len() + 4).unwrap().to_be_bytes());
    message.extend_from_slice(query);
    socket.write_all(&message).await.unwrap();
    assert_eq!(until_ready(&mut socket).await, b"TDCZ");
    assert_eq!(proxy.seen(&Trigger::statement("SELECT 1")), 1);
}

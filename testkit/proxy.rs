//! A fault-injecting TCP proxy for PostgreSQL and MariaDB/MySQL, for tests that must see what
//! the library does when a statement or its answer is lost.
//!
//! [`Proxy::start`] listens on a free loopback port and opens one upstream connection to the
//! server for each client connection it accepts. Bytes pass through unchanged in both
//! directions. The proxy reads the client's messages only to find the statements they run.
//! When a statement matches an armed [`Trigger`], the proxy applies the [`Fault`] armed with it
//! to that statement's connection.
//!
//! ```no_run
//! # async fn demo(url: &str) {
//! use testkit::proxy::{Fault, Proxy, Trigger};
//! let proxy = Proxy::for_url(url).await;
//! let pool = sqlx::PgPool::connect(&proxy.url_for(url)).await.unwrap();
//! let commit = proxy.arm(Trigger::statement("COMMIT"), Fault::DropAnswerAndClose);
//! // ... a transaction on `pool` commits: the server commits, the client gets an I/O error.
//! assert_eq!(commit.fired(), 1);
//! # }
//! ```
//!
//! # What counts as a statement
//!
//! A statement is a client message that makes the server run SQL:
//! - **PostgreSQL**: a simple Query (`Q`), whose text may hold several statements, and an
//!   Execute (`E`) of the extended protocol. An Execute's text is the text of the Parse (`P`)
//!   that created the prepared statement bound to its portal (`B`), tracked per connection by
//!   name, so a statement prepared once and executed many times is seen at each execution.
//! - **MySQL/MariaDB**: COM_QUERY (`0x03`), whose text may hold several statements, and
//!   COM_STMT_EXECUTE (`0x17`). A COM_STMT_EXECUTE's text is the text of the COM_STMT_PREPARE
//!   (`0x16`) whose answer carried its statement id.
//!
//! Preparing a statement (a PostgreSQL Parse, a MySQL COM_STMT_PREPARE) runs nothing, so it is
//! not a statement here: nothing is seen and nothing fires until the statement is executed.
//!
//! # Faults
//!
//! A fault acts on the connection that sent the triggering statement; other connections go on
//! unaffected. "The answer" is everything the server sends on that connection from the moment
//! the statement was forwarded. See [`Fault`] for each kind. [`Proxy::cut_all`] closes every
//! connection at once, and [`Proxy::release`] lets held answers go.
//!
//! # Limits
//!
//! - Only TCP. Upstream is a `host:port` or the host and port of a URL (not a Unix socket).
//! - No TLS: a connection that starts TLS (PostgreSQL's SSLRequest answered `S`, MySQL's
//!   SSLRequest packet) is passed through byte for byte but never inspected, so nothing fires on
//!   it. The suite connects without TLS (sqlx feature `tls-none`).
//! - MySQL's compressed protocol and query attributes are not understood; sqlx uses neither.
//! - Text matching is plain text matching (see [`Trigger`]): splitting a batch into statements
//!   at `;` ignores quoting, and comments are not skipped.
//! - The proxy does not notice a PostgreSQL COPY or a function call (`F`); they pass through.
//! - The MySQL statement-id bookkeeping assumes that the client waits for the answer to a
//!   COM_STMT_PREPARE before sending its next command, as MySQL clients do (sqlx does).
//! - A held answer is kept in memory until it is released.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The wire protocol spoken through a [`Proxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// PostgreSQL's frontend/backend protocol, version 3.
    Postgres,
    /// The MySQL client/server protocol, as MariaDB speaks it.
    MySql,
}

impl Protocol {
    /// The protocol a database URL's scheme names: `postgres`/`postgresql`, or `mysql`/`mariadb`.
    pub fn of_url(url: &str) -> Option<Protocol> {
        let scheme = url.split_once("://")?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Protocol::Postgres),
            "mysql" | "mariadb" => Some(Protocol::MySql),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Protocol::Postgres => 5432,
            Protocol::MySql => 3306,
        }
    }
}

/// Which statements an armed fault acts on.
///
/// Texts are compared without regard to ASCII case, with every run of whitespace read as one
/// space and leading and trailing whitespace ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Trigger {
    pattern: String,
    how: Match,
    nth: usize,
    every_time: bool,
    connection: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Statement,
    Contains,
}

impl Trigger {
    /// Matches a text in which one of the statements (the text split at `;`) begins with
    /// `prefix`, followed by the end of that statement or by a character that cannot continue a
    /// word. `statement("COMMIT")` matches `COMMIT`, `commit;` and `INSERT INTO t VALUES (1);
    /// COMMIT`, and also `COMMIT PREPARED 'g'`, but not `XA COMMIT 'g'` or `COMMITTED`.
    pub fn statement(prefix: &str) -> Trigger {
        Trigger::new(prefix, Match::Statement)
    }

    /// Matches a text that contains `text` anywhere.
    pub fn contains(text: &str) -> Trigger {
        Trigger::new(text, Match::Contains)
    }

    fn new(pattern: &str, how: Match) -> Trigger {
        let pattern = normalize(pattern);
        assert!(!pattern.is_empty(), "a trigger needs a non-empty text");
        Trigger {
            pattern,
            how,
            nth: 1,
            every_time: false,
            connection: None,
        }
    }

    /// Fires on every matching statement (from the [`nth`](Trigger::nth) on), instead of once.
    pub fn every_time(mut self) -> Trigger {
        self.every_time = true;
        self
    }

    /// Lets the first `n - 1` matching statements pass and fires on the `n`-th (counted from the
    /// moment it is armed, in the order the proxy reads them, over every connection unless
    /// [`on_connection`](Trigger::on_connection) narrows it).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn nth(mut self, n: usize) -> Trigger {
        assert!(n > 0, "statements are counted from 1");
        self.nth = n;
        self
    }

    /// Matches only statements on connection `number`: the proxy numbers the connections it
    /// accepts 1, 2, 3, … in the order it accepts them (see [`Proxy::connections`]).
    pub fn on_connection(mut self, number: usize) -> Trigger {
        self.connection = Some(number);
        self
    }

    fn matches(&self, connection: usize, normalized: &str) -> bool {
        if self.connection.is_some_and(|c| c != connection) {
            return false;
        }
        match self.how {
            Match::Contains => normalized.contains(&self.pattern),
            Match::Statement => normalized.split(';').any(|statement| {
                let statement = statement.trim_start();
                statement.starts_with(&self.pattern)
                    && statement[self.pattern.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            }),
        }
    }
}

/// Uppercase ASCII, one space for each run of whitespace, trimmed.
fn normalize(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase()
}

/// What the proxy does to a connection when its statement matches a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards the statement, waits for the first bytes of the server's answer, discards them
    /// and closes both sides. The server has therefore run the statement (for `COMMIT`: the
    /// commit is done) while the client sees the connection end without an answer. The same as
    /// `CutAfter(0)`.
    DropAnswerAndClose,
    /// Forwards the statement and holds back everything the server sends on that connection
    /// until [`Proxy::release`] (then it is delivered, and the connection goes on normally) or
    /// until the connection is closed (then it is discarded). The client's call stays pending
    /// meanwhile: a test can drop its future while the statement is in flight.
    HoldAnswer,
    /// Forwards the statement, passes the first `n` bytes the server sends afterwards (counted
    /// over whatever answers they belong to), then closes both sides.
    CutAfter(usize),
    /// Closes both sides instead of forwarding the statement: the server never receives it (a
    /// PostgreSQL Parse and Bind sent before an Execute in the same write did reach it).
    CutBeforeForwarding,
}

/// A statement the proxy saw, in the order it read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The number of the connection that sent it (see [`Proxy::connections`]).
    pub connection: usize,
    /// Its SQL text, as sent (lossily decoded as UTF-8).
    pub text: String,
}

/// A running proxy; dropping it stops accepting and closes every connection.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: JoinHandle<()>,
}

/// A fault armed on a [`Proxy`], to ask whether and how often it fired.
#[derive(Debug, Clone)]
pub struct Armed {
    shared: Arc<Shared>,
    index: usize,
}

#[derive(Debug)]
struct Shared {
    protocol: Protocol,
    upstream: String,
    state: Mutex<State>,
    /// Bumped after every statement seen, so that waiters can check their condition again.
    events: watch::Sender<u64>,
    /// Bumped by [`Proxy::release`]; a hold started at epoch `e` ends when the epoch exceeds `e`.
    release: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    accepted: usize,
    /// The close signal of each open connection, by number.
    open: HashMap<usize, Arc<watch::Sender<bool>>>,
    statements: Vec<Statement>,
    arms: Vec<Arm>,
}

#[derive(Debug)]
struct Arm {
    trigger: Trigger,
    fault: Fault,
    matched: usize,
    fired: usize,
    active: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a statement and returns the fault it triggers, if any.
    fn observe(&self, connection: usize, text: String) -> Option<Fault> {
        let normalized = normalize(&text);
        let fault = {
            let mut state = self.lock();
            state.statements.push(Statement { connection, text });
            let mut fault = None;
            for arm in state.arms.iter_mut().filter(|arm| arm.active) {
                if !arm.trigger.matches(connection, &normalized) {
                    continue;
                }
                arm.matched += 1;
                if arm.matched >= arm.trigger.nth {
                    arm.fired += 1;
                    arm.active = arm.trigger.every_time;
                    fault = Some(arm.fault);
                    break;
                }
            }
            fault
        };
        self.events.send_modify(|n| *n += 1);
        fault
    }

    /// Waits until `done` holds for the state; checked after every statement the proxy sees.
    async fn wait_until(&self, mut done: impl FnMut(&State) -> bool) {
        let mut events = self.events.subscribe();
        loop {
            if done(&self.lock()) {
                return;
            }
            // The sender lives in `self`, so it is never dropped while we wait.
            let _ = events.changed().await;
        }
    }

    fn cut_all(&self) {
        for close in self.lock().open.values() {
            close.send_replace(true);
        }
    }
}

impl Proxy {
    /// Starts a proxy on a free loopback port in front of `upstream`: a database URL (its host
    /// and port are used; the protocol's default port if it names none) or a `host:port`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn start(upstream: &str, protocol: Protocol) -> Proxy {
        let upstream = upstream_address(upstream, protocol);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind a loopback port for the proxy: {e}"));
        let addr = listener.local_addr().expect("the proxy's listening address");
        let shared = Arc::new(Shared {
            protocol,
            upstream,
            state: Mutex::new(State::default()),
            events: watch::Sender::new(0),
            release: watch::Sender::new(0),
        });
        let acceptor = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Proxy { shared, addr, acceptor }
    }

    /// Starts a proxy in front of the server of a PostgreSQL or MySQL URL, with the protocol its
    /// scheme names.
    ///
    /// # Panics
    ///
    /// If the scheme is neither, or no loopback port can be bound.
    pub async fn for_url(url: &str) -> Proxy {
        let protocol = Protocol::of_url(url).unwrap_or_else(|| panic!("no PostgreSQL or MySQL URL: {url}"));
        Proxy::start(url, protocol).await
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The protocol the proxy reads.
    pub fn protocol(&self) -> Protocol {
        self.shared.protocol
    }

    /// `url` with its host and port replaced by the proxy's (user, password, database and
    /// parameters are kept).
    ///
    /// # Panics
    ///
    /// If `url` has no `scheme://`.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or_else(|| panic!("no URL: {url}"));
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
        format!("{scheme}://{userinfo}{}{tail}", self.addr)
    }

    /// Arms `fault` to act when `trigger` fires. Faults are consulted in the order they were
    /// armed; the first one that fires on a statement takes it, later ones do not count it.
    pub fn arm(&self, trigger: Trigger, fault: Fault) -> Armed {
        let mut state = self.shared.lock();
        state.arms.push(Arm {
            trigger,
            fault,
            matched: 0,
            fired: 0,
            active: true,
        });
        Armed {
            shared: Arc::clone(&self.shared),
            index: state.arms.len() - 1,
        }
    }

    /// Disarms every armed fault (faults already acting, such as a held answer, go on).
    pub fn disarm_all(&self) {
        for arm in &mut self.shared.lock().arms {
            arm.active = false;
        }
    }

    /// Delivers every answer held by [`Fault::HoldAnswer`] now; those connections go on
    /// normally. Holds that start later are not affected.
    pub fn release(&self) {
        self.shared.release.send_modify(|epoch| *epoch += 1);
    }

    /// Closes every open connection through the proxy, both sides, now. The proxy goes on
    /// accepting new ones.
    pub fn cut_all(&self) {
        self.shared.cut_all();
    }

    /// How many statements matching `trigger`'s text (and connection, if it names one) the proxy
    /// has seen since it started, whether or not anything fired.
    pub fn seen(&self, trigger: &Trigger) -> usize {
        let state = self.shared.lock();
        state
            .statements
            .iter()
            .filter(|s| trigger.matches(s.connection, &normalize(&s.text)))
            .count()
    }

    /// Waits until the proxy has seen `count` statements matching `trigger` (see
    /// [`seen`](Proxy::seen)).
    pub async fn wait_seen(&self, trigger: &Trigger, count: usize) {
        self.shared
            .wait_until(|state| {
                state
                    .statements
                    .iter()
                    .filter(|s| trigger.matches(s.connection, &normalize(&s.text)))
                    .count()
                    >= count
            })
            .await;
    }

    /// Every statement the proxy has seen, in order.
    pub fn statements(&self) -> Vec<Statement> {
        self.shared.lock().statements.clone()
    }

    /// How many connections the proxy has accepted; the last one has this number.
    pub fn connections(&self) -> usize {
        self.shared.lock().accepted
    }

    /// How many connections through the proxy are open now.
    pub fn open_connections(&self) -> usize {
        self.shared.lock().open.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.shared.cut_all();
    }
}

impl Armed {
    /// How many times the fault fired.
    pub fn fired(&self) -> usize {
        self.shared.lock().arms[self.index].fired
    }

    /// Waits until the fault has fired at least once. The fault is in place by then: for
    /// [`Fault::HoldAnswer`], the statement was forwarded and its answer is held.
    pub async fn wait_fired(&self) {
        self.shared.wait_until(|state| state.arms[self.index].fired > 0).await;
    }

    /// Disarms this fault; whatever it already did stays done.
    pub fn disarm(&self) {
        self.shared.lock().arms[self.index].active = false;
    }
}

/// `host:port` of a URL or of a `host:port`.
fn upstream_address(upstream: &str, protocol: Protocol) -> String {
    let Some((_, rest)) = upstream.split_once("://") else {
        return upstream.to_owned();
    };
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host_port = authority.rfind('@').map_or(authority, |at| &authority[at + 1..]);
    let has_port = match host_port.rfind(']') {
        Some(bracket) => host_port[bracket..].contains(':'),
        None => host_port.contains(':'),
    };
    if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:{}", protocol.default_port())
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors, say: try again a little later.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(serve(Arc::clone(&shared), client));
    }
}

/// One proxied connection: what its two directions share.
struct Connection {
    number: usize,
    shared: Arc<Shared>,
    close: Arc<watch::Sender<bool>>,
    answer: Mutex<Answer>,
    /// MySQL: the text of a COM_STMT_PREPARE whose answer has not been read yet.
    preparing: Mutex<Option<String>>,
    /// MySQL: prepared statement texts by the statement id the server gave them.
    prepared: Mutex<HashMap<u32, String>>,
}

/// What happens to the bytes the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Pass,
    /// Held since release epoch `since`.
    Hold {
        since: u64,
    },
    /// Pass `remaining` more bytes, then close.
    Cut {
        remaining: usize,
    },
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Connection {
    fn close(&self) {
        self.close.send_replace(true);
    }

    fn set_answer(&self, answer: Answer) {
        *locked(&self.answer) = answer;
    }
}

async fn serve(shared: Arc<Shared>, client: TcpStream) {
    let Ok(server) = TcpStream::connect(&shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let close = Arc::new(watch::Sender::new(false));
    let number = {
        let mut state = shared.lock();
        state.accepted += 1;
        let number = state.accepted;
        state.open.insert(number, Arc::clone(&close));
        number
    };
    let connection = Arc::new(Connection {
        number,
        shared: Arc::clone(&shared),
        close,
        answer: Mutex::new(Answer::Pass),
        preparing: Mutex::new(None),
        prepared: Mutex::new(HashMap::new()),
    });
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        client_to_server(&connection, client_read, server_write),
        server_to_client(&connection, server_read, client_write),
    );
    shared.lock().open.remove(&number);
}

/// Writes `bytes` unless the connection is closed first; `false` if it could not.
async fn write(to: &mut OwnedWriteHalf, bytes: &[u8], closed: &mut watch::Receiver<bool>) -> bool {
    if bytes.is_empty() {
        return true;
    }
    tokio::select! {
        biased;
        _ = closed.wait_for(|closed| *closed) => false,
        written = to.write_all(bytes) => written.is_ok(),
    }
}

async fn client_to_server(connection: &Connection, mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let mut closed = connection.close.subscribe();
    let mut reader = ClientReader::new(connection.shared.protocol);
    let mut chunk = vec![0u8; 64 * 1024];
    'read: loop {
        // Biased: once the connection is cut, nothing more is forwarded.
        let read = tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => break,
            read = from.read(&mut chunk) => read,
        };
        let Ok(n @ 1..) = read else { break };
        for piece in reader.feed(&chunk[..n]) {
            let (bytes, text) = match piece {
                Piece::Bytes(bytes) => (bytes, None),
                Piece::Run { text, bytes } => (bytes, Some(text)),
                Piece::RunPrepared { id, bytes } => {
                    let text = locked(&connection.prepared).get(&id).cloned();
                    (bytes, text)
                }
                Piece::Prepare { text, bytes } => {
                    *locked(&connection.preparing) = Some(text);
                    (bytes, None)
                }
            };
            // Read before the trigger fires: a release that follows the firing (a test waiting for
            // it) ends this hold even when it comes before the hold is set up.
            let epoch = *connection.shared.release.borrow();
            let fault = text.and_then(|text| connection.shared.observe(connection.number, text));
            match fault {
                None => {}
                Some(Fault::CutBeforeForwarding) => break 'read,
                Some(Fault::HoldAnswer) => connection.set_answer(Answer::Hold { since: epoch }),
                Some(Fault::DropAnswerAndClose) => connection.set_answer(Answer::Cut { remaining: 0 }),
                Some(Fault::CutAfter(n)) => connection.set_answer(Answer::Cut { remaining: n }),
            }
            if !write(&mut to, &bytes, &mut closed).await {
                break 'read;
            }
        }
    }
    connection.close();
}

async fn server_to_client(connection: &Connection, mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let mut closed = connection.close.subscribe();
    let mut released = connection.shared.release.subscribe();
    let mut held = Vec::new();
    let mut prepare_answer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => break,
            _ = released.changed() => None,
            read = from.read(&mut chunk) => Some(read),
        };
        let Some(read) = read else {
            let epoch = *released.borrow_and_update();
            let was_held = {
                let mut answer = locked(&connection.answer);
                let was_held = matches!(*answer, Answer::Hold { since } if since < epoch);
                if was_held {
                    *answer = Answer::Pass;
                }
                was_held
            };
            if was_held && !write(&mut to, &std::mem::take(&mut held), &mut closed).await {
                break;
            }
            continue;
        };
        let Ok(n @ 1..) = read else { break };
        let bytes = &chunk[..n];
        if connection.shared.protocol == Protocol::MySql {
            learn_statement_id(connection, &mut prepare_answer, bytes);
        }
        let answer = *locked(&connection.answer);
        match answer {
            Answer::Pass => {
                if !write(&mut to, bytes, &mut closed).await {
                    break;
                }
            }
            Answer::Hold { .. } => held.extend_from_slice(bytes),
            Answer::Cut { remaining } => {
                let passed = remaining.min(n);
                if !write(&mut to, &bytes[..passed], &mut closed).await {
                    break;
                }
                let remaining = remaining - passed;
                if remaining == 0 {
                    break;
                }
                connection.set_answer(Answer::Cut { remaining });
            }
        }
    }
    connection.close();
}

/// MySQL: reads the statement id from the answer to a COM_STMT_PREPARE (the first server bytes
/// after it was forwarded: a COM_STMT_PREPARE_OK packet, `0x00` then the id, or an error).
fn learn_statement_id(connection: &Connection, answer: &mut Vec<u8>, bytes: &[u8]) {
    let mut preparing = locked(&connection.preparing);
    if preparing.is_none() {
        return;
    }
    answer.extend_from_slice(&bytes[..bytes.len().min(9 - answer.len())]);
    if answer.len() < 5 {
        return;
    }
    if answer[4] != 0x00 {
        // An error packet: nothing was prepared.
        answer.clear();
        *preparing = None;
        return;
    }
    if answer.len() < 9 {
        return;
    }
    let id = u32::from_le_bytes([answer[5], answer[6], answer[7], answer[8]]);
    let text = preparing.take().expect("checked above");
    locked(&connection.prepared).insert(id, text);
    answer.clear();
}

/// A stretch of the client's bytes, in order.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// Bytes that run no statement.
    Bytes(Vec<u8>),
    /// A message that runs `text`.
    Run { text: String, bytes: Vec<u8> },
    /// MySQL COM_STMT_PREPARE of `text`.
    Prepare { text: String, bytes: Vec<u8> },
    /// MySQL COM_STMT_EXECUTE of statement `id`.
    RunPrepared { id: u32, bytes: Vec<u8> },
}

/// Splits the client's bytes into messages, as far as needed to find the statements.
struct ClientReader {
    protocol: Protocol,
    pending: Vec<u8>,
    /// Unknown bytes (TLS) follow: pass everything through.
    opaque: bool,
    /// PostgreSQL: the next message is untyped (StartupMessage, SSLRequest, GSSENCRequest).
    untyped: bool,
    /// PostgreSQL: prepared statement texts by name, and portals' statement names.
    statements: HashMap<Vec<u8>, String>,
    portals: HashMap<Vec<u8>, Vec<u8>>,
    /// MySQL: the handshake response has been read.
    greeted: bool,
}

const PG_SSL_REQUEST: u32 = 80_877_103;
const PG_GSSENC_REQUEST: u32 = 80_877_104;
const MYSQL_CLIENT_SSL: u32 = 0x800;

impl ClientReader {
    fn new(protocol: Protocol) -> ClientReader {
        ClientReader {
            protocol,
            pending: Vec::new(),
            opaque: false,
            untyped: true,
            statements: HashMap::new(),
            portals: HashMap::new(),
            greeted: false,
        }
    }

    /// The pieces that `data` completes; bytes of an incomplete message wait for the next call.
    fn feed(&mut self, data: &[u8]) -> Vec<Piece> {
        self.pending.extend_from_slice(data);
        let mut pieces = Vec::new();
        let mut passed = Vec::new();
        loop {
            if self.opaque {
                passed.append(&mut self.pending);
                break;
            }
            let Some(len) = self.next_message_len() else { break };
            let message: Vec<u8> = self.pending.drain(..len).collect();
            match self.classify(message) {
                Piece::Bytes(bytes) => passed.extend_from_slice(&bytes),
                piece => {
                    if !passed.is_empty() {
                        pieces.push(Piece::Bytes(std::mem::take(&mut passed)));
                    }
                    pieces.push(piece);
                }
            }
        }
        if !passed.is_empty() {
            pieces.push(Piece::Bytes(passed));
        }
        pieces
    }

    /// The length of the first message if `pending` holds all of it; switches to opaque if the
    /// bytes cannot be a message.
    fn next_message_len(&mut self) -> Option<usize> {
        let p = &self.pending;
        let len = match self.protocol {
            Protocol::Postgres if self.untyped => {
                let len = u32::from_be_bytes(p.get(..4)?.try_into().ok()?) as usize;
                if !(8..=10_000).contains(&len) {
                    self.opaque = true;
                    return None;
                }
                len
            }
            Protocol::Postgres => {
                let len = u32::from_be_bytes(p.get(1..5)?.try_into().ok()?) as usize;
                if len < 4 {
                    self.opaque = true;
                    return None;
                }
                1 + len
            }
            Protocol::MySql => 4 + (u32::from_le_bytes([*p.first()?, *p.get(1)?, *p.get(2)?, 0]) as usize),
        };
        (p.len() >= len).then_some(len)
    }

    fn classify(&mut self, message: Vec<u8>) -> Piece {
        match self.protocol {
            Protocol::Postgres => self.classify_postgres(message),
            Protocol::MySql => self.classify_mysql(message),
        }
    }

    fn classify_postgres(&mut self, message: Vec<u8>) -> Piece {
        if self.untyped {
            let code = u32::from_be_bytes(message[4..8].try_into().expect("8 bytes checked"));
            // After an SSLRequest or GSSENCRequest answered `N`, a StartupMessage follows; if
            // the server said yes, TLS bytes follow and fail the length check.
            self.untyped = matches!(code, PG_SSL_REQUEST | PG_GSSENC_REQUEST);
            return Piece::Bytes(message);
        }
        let body = &message[5..];
        match message[0] {
            b'Q' => Piece::Run {
                text: lossy(cstr(body, 0).0),
                bytes: message,
            },
            b'P' => {
                let (name, next) = cstr(body, 0);
                let (text, _) = cstr(body, next);
                self.statements.insert(name.to_vec(), lossy(text));
                Piece::Bytes(message)
            }
            b'B' => {
                let (portal, next) = cstr(body, 0);
                let (statement, _) = cstr(body, next);
                self.portals.insert(portal.to_vec(), statement.to_vec());
                Piece::Bytes(message)
            }
            b'E' => {
                let (portal, _) = cstr(body, 0);
                let text = self
                    .portals
                    .get(portal)
                    .and_then(|statement| self.statements.get(statement))
                    .cloned();
                match text {
                    Some(text) => Piece::Run { text, bytes: message },
                    None => Piece::Bytes(message),
                }
            }
            b'C' => {
                let (name, _) = cstr(body, 1);
                if body.first() == Some(&b'S') {
                    self.statements.remove(name);
                } else if body.first() == Some(&b'P') {
                    self.portals.remove(name);
                }
                Piece::Bytes(message)
            }
            _ => Piece::Bytes(message),
        }
    }

    fn classify_mysql(&mut self, message: Vec<u8>) -> Piece {
        let sequence = message[3];
        let payload = &message[4..];
        if !self.greeted {
            // The first client packet answers the server's greeting: a HandshakeResponse, or
            // a 32-byte SSLRequest after which TLS follows.
            self.greeted = true;
            let capabilities = payload
                .get(..4)
                .map_or(0, |c| u32::from_le_bytes(c.try_into().expect("4 bytes")));
            self.opaque = payload.len() == 32 && capabilities & MYSQL_CLIENT_SSL != 0;
            return Piece::Bytes(message);
        }
        // Commands start a new exchange, with sequence number 0; everything else (authentication
        // packets, continuation packets of long commands) passes.
        if sequence != 0 {
            return Piece::Bytes(message);
        }
        match payload.first() {
            Some(0x03) => Piece::Run {
                text: lossy(&payload[1..]),
                bytes: message,
            },
            Some(0x16) => Piece::Prepare {
                text: lossy(&payload[1..]),
                bytes: message,
            },
            Some(0x17) if payload.len() >= 5 => Piece::RunPrepared {
                id: u32::from_le_bytes(payload[1..5].try_into().expect("4 bytes")),
                bytes: message,
            },
            _ => Piece::Bytes(message),
        }
    }
}

/// The NUL-terminated string at `start` of `body` and the index after its NUL.
fn cstr(body: &[u8], start: usize) -> (&[u8], usize) {
    let rest = body.get(start..).unwrap_or_default();
    match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], start + nul + 1),
        None => (rest, body.len()),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

//! Starting and stopping the servers: one child process per server, started from a keeper thread
//! that lives as long as the process (the kernel's parent-death signal follows the thread that
//! spawned a child), stopped by an exit hook.

use activerecord::Backend;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub(crate) enum ServerKind {
    Postgres,
    /// PostgreSQL as installed, with `max_prepared_transactions` = 0: two-phase commit disabled.
    PostgresWithoutPreparedTransactions,
    MariaDb,
    Redis,
}

impl ServerKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ServerKind::Postgres => "PostgreSQL",
            ServerKind::PostgresWithoutPreparedTransactions => "PostgreSQL without prepared transactions",
            ServerKind::MariaDb => "MariaDB",
            ServerKind::Redis => "Redis",
        }
    }

    pub(crate) fn env_var(self) -> &'static str {
        match self {
            ServerKind::Postgres => "ACTIVERECORD_TEST_POSTGRES_URL",
            ServerKind::PostgresWithoutPreparedTransactions => "ACTIVERECORD_TEST_POSTGRES_NO_2PC_URL",
            ServerKind::MariaDb => "ACTIVERECORD_TEST_MYSQL_URL",
            ServerKind::Redis => "ACTIVERECORD_TEST_REDIS_URL",
        }
    }
}

/// The variable that asks for durable servers (`1`): see [`Durability`].
pub const DURABLE_ENV: &str = "ACTIVERECORD_BENCH_DURABLE";

/// How the PostgreSQL and MariaDB servers this process starts treat a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// For the tests: PostgreSQL with `fsync=off` (commits stay synchronous, nothing reaches the
    /// disk's platters), MariaDB with `innodb_flush_log_at_trx_commit=1` and no binary log.
    Fast,
    /// For benchmarks that must pay what a production server pays (`ACTIVERECORD_BENCH_DURABLE=1`):
    /// PostgreSQL with `fsync=on`, `synchronous_commit=on`, `full_page_writes=on`; MariaDB with
    /// `innodb_flush_log_at_trx_commit=1` and a binary log synced at every commit
    /// (`sync_binlog=1`). Their data directories must be on a disk: the server refuses to start
    /// when the scratch directory is on tmpfs (point `TMPDIR` elsewhere).
    Durable,
}

impl Durability {
    /// What this process asked for: [`Durability::Durable`] when `ACTIVERECORD_BENCH_DURABLE` is
    /// `1` or `true`.
    pub fn of_process() -> Durability {
        static CHOSEN: OnceLock<Durability> = OnceLock::new();
        *CHOSEN.get_or_init(|| match std::env::var(DURABLE_ENV).as_deref() {
            Ok("1" | "true") => Durability::Durable,
            _ => Durability::Fast,
        })
    }
}

/// A running server this process started.
pub(crate) struct Server {
    kind: ServerKind,
    port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

/// Every server started by this process, for the exit hook.
static STARTED: Mutex<Vec<&'static Server>> = Mutex::new(Vec::new());
static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// This process's scratch directory (removed at exit): SQLite files and server data live here.
pub fn scratch_dir() -> &'static Path {
    SCRATCH.get_or_init(|| {
        remove_leftovers();
        let dir = std::env::temp_dir().join(format!("activerecord-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        register_exit_hook();
        dir
    })
}

/// Removes the scratch directories of earlier test processes that were killed before their exit
/// hook ran.
fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("activerecord-testkit-")) else {
            continue;
        };
        let alive = pid
            .parse::<i32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn register_exit_hook() {
    extern "C" fn stop_all() {
        let servers = std::mem::take(&mut *STARTED.lock().unwrap_or_else(|e| e.into_inner()));
        for server in servers {
            server.stop();
        }
        if let Some(dir) = SCRATCH.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    // SAFETY: `stop_all` is a plain function that does not unwind across the FFI boundary in
    // practice (it only signals, waits for children and removes files).
    unsafe {
        libc::atexit(stop_all);
    }
}

impl Server {
    /// Starts a server of `kind` on a keeper thread and returns once it accepts connections.
    pub(crate) fn start_shared(kind: ServerKind) -> Result<&'static Server, String> {
        let (tx, rx) = mpsc::channel();
        let scratch = scratch_dir();
        std::thread::Builder::new()
            .name(format!("testkit-{}", kind.name()))
            .spawn(move || {
                let started = Server::start(kind, scratch);
                let keep_running = started.is_ok();
                let _ = tx.send(started);
                if keep_running {
                    // The server's parent-death signal is tied to this thread: it must never end.
                    loop {
                        std::thread::park();
                    }
                }
            })
            .map_err(|e| format!("cannot start a keeper thread: {e}"))?;
        let server: &'static Server = Box::leak(Box::new(rx.recv().map_err(|e| e.to_string())??));
        STARTED.lock().unwrap_or_else(|e| e.into_inner()).push(server);
        Ok(server)
    }

    fn start(kind: ServerKind, scratch: &Path) -> Result<Server, String> {
        let began = Instant::now();
        let port = free_port()?;
        let dir = scratch.join(format!("server-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = dir.join("server.log");
        let durability = Durability::of_process();
        if durability == Durability::Durable && !matches!(kind, ServerKind::Redis) {
            refuse_tmpfs(&dir)?;
        }
        let child = match kind {
            ServerKind::Postgres => start_postgres(&dir, port, &log, 20, durability)?,
            ServerKind::PostgresWithoutPreparedTransactions => start_postgres(&dir, port, &log, 0, durability)?,
            ServerKind::MariaDb => start_mariadb(&dir, port, &log, durability)?,
            ServerKind::Redis => start_redis(&dir, port, &log)?,
        };
        let server = Server {
            kind,
            port,
            dir,
            child: Mutex::new(Some(child)),
        };
        if let Err(why) = server.wait_until_ready() {
            server.stop();
            return Err(why);
        }
        let durable = match (durability, kind) {
            (Durability::Durable, ServerKind::Redis) | (Durability::Fast, _) => String::new(),
            (Durability::Durable, _) => format!(", durable, data in {}", server.dir.display()),
        };
        announce(&format!(
            "testkit: {} started on 127.0.0.1:{port} in {:.2} s{durable}",
            kind.name(),
            began.elapsed().as_secs_f64()
        ));
        Ok(server)
    }

    pub(crate) fn base_url(&self) -> String {
        match self.kind {
            ServerKind::Postgres | ServerKind::PostgresWithoutPreparedTransactions => {
                format!("postgres://postgres@127.0.0.1:{}", self.port)
            }
            ServerKind::MariaDb => format!("mysql://root@127.0.0.1:{}", self.port),
            ServerKind::Redis => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    fn wait_until_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child_exited() {
                return Err(format!(
                    "{} exited with {status} while starting:\n{}",
                    self.kind.name(),
                    self.log_tail()
                ));
            }
            if self.is_ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not become ready in 60 s:\n{}",
                    self.kind.name(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_ready(&self) -> bool {
        match self.kind {
            // A stale pid file of a killed server also says "ready": check that the pid is ours.
            ServerKind::Postgres | ServerKind::PostgresWithoutPreparedTransactions => {
                let pid = self.child.lock().unwrap().as_ref().map(Child::id);
                let status = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap_or_default();
                let lines: Vec<&str> = status.lines().collect();
                lines.first().and_then(|l| l.trim().parse::<u32>().ok()) == pid
                    && lines.get(7).is_some_and(|l| l.trim() == "ready")
            }
            ServerKind::MariaDb | ServerKind::Redis => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
        }
    }

    fn child_exited(&self) -> Option<std::process::ExitStatus> {
        self.child
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.join("server.log")) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server (SIGINT for PostgreSQL's fast shutdown, SIGTERM otherwise), waits for it,
    /// and removes its directory.
    fn stop(&self) {
        let began = Instant::now();
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let signal = match self.kind {
            ServerKind::Postgres | ServerKind::PostgresWithoutPreparedTransactions => libc::SIGINT,
            ServerKind::MariaDb | ServerKind::Redis => libc::SIGTERM,
        };
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        eprintln!(
            "testkit: {} stopped in {:.2} s",
            self.kind.name(),
            began.elapsed().as_secs_f64()
        );
    }
}

/// Writes a line to the process's stderr. Not `eprintln!`: the test harness captures that for the
/// test whose thread started the server, and shows it only if that test fails.
fn announce(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Fails when `dir` is on tmpfs, where an fsync costs nothing: a durable server's data must be on
/// a disk.
fn refuse_tmpfs(dir: &Path) -> Result<(), String> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statfs writes into the zeroed struct we pass; `path` is a valid C string.
    let (status, fs) = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        (libc::statfs(path.as_ptr(), &mut fs), fs)
    };
    if status != 0 {
        return Err(format!("statfs {}: {}", dir.display(), std::io::Error::last_os_error()));
    }
    if fs.f_type == libc::TMPFS_MAGIC {
        return Err(format!(
            "{DURABLE_ENV} asks for servers whose commits reach the disk, but {} is on tmpfs: \
             set TMPDIR to a directory on a disk",
            dir.display()
        ));
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A command for `program` that dies with this process and writes to `log`.
fn command(program: &Path, log: &Path) -> Result<Command, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(program);
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(command)
}

/// Finds `program` on PATH or in the usual places of Debian's server packages.
fn find_program(program: &str, extra_dirs: &[&str]) -> Result<PathBuf, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(extra_dirs.iter().map(PathBuf::from));
    // Debian keeps PostgreSQL's server programs in a versioned directory off PATH; prefer the newest.
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    dirs.extend(versions.into_iter().rev());
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("`{program}` was not found on PATH or in {extra_dirs:?}"))
}

fn run(mut command: Command, what: &str, log: &Path) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        let output = std::fs::read_to_string(log).unwrap_or_default();
        Err(format!("{what} failed with {status}:\n{output}"))
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// PostgreSQL refuses to run as root: as root, run it as the `postgres` user.
fn postgres_user() -> Result<Option<(u32, u32)>, String> {
    if !is_root() {
        return Ok(None);
    }
    // SAFETY: getpwnam returns a pointer into static storage, read at once.
    unsafe {
        let entry = libc::getpwnam(c"postgres".as_ptr());
        if entry.is_null() {
            return Err("running as root and there is no `postgres` user to run PostgreSQL as".to_owned());
        }
        Ok(Some(((*entry).pw_uid, (*entry).pw_gid)))
    }
}

/// Every test keeps the pools it opens until the process ends (up to 10 connections each), so the
/// shared servers admit far more clients than their defaults.
fn start_postgres(
    dir: &Path,
    port: u16,
    log: &Path,
    max_prepared_transactions: u32,
    durability: Durability,
) -> Result<Child, String> {
    let initdb = find_program("initdb", &[])?;
    let postgres = find_program("postgres", &[])?;
    let user = postgres_user()?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", dir.display()))?;
        std::fs::File::create(log).map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(log, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let as_user = |command: &mut Command| {
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
    };
    let data = dir.join("data");
    let mut init = command(&initdb, log)?;
    init.arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
    as_user(&mut init);
    run(init, "initdb", log)?;

    let mut server = command(&postgres, log)?;
    server
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=400", "-c"])
        .arg(format!("max_prepared_transactions={max_prepared_transactions}"))
        .args(match durability {
            // Test data need not survive an operating system crash; commits stay synchronous.
            Durability::Fast => &["-c", "fsync=off"][..],
            Durability::Durable => &[
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
                "-c",
                "full_page_writes=on",
            ],
        });
    as_user(&mut server);
    server.spawn().map_err(|e| format!("cannot start postgres: {e}"))
}

fn start_mariadb(dir: &Path, port: u16, log: &Path, durability: Durability) -> Result<Child, String> {
    let install = find_program("mariadb-install-db", &["/usr/bin", "/usr/sbin"])?;
    let mariadbd = find_program("mariadbd", &["/usr/sbin"])?;
    let data = dir.join("data");
    let root = if is_root() { Some("--user=root") } else { None };
    let mut init = command(&install, log)?;
    init.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ])
        .args(root);
    run(init, "mariadb-install-db", log)?;

    let mut server = command(&mariadbd, log)?;
    server
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-flush-log-at-trx-commit=1",
            "--innodb-buffer-pool-size=32M",
            "--max-connections=400",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
        ])
        .args(root);
    match durability {
        Durability::Fast => {
            server.arg("--skip-log-bin");
        }
        // As a primary that replicates: the binary log, synced at every commit.
        Durability::Durable => {
            server
                .arg(format!("--log-bin={}", dir.join("binlog").display()))
                .args(["--server-id=1", "--sync-binlog=1"]);
        }
    }
    server.spawn().map_err(|e| format!("cannot start mariadbd: {e}"))
}

fn start_redis(dir: &Path, port: u16, log: &Path) -> Result<Child, String> {
    let redis = find_program("redis-server", &["/usr/bin"])?;
    let mut server = command(&redis, log)?;
    server
        .arg("--port")
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .arg("--dir")
        .arg(dir);
    server.spawn().map_err(|e| format!("cannot start redis-server: {e}"))
}

/// Creates database `name` on the server at `base_url`, retrying while the server finishes
/// starting up.
pub(crate) async fn create_database(backend: Backend, base_url: &str, name: &str) {
    use sqlx::{Connection, Executor};
    let deadline = Instant::now() + Duration::from_secs(30);
    let statement = match backend {
        Backend::Postgres => format!("CREATE DATABASE \"{name}\""),
        _ => format!("CREATE DATABASE `{name}`"),
    };
    loop {
        let attempt: Result<(), sqlx::Error> = async {
            match backend {
                Backend::Postgres => {
                    let mut conn = sqlx::PgConnection::connect(&format!("{base_url}/postgres")).await?;
                    conn.execute(sqlx::AssertSqlSafe(statement.as_str())).await?;
                    conn.close().await
                }
                _ => {
                    let mut conn = sqlx::MySqlConnection::connect(base_url).await?;
                    conn.execute(sqlx::AssertSqlSafe(statement.as_str())).await?;
                    conn.close().await
                }
            }
        }
        .await;
        match attempt {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                panic!("cannot create test database {name}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

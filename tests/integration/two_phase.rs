//! Two-phase commit on PostgreSQL + MariaDB and PostgreSQL + PostgreSQL: commits, failed prepares,
//! and a crash at each step of the protocol followed by recovery in a fresh process.

use crate::common::{
    Movement, assert_balances_match_movements, assert_no_open_transactions, balance, bank, test_matrix,
};
use activerecord::EventKind;
use activerecord::two_phase::{BranchRef, Coordinator, CoordinatorConfig};
use activerecord::{Backend, ConnectionManager, Database, Error, Model, Result, fetch_column};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// The two-phase scenarios run one at a time: MariaDB lists prepared branches server-wide, and each
/// scenario checks that none is left. Every test that prepares MariaDB branches, even briefly, takes
/// this lock too (the example and proxy tests).
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

test_matrix!(
    [postgres_and_mariadb, postgres_and_postgres], one_at_a_time(SERIAL) =>
    a_two_phase_transfer_commits_both,
    a_failed_prepare_rolls_every_branch_back,
    tpc_calls_commit_and_roll_back,
    a_crash_after_prepare_rolls_back,
    a_crash_after_the_decision_commits,
    two_recoveries_at_once_agree,
    recovery_reports_each_branch,
    sixteen_concurrent_transfers_share_the_decision_log,
);

test_matrix!(
    [postgres_and_mariadb, postgres_and_postgres, mariadb_and_postgres, sqlite_and_postgres], one_at_a_time(SERIAL) =>
    the_commit_point_site_decides_without_a_log_row,
    a_crash_before_the_site_commits_rolls_back,
    a_crash_after_the_site_commits_commits,
);

test_matrix!(
    [postgres_and_mariadb, postgres_and_postgres, mariadb_and_postgres, sqlite_and_postgres, postgres_and_sqlite],
    one_at_a_time(SERIAL) =>
    a_read_only_participant_commits_first_and_is_never_prepared,
);

test_matrix!([postgres_and_mariadb], one_at_a_time(SERIAL) =>
    a_crash_with_a_read_only_participant_recovers_the_writers_only,
    a_unit_too_old_to_decide_safely_rolls_back,
);

test_matrix!([postgres_and_mariadb, mariadb_and_postgres], one_at_a_time(SERIAL) =>
    prepares_and_phase_two_commits_run_concurrently,
    a_crash_while_the_site_answer_is_lost_commits,
);

// The prepared database is PostgreSQL: another session can roll its branch back while the
// unit's own session still waits for the PREPARE answer.
test_matrix!([postgres_and_postgres, mariadb_and_postgres], one_at_a_time(SERIAL) =>
    recovery_fences_a_site_commit_still_on_its_way,
);

// Both databases are prepared: PostgreSQL, for the same reason.
test_matrix!([postgres_and_postgres], one_at_a_time(SERIAL) =>
    recovery_fences_a_logged_decision_still_on_its_way,
);

test_matrix!([postgres_and_mariadb, mariadb_and_postgres], one_at_a_time(SERIAL) =>
    a_site_whose_marker_table_is_not_migrated_keeps_the_branch_prepared,
);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One coordinator for the tests that run in this process (recovery of the crash tests runs in
/// child processes with coordinators of their own).
pub(crate) async fn coordinator() -> &'static Coordinator {
    static COORDINATOR: OnceCell<Coordinator> = OnceCell::const_new();
    COORDINATOR
        .get_or_init(|| async {
            let log = testkit::scratch_dir().join("two-phase-log.db");
            // No recovery at install: it would scan every connection of the process, and other
            // tests' pools belong to runtimes that have ended (each waits out its acquire timeout).
            let config = CoordinatorConfig::new("suite")
                .log_in_file(log)
                .grace_period(Duration::from_secs(3600))
                .recover_at_start(false);
            Coordinator::install(config).await.unwrap().0
        })
        .await
}

struct Pair {
    names: [String; 2],
    dbs: [Database; 2],
    urls: [String; 2],
    variant: Variant,
    /// A third bank database the transfer only reads (`Variant::SiteWithReader`).
    reader: Option<Database>,
}

async fn pair(first: Backend, second: Backend, label: &str) -> Pair {
    variant_pair(first, second, label, Variant::Log).await
}

/// A pair whose transfers decide as `variant` says: with a site, both databases have the marker
/// tables (`migrate::run`).
async fn variant_pair(first: Backend, second: Backend, label: &str, variant: Variant) -> Pair {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let names = [format!("{label}_{n}_a"), format!("{label}_{n}_b")];
    let (a, _) = bank(first, &names[0], &["ann"]).await;
    let (b, _) = bank(second, &names[1], &["bob"]).await;
    if variant != Variant::Log {
        activerecord::migrate::run(&a).await.unwrap();
        activerecord::migrate::run(&b).await.unwrap();
    }
    let reader = match variant {
        Variant::SiteWithReader => Some(
            bank(Backend::Postgres, &format!("{label}_{n}_reader"), &["cat"])
                .await
                .0,
        ),
        _ => None,
    };
    let urls = [a.url().expose().to_owned(), b.url().expose().to_owned()];
    Pair {
        names,
        dbs: [a, b],
        urls,
        variant,
        reader,
    }
}

pub(crate) async fn prepared_count(db: &Database) -> usize {
    match db.backend() {
        Backend::Sqlite => 0,
        Backend::Postgres => {
            let n: Vec<i64> = fetch_column(
                db,
                "SELECT COUNT(*) FROM pg_prepared_xacts WHERE database = current_database()",
            )
            .await
            .unwrap();
            n[0] as usize
        }
        _ => {
            let rows: Vec<i64> = fetch_column(db, "XA RECOVER").await.unwrap();
            rows.len()
        }
    }
}

async fn assert_consistent(pair: &Pair, applied: bool) {
    let expected = if applied { (90, 110) } else { (100, 100) };
    assert_eq!(
        (balance(&pair.dbs[0], 1).await, balance(&pair.dbs[1], 1).await),
        expected
    );
    for db in &pair.dbs {
        assert_balances_match_movements(db, &[1]).await;
        assert_eq!(
            prepared_count(db).await,
            0,
            "{}: a prepared transaction was left behind",
            db.name()
        );
        assert_no_open_transactions(db).await;
    }
}

/// The transfer of `two_phase_child`, in this process.
async fn transfer(pair: &Pair, amount: i64) -> Result<()> {
    testkit::bank::transfer((&pair.names[0], 1), (&pair.names[1], 1), amount, true).await
}

async fn a_two_phase_transfer_commits_both(first: Backend, second: Backend) -> Result<()> {
    coordinator().await;
    let pair = pair(first, second, "tpc_commit").await;
    transfer(&pair, 10).await?;
    assert_consistent(&pair, true).await;
    Ok(())
}

/// PostgreSQL checks deferred constraints at PREPARE TRANSACTION: the second branch's prepare
/// fails after the first one's succeeded, and both must roll back.
async fn a_failed_prepare_rolls_every_branch_back(first: Backend, second: Backend) -> Result<()> {
    coordinator().await;
    // The branch that fails to prepare is PostgreSQL; the one prepared before it is `first`.
    let pair = pair(second, first, "tpc_prepare").await;
    let failing = &pair.dbs[1];
    failing
        .execute(
            "CREATE TABLE holds (id BIGSERIAL PRIMARY KEY, account_id BIGINT NOT NULL \
             REFERENCES accounts (id) DEFERRABLE INITIALLY DEFERRED)",
        )
        .await?;
    let err = ConnectionManager::using(&pair.names[0])
        .two_phase()
        .transaction(async |tx| {
            Movement::record(tx, 1, -10).await?;
            ConnectionManager::using(&pair.names[1])
                .transaction(async |tx| {
                    Movement::record(tx, 1, 10).await?;
                    tx.execute("INSERT INTO holds (account_id) VALUES (424242)").await
                })
                .await
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConstraintViolation { .. }), "{err:?}");
    for db in &pair.dbs {
        assert_eq!(
            Movement::count(db).await?,
            0,
            "{} kept work of a failed two-phase commit",
            db.name()
        );
        assert_eq!(prepared_count(db).await, 0);
    }
    Ok(())
}

async fn tpc_calls_commit_and_roll_back(first: Backend, second: Backend) -> Result<()> {
    let pair = pair(first, second, "tpc_calls").await;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Prepared, then committed.
    let xid = format!("manual-{}-{n}", std::process::id());
    let one = pair.dbs[0].tpc_begin(&format!("{xid}-a")).await?;
    let two = pair.dbs[1].tpc_begin(&format!("{xid}-b")).await?;
    Movement::record(&one, 1, -1).await?;
    Movement::record(&two, 1, 1).await?;
    one.tpc_prepare().await?;
    two.tpc_prepare().await?;
    one.tpc_commit().await?;
    two.tpc_commit().await?;
    // Prepared, then rolled back.
    let three = pair.dbs[0].tpc_begin(&format!("{xid}-c")).await?;
    Movement::record(&three, 1, -5).await?;
    three.tpc_prepare().await?;
    three.tpc_rollback().await?;
    for db in &pair.dbs {
        assert_eq!(Movement::count(db).await?, 1);
        assert_eq!(prepared_count(db).await, 0);
        assert_no_open_transactions(db).await;
    }
    assert!(
        pair.dbs[0].tpc_begin("x'; COMMIT; --").await.is_err(),
        "ids are validated before they reach SQL"
    );
    Ok(())
}

/// Recovery in this process reports the branches it resolved and those it left alone as typed
/// references: an old branch with no decision is rolled back, a young one is in flight.
async fn recovery_reports_each_branch(first: Backend, second: Backend) -> Result<()> {
    let pair = pair(first, second, "tpc_report").await;
    let coordinator = coordinator().await;
    let random = || format!("{:08x}", uuid::Uuid::new_v4().as_u128() as u32);
    // Ids of the suite's coordinator: created at 1 ms past the epoch, and now.
    let old = format!("ar-suite-1-{}", random());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let young = format!("ar-suite-{now:x}-{}", random());
    // PostgreSQL (the first of every pair) lets any session finish a prepared branch.
    let db = &pair.dbs[0];
    let abandoned = db.tpc_begin(&old).await?;
    Movement::record(&abandoned, 1, -1).await?;
    abandoned.tpc_prepare().await?;
    drop(abandoned);
    let live = db.tpc_begin(&young).await?;
    Movement::record(&live, 1, -2).await?;
    live.tpc_prepare().await?;

    // Only this test's connections: other tests' pools belong to runtimes that have ended.
    let report = coordinator.recover_on(&pair.names).await?;
    let branch = |gtrid: &str| BranchRef {
        connection: pair.names[0].clone(),
        gtrid: gtrid.to_owned(),
        branch: "0".to_owned(),
    };
    assert!(report.rolled_back.contains(&branch(&old)), "{report:?}");
    assert!(report.in_flight.contains(&branch(&young)), "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(branch(&old).to_string(), format!("{}:{old}-0", pair.names[0]));

    live.tpc_rollback().await?;
    assert_consistent(&pair, false).await;
    Ok(())
}

/// How the crash tests' transfer decides: in the log, or by a commit point site (the marker
/// tables exist); and whether it reads a third database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Log,
    Site,
    SiteWithReader,
}

/// A coordinator name for a child process, made of `prefix` and a number, and its log file.
fn child_coordinator(prefix: &str) -> (String, String) {
    let coordinator = format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let log = testkit::scratch_dir().join(format!("{coordinator}.db"));
    (coordinator, log.display().to_string())
}

/// Puts a proxy in front of database `side` of `pair` (in the URL a child process gets), holding
/// the answer to `trigger`. Returns the proxy, its armed fault and the database's own URL.
async fn hold_answer_to(
    pair: &mut Pair,
    side: usize,
    trigger: testkit::Trigger,
) -> (testkit::Proxy, testkit::Armed, String) {
    let direct = pair.urls[side].clone();
    let proxy = testkit::Proxy::for_url(&direct).await;
    let held = proxy.arm(trigger, testkit::Fault::HoldAnswer);
    pair.urls[side] = proxy.url_for(&direct);
    (proxy, held, direct)
}

/// Waits, at most 30 s, until the fault `held` fired and then until `done` answers true: the
/// server ran what the child sent, and only its answer is held. Panics with `expected` otherwise.
async fn ran_unanswered(held: &testkit::Armed, done: impl AsyncFn() -> bool, expected: &str) {
    let ran = async {
        held.wait_fired().await;
        while !done().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ran)
        .await
        .expect(expected);
}

/// The child's transfer failed with `error` (as its `Debug` names it), and nothing of it applied.
async fn assert_refused(output: &std::process::Output, error: &str, pair: &Pair) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the transfer committed: {stderr}");
    assert!(stderr.contains(error), "{stderr}");
    assert_consistent(pair, false).await;
}

/// `two_phase_child` for `pair`, its stdout piped.
fn child_command(mode: &str, pair: &Pair, log: &str, coordinator: &str, last: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_two_phase_child"));
    command
        .args([mode, &pair.urls[0], &pair.urls[1], log, coordinator, last])
        .env("MARKERS", if pair.variant == Variant::Log { "0" } else { "1" })
        .envs(
            pair.reader
                .iter()
                .map(|reader| ("READER_URL", reader.url().expose().to_owned())),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Starts `two_phase_child` with its stdout piped.
fn child(mode: &str, pair: &Pair, log: &str, coordinator: &str, last: &str) -> std::process::Child {
    child_command(mode, pair, log, coordinator, last)
        .spawn()
        .expect("start two_phase_child")
}

/// Runs recovery in a fresh process with `grace` seconds; returns its report line.
fn recover(pair: &Pair, log: &str, coordinator: &str, grace: u64) -> String {
    let output = child("recover", pair, log, coordinator, &grace.to_string())
        .wait_with_output()
        .unwrap();
    assert!(output.status.success(), "recovery failed");
    let report = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(report.ends_with("errors=0"), "{report}");
    report
}

/// Starts a two-phase transfer in a child process and kills it with SIGKILL right after `step`.
/// Returns the pair of databases, the coordinator's name and its log file.
async fn crash_at(first: Backend, second: Backend, step: &str, variant: Variant) -> (Pair, String, String) {
    let pair = variant_pair(first, second, &format!("tpc_crash_{step}"), variant).await;
    let (coordinator, log) = child_coordinator("crash");

    let mut transfer = child("transfer", &pair, &log, &coordinator, step);
    let stdout = transfer.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().next())
        .await
        .unwrap()
        .expect("the child stops at its step")
        .unwrap();
    assert_eq!(line, "STOPPED");
    transfer.kill().unwrap(); // SIGKILL
    transfer.wait().unwrap();
    (pair, coordinator, log)
}

/// Kills a two-phase transfer right after `step`, then recovers in a fresh process.
async fn crash_and_recover(first: Backend, second: Backend, step: &str, variant: Variant, applied: bool) -> Result<()> {
    let (pair, coordinator, log) = crash_at(first, second, step, variant).await;
    let in_doubt: usize = prepared_count(&pair.dbs[0]).await + prepared_count(&pair.dbs[1]).await;
    assert!(in_doubt > 0, "the crash left prepared branches");
    if !applied {
        // Without a decision, a branch younger than the grace period may still be in flight.
        let report = recover(&pair, &log, &coordinator, 3600);
        assert!(
            report.contains("rolled_back=0") && !report.contains("in_flight=0"),
            "{report}"
        );
        assert_eq!(
            prepared_count(&pair.dbs[0]).await + prepared_count(&pair.dbs[1]).await,
            in_doubt
        );
    }
    let report = recover(&pair, &log, &coordinator, 0);
    assert!(
        !report.starts_with("committed=0 rolled_back=0"),
        "recovery did something: {report}"
    );
    // Safe to run again: nothing is left to do.
    assert_eq!(
        recover(&pair, &log, &coordinator, 0),
        "committed=0 rolled_back=0 in_flight=0 finished=0 errors=0"
    );
    assert_consistent(&pair, applied).await;
    if let Some(reader) = &pair.reader {
        assert_eq!(
            prepared_count(reader).await,
            0,
            "a database that only read is never prepared"
        );
        assert_eq!(balance(reader, 1).await, 100);
        assert_no_open_transactions(reader).await;
    }
    Ok(())
}

/// Two recovery processes started together resolve the same crash without disturbing each other.
async fn two_recoveries_at_once_agree(first: Backend, second: Backend) -> Result<()> {
    let (pair, coordinator, log) = crash_at(first, second, "decided", Variant::Log).await;
    let racers = [
        child("recover", &pair, &log, &coordinator, "0"),
        child("recover", &pair, &log, &coordinator, "0"),
    ];
    for racer in racers {
        let output = racer.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && report.trim().ends_with("errors=0"),
            "{report}"
        );
    }
    assert_consistent(&pair, true).await;
    Ok(())
}

async fn a_crash_after_prepare_rolls_back(first: Backend, second: Backend) -> Result<()> {
    crash_and_recover(first, second, "prepared", Variant::Log, false).await
}

async fn a_crash_after_the_decision_commits(first: Backend, second: Backend) -> Result<()> {
    crash_and_recover(first, second, "decided", Variant::Log, true).await
}

/// The branches to prepare are prepared, the commit point site has not committed: nothing was
/// decided, so recovery rolls every branch back (once they are older than the grace period).
async fn a_crash_before_the_site_commits_rolls_back(first: Backend, second: Backend) -> Result<()> {
    crash_and_recover(first, second, "prepared", Variant::Site, false).await
}

/// The commit point site committed, with the unit's marker, and the process died before the
/// prepared branch committed: recovery finds the marker on the site and commits the branch.
async fn a_crash_after_the_site_commits_commits(first: Backend, second: Backend) -> Result<()> {
    crash_and_recover(first, second, "decided", Variant::Site, true).await
}

/// A third database that the transfer only read was committed in one phase before anything was
/// prepared: after a crash before the decision, recovery rolls the writers back and finds nothing
/// of the reader's.
async fn a_crash_with_a_read_only_participant_recovers_the_writers_only(first: Backend, second: Backend) -> Result<()> {
    crash_and_recover(first, second, "prepared", Variant::SiteWithReader, false).await
}

/// Every event of the unit whose id is `unit`, recorded from now on.
#[derive(Default)]
struct UnitEvents(std::sync::Mutex<Vec<activerecord::Event>>);

impl activerecord::Observer for UnitEvents {
    async fn on_event(&self, event: &activerecord::Event) -> Result<()> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl UnitEvents {
    fn of(&self, unit: &activerecord::UnitId) -> Vec<EventKind> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter(|e| &e.unit == unit)
            .map(|e| e.kind.clone())
            .collect()
    }
}

/// The commit markers with unit id `unit` on `db`.
async fn markers_of(db: &Database, unit: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM activerecord_markers WHERE unit_id = '{unit}'");
    fetch_column::<i64, _>(db, &sql).await.unwrap()[0]
}

/// With the marker tables in place, a two-phase transfer prepares only the joined database (the
/// root is the commit point site): the site's commit carries the
/// unit's marker and is the decision, and the log gets no row.
async fn the_commit_point_site_decides_without_a_log_row(first: Backend, second: Backend) -> Result<()> {
    coordinator().await;
    let pair = variant_pair(first, second, "tpc_site", Variant::Site).await;
    let events = Arc::new(UnitEvents::default());
    let observer = ConnectionManager::observe(events.clone());
    let unit = ConnectionManager::using(&pair.names[0])
        .two_phase()
        .transaction(async |tx| {
            testkit::bank::transfer_in(tx, 1, (&pair.names[1], 1), 10).await?;
            Ok::<_, Error>(tx.unit_id().clone())
        })
        .await?;
    ConnectionManager::unobserve(observer);
    assert_consistent(&pair, true).await;
    // The outermost database is the site (SQLite, which cannot prepare, can only be that one).
    let (site, prepared) = (0, 1);
    assert!(
        unit.as_str().starts_with("ar-suite-"),
        "the unit id is the global transaction id: {unit}"
    );
    assert_eq!(markers_of(&pair.dbs[site], unit.as_str()).await, 1);
    assert_eq!(
        markers_of(&pair.dbs[prepared], unit.as_str()).await,
        0,
        "a prepared branch leaves no marker"
    );
    let kinds = events.of(&unit);
    let prepared_events: Vec<_> = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::Prepared { .. }))
        .collect();
    assert_eq!(
        prepared_events,
        [&EventKind::Prepared {
            connection: pair.names[prepared].clone()
        }]
    );
    let decision = kinds
        .iter()
        .position(|k| matches!(k, EventKind::DecisionDurable { .. }))
        .unwrap();
    assert_eq!(
        kinds[decision],
        EventKind::DecisionDurable {
            gtrid: unit.to_string(),
            site: Some(pair.names[site].clone())
        }
    );
    assert_eq!(
        kinds[decision - 1],
        EventKind::Committed {
            connection: pair.names[site].clone()
        },
        "the site's commit is the decision"
    );
    Ok(())
}

/// A joined database that only read commits in one phase, before anything is prepared, and is
/// never prepared; with one writer left, that writer commits in one phase too.
async fn a_read_only_participant_commits_first_and_is_never_prepared(first: Backend, second: Backend) -> Result<()> {
    coordinator().await;
    let pair = variant_pair(first, second, "tpc_reader", Variant::Site).await;
    let events = Arc::new(UnitEvents::default());
    let observer = ConnectionManager::observe(events.clone());
    let unit = ConnectionManager::using(&pair.names[0])
        .two_phase()
        .transaction(async |tx| {
            testkit::bank::adjust(tx, 1, -10).await?;
            let read = ConnectionManager::using(&pair.names[1])
                .transaction(async |tx| testkit::bank::Account::find(tx, 1).await)
                .await?;
            assert_eq!(read.balance, 100);
            Ok::<_, Error>(tx.unit_id().clone())
        })
        .await?;
    ConnectionManager::unobserve(observer);
    let kinds = events.of(&unit);
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, EventKind::Prepared { .. } | EventKind::DecisionDurable { .. })),
        "one writer commits in one phase: {kinds:?}"
    );
    let committed: Vec<_> = kinds
        .iter()
        .filter_map(|k| match k {
            EventKind::Committed { connection } => Some(connection.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        committed,
        [pair.names[1].clone(), pair.names[0].clone()],
        "the reader first"
    );
    assert_eq!(
        (balance(&pair.dbs[0], 1).await, balance(&pair.dbs[1], 1).await),
        (90, 100)
    );
    for db in &pair.dbs {
        assert_eq!(prepared_count(db).await, 0);
        assert_no_open_transactions(db).await;
    }
    Ok(())
}

/// Sixteen two-phase transfers at once between different accounts, each deciding in the log (no
/// marker tables): their decisions are written in groups, and every one of them commits on both
/// databases.
async fn sixteen_concurrent_transfers_share_the_decision_log(first: Backend, second: Backend) -> Result<()> {
    coordinator().await;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let names = [format!("tpc_group_{n}_a"), format!("tpc_group_{n}_b")];
    let owners: Vec<String> = (0..16).map(|i| format!("owner{i}")).collect();
    let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
    let (a, ids) = bank(first, &names[0], &owners).await;
    let (b, _) = bank(second, &names[1], &owners).await;
    let mut transfers = tokio::task::JoinSet::new();
    for &id in &ids {
        let names = names.clone();
        transfers.spawn(async move { testkit::bank::transfer((&names[0], id), (&names[1], id), 1, true).await });
    }
    while let Some(done) = transfers.join_next().await {
        done.unwrap()?;
    }
    for id in &ids {
        assert_eq!((balance(&a, *id).await, balance(&b, *id).await), (99, 101));
    }
    for db in [&a, &b] {
        assert_balances_match_movements(db, &ids).await;
        assert_eq!(prepared_count(db).await, 0);
        assert_no_open_transactions(db).await;
    }
    Ok(())
}

/// SQLite cannot prepare: in a two-phase unit it writes only as the outermost database, the commit
/// point site, which needs its marker table (refused at the start without it). Joined to a unit
/// that began elsewhere it may read; if it writes there, the unit is refused at its end and
/// nothing commits. Alone, it commits in one phase.
#[tokio::test]
async fn sqlite_writes_in_a_two_phase_unit_only_as_its_commit_point_site() {
    coordinator().await;
    let (db, ids) = bank(Backend::Sqlite, "tpc_sqlite", &["ann"]).await;
    let (pg, _) = bank(Backend::Postgres, "tpc_sqlite_pg", &["bob"]).await;
    let (other, _) = bank(Backend::Sqlite, "tpc_sqlite_other", &["cat"]).await;
    let nested = |outer: &'static str, inner: &'static str| async move {
        ConnectionManager::using(outer)
            .two_phase()
            .transaction(async |tx| {
                Movement::record(tx, 1, 1).await?;
                ConnectionManager::using(inner)
                    .transaction(async |tx| Movement::record(tx, 1, 1).await.map(drop))
                    .await
            })
            .await
    };
    let refused = |result: Result<()>, connection: &str, says: &str| match result.unwrap_err() {
        Error::Configuration {
            connection: c, message, ..
        } => {
            assert_eq!(c, connection);
            assert!(message.contains(says), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    };
    let counts = async || {
        (
            Movement::count(&db).await.unwrap(),
            Movement::count(&pg).await.unwrap(),
            Movement::count(&other).await.unwrap(),
        )
    };
    // Without its marker table it cannot be the site: refused when it begins.
    refused(
        nested("tpc_sqlite", "tpc_sqlite_pg").await,
        "tpc_sqlite",
        "migrate::run",
    );
    // Joined to a unit that began on PostgreSQL, it cannot be the site: refused at the end.
    refused(nested("tpc_sqlite_pg", "tpc_sqlite").await, "tpc_sqlite", "outermost");
    assert_eq!(counts().await, (0, 0, 0), "nothing of the refused units committed");

    // With its marker table, SQLite alone commits in one phase, and as the root it is the site.
    activerecord::migrate::run(&db).await.unwrap();
    ConnectionManager::using("tpc_sqlite")
        .two_phase()
        .transaction(async |tx| Movement::record(tx, ids[0], 1).await.map(drop))
        .await
        .unwrap();
    nested("tpc_sqlite", "tpc_sqlite_pg").await.unwrap();
    assert_eq!(counts().await, (2, 1, 0));
    assert_eq!(prepared_count(&pg).await, 0);

    // A second SQLite database that writes in the unit cannot be: refused at the end.
    refused(
        nested("tpc_sqlite", "tpc_sqlite_other").await,
        "tpc_sqlite_other",
        "outermost",
    );
    assert_eq!(counts().await, (2, 1, 0), "nothing of the refused unit committed");
}

#[tokio::test]
async fn disabled_prepared_transactions_say_how_to_fix_them() {
    coordinator().await;
    let url = testkit::fresh_database_without_prepared_transactions().await;
    let db = ConnectionManager::configure("tpc_disabled", url.as_str())
        .await
        .unwrap();
    testkit::bank::create_tables(&db).await.unwrap();
    let (pg, _) = bank(Backend::Postgres, "tpc_disabled_other", &["bob"]).await;
    let err = ConnectionManager::using("tpc_disabled")
        .two_phase()
        .transaction(async |tx| {
            Movement::record(tx, 1, 1).await?;
            ConnectionManager::using("tpc_disabled_other")
                .transaction(async |tx| Movement::record(tx, 1, 1).await)
                .await
        })
        .await
        .unwrap_err();
    match &err {
        Error::Configuration {
            connection, message, ..
        } => {
            assert_eq!(connection, "tpc_disabled");
            assert!(message.contains("max_prepared_transactions"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(
        Movement::count(&db).await.unwrap() + Movement::count(&pg).await.unwrap(),
        0
    );
}

/// Waits until `proxy` has seen `statement`, sent while another database's answer is held: it
/// never comes if the two are sent one after the other.
async fn sent_meanwhile(proxy: &testkit::Proxy, statement: &str) {
    let trigger = testkit::Trigger::statement(statement);
    tokio::time::timeout(Duration::from_secs(10), proxy.wait_seen(&trigger, 1))
        .await
        .unwrap_or_else(|_| panic!("`{statement}` was not sent while the other database's answer was held"));
}

/// The first statement of phase one and of phase two on `backend`.
fn prepare_and_commit_prepared(backend: Backend) -> (&'static str, &'static str) {
    match backend {
        Backend::Postgres => ("PREPARE TRANSACTION", "COMMIT PREPARED"),
        _ => ("XA END", "XA COMMIT"),
    }
}

/// A transfer over three databases: the root (the commit point site) and two prepared ones,
/// `first` and `second`, each behind a proxy. While the proxy holds the answer to `first`'s
/// prepare, `second`'s prepare is sent; while it holds `first`'s phase-two commit, `second`'s is
/// sent, and the call has not returned: it returns once both are acknowledged.
async fn prepares_and_phase_two_commits_run_concurrently(first: Backend, second: Backend) -> Result<()> {
    coordinator().await;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let root = format!("tpc_concurrent_{n}_site");
    let (site, _) = bank(Backend::Postgres, &root, &["ann"]).await;
    activerecord::migrate::run(&site).await?;
    let mut sides = Vec::new();
    for (i, backend) in [first, second].into_iter().enumerate() {
        let (db, _) = bank(backend, &format!("tpc_concurrent_{n}_{i}"), &["bob"]).await;
        let proxy = testkit::Proxy::for_url(db.url().expose()).await;
        let name = format!("tpc_concurrent_{n}_{i}_proxied");
        ConnectionManager::configure(&name, proxy.url_for(db.url().expose())).await?;
        sides.push((db, proxy, name, prepare_and_commit_prepared(backend)));
    }
    let (held, other) = (&sides[0], &sides[1]);
    let hold = |statement| {
        held.1
            .arm(testkit::Trigger::statement(statement), testkit::Fault::HoldAnswer)
    };
    let (held_prepare, held_commit) = (hold(held.3.0), hold(held.3.1));
    let names = [sides[0].2.clone(), sides[1].2.clone()];
    let unit = tokio::spawn(async move {
        ConnectionManager::using(&root)
            .two_phase()
            .transaction(async |tx| {
                testkit::bank::adjust(tx, 1, -2).await?;
                for name in &names {
                    ConnectionManager::using(name)
                        .transaction(async |tx| testkit::bank::adjust(tx, 1, 1).await)
                        .await?;
                }
                Ok::<_, Error>(())
            })
            .await
    });
    held_prepare.wait_fired().await;
    sent_meanwhile(&other.1, other.3.0).await;
    held.1.release();
    held_commit.wait_fired().await;
    sent_meanwhile(&other.1, other.3.1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!unit.is_finished(), "the call waits for every phase-two commit");
    held.1.release();
    unit.await.unwrap()?;
    assert_eq!(balance(&site, 1).await, 98);
    for (db, ..) in &sides {
        assert_eq!(balance(db, 1).await, 101);
        assert_eq!(prepared_count(db).await, 0);
        assert_no_open_transactions(db).await;
    }
    Ok(())
}

/// A unit that reaches its decision later than half its coordinator's grace period after it began
/// (a grace period of zero in the child) is rolled back with `DecisionTooLate` before anything
/// commits: a recovery run could already be rolling its branches back.
async fn a_unit_too_old_to_decide_safely_rolls_back(first: Backend, second: Backend) -> Result<()> {
    let pair = variant_pair(first, second, "tpc_too_late", Variant::Site).await;
    let (coordinator, log) = child_coordinator("late");
    let output = child_command("transfer", &pair, &log, &coordinator, "none")
        .env("GRACE_SECONDS", "0")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_refused(&output, "DecisionTooLate", &pair).await;
    Ok(())
}

/// The child process sends the commit point site's `COMMIT` (with the unit's marker) through a
/// proxy that holds the answer, and is killed with SIGKILL while it waits: the site committed, so
/// recovery in a fresh process finds its marker and commits the prepared branch.
async fn a_crash_while_the_site_answer_is_lost_commits(first: Backend, second: Backend) -> Result<()> {
    let mut pair = variant_pair(first, second, "tpc_site_lost", Variant::Site).await;
    let (coordinator, log) = child_coordinator("sitelost");
    let trigger = testkit::Trigger::contains("INSERT INTO activerecord_markers");
    let (proxy, held, direct) = hold_answer_to(&mut pair, 0, trigger).await;
    let mut transfer = child("transfer", &pair, &log, &coordinator, "none");
    // The server ran the whole batch; only its answer is held.
    let committed = async || Movement::count(&pair.dbs[0]).await.unwrap() > 0;
    ran_unanswered(
        &held,
        committed,
        "the child sent the site's COMMIT, and the server ran it",
    )
    .await;
    transfer.kill().unwrap(); // SIGKILL
    transfer.wait().unwrap();
    drop(proxy);
    pair.urls[0] = direct;
    assert_eq!(prepared_count(&pair.dbs[1]).await, 1, "the joined branch is in doubt");
    let report = recover(&pair, &log, &coordinator, 3600);
    assert!(
        report.starts_with("committed=1 "),
        "the site's marker decides at once: {report}"
    );
    assert_consistent(&pair, true).await;
    Ok(())
}

/// A child process runs a transfer whose joined database's prepare a proxy holds up (the answer
/// to its last statement). Meanwhile recovery, in another process with a grace period of zero
/// (shorter than the unit), finds the branch prepared and no marker at the commit point site: it
/// claims the unit as rolled back at the site, then rolls the branch back. Released, the unit
/// reaches its decision, and the site's commit meets the claim: `RolledBackByRecovery`, nothing
/// committed anywhere. Without the claim the site would commit after recovery rolled the branch
/// back.
async fn recovery_fences_a_site_commit_still_on_its_way(first: Backend, second: Backend) -> Result<()> {
    recovery_fences_a_decision_still_on_its_way(first, second, Variant::Site).await
}

/// The same with the decision log: recovery claims the unit as rolled back in the log, then rolls
/// both prepared branches back, and the unit's decision meets the claim there.
async fn recovery_fences_a_logged_decision_still_on_its_way(first: Backend, second: Backend) -> Result<()> {
    recovery_fences_a_decision_still_on_its_way(first, second, Variant::Log).await
}

async fn recovery_fences_a_decision_still_on_its_way(first: Backend, second: Backend, variant: Variant) -> Result<()> {
    let mut pair = variant_pair(first, second, "tpc_fenced", variant).await;
    let (coordinator, log) = child_coordinator("fenced");
    // The answer held is the one to the check that follows the prepare (the branch exists): the
    // unit is then fully prepared, and goes on to its decision once released.
    let trigger = testkit::Trigger::contains("FROM pg_prepared_xacts WHERE gid");
    let (proxy, held, direct) = hold_answer_to(&mut pair, 1, trigger).await;
    let transfer = child_command("transfer", &pair, &log, &coordinator, "none")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    pair.urls[1] = direct;
    let prepared = async || prepared_count(&pair.dbs[1]).await > 0;
    ran_unanswered(&held, prepared, "the child prepared the joined branch").await;
    let report = recover(&pair, &log, &coordinator, 0);
    let prepared = if variant == Variant::Log { 2 } else { 1 };
    assert!(report.contains(&format!("rolled_back={prepared}")), "{report}");
    proxy.release();
    let output = tokio::task::spawn_blocking(move || transfer.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_refused(&output, "RolledBackByRecovery", &pair).await;
    Ok(())
}

/// The commit point site committed, then the process died; the site's marker table is as an
/// older version left it (no `aborted` column). Recovery cannot read the marker as this version
/// reads it, so it keeps the branch prepared and reports why, rather than taking the site for one
/// that never committed; once the site is migrated, it commits the branch.
async fn a_site_whose_marker_table_is_not_migrated_keeps_the_branch_prepared(
    first: Backend,
    second: Backend,
) -> Result<()> {
    let (pair, coordinator, log) = crash_at(first, second, "decided", Variant::Site).await;
    let site = &pair.dbs[0];
    site.execute("ALTER TABLE activerecord_markers DROP COLUMN aborted")
        .await?;
    site.execute("DELETE FROM activerecord_migrations WHERE version = 4")
        .await?;
    // Not migrated by the recovering process either.
    let output = child_command("recover", &pair, &log, &coordinator, "0")
        .env("MARKERS", "0")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.trim().ends_with("errors=1"), "{report}");
    assert_eq!(prepared_count(&pair.dbs[1]).await, 1, "the branch stays prepared");
    activerecord::migrate::run(site).await?;
    let report = recover(&pair, &log, &coordinator, 0);
    assert!(report.starts_with("committed=1"), "{report}");
    assert_consistent(&pair, true).await;
    Ok(())
}

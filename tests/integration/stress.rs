//! The outcome contract under a storm of faults (semantics.md, "Money test" for best effort):
//! concurrent transfers between two databases for 20 s while random transfers have their future
//! dropped (a timeout, some of them during the final commits) and random server sessions of both
//! databases are killed from outside. Afterwards each transfer is on both databases, on none, or
//! was reported (by its error, or, for a dropped future, by its outcome handler) as partial or
//! unknown with the true list; exactly one kind of hook ran for each, and it told the truth; no
//! session is left in a transaction or waiting on a lock.

use crate::common::{Movement, bank, test_matrix};
use activerecord::{Backend, ConnectionManager, Database, DatabaseOutcome, Model, Result, fetch_column};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::bank::Account;

test_matrix!([postgres_and_mariadb] => transfers_under_drops_and_kills_never_lie);

/// How long transfers run.
const RUN: Duration = Duration::from_secs(20);

/// A small xorshift generator: the faults need to be varied, not unpredictable.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// What one transfer told its caller and its hooks.
#[derive(Debug, Default)]
struct Told {
    /// The returned result: `None` while unknown or when the future was dropped.
    returned: Option<std::result::Result<(), String>>,
    /// Per-database outcomes from the returned report.
    report: Option<Vec<DatabaseOutcome>>,
    /// The hooks that ran: "commit", "rollback", or "partial" with the handler's report.
    hooks: Vec<(&'static str, Option<Vec<DatabaseOutcome>>)>,
    /// Whether the body ran far enough to register the hooks.
    registered: bool,
    dropped: bool,
}

type Ledger = Arc<Mutex<BTreeMap<i64, Told>>>;

/// Transfer `tag`: −tag recorded on the first database, +tag on the second, each after locking
/// its account row.
async fn transfer(names: &[String; 2], accounts: [i64; 2], tag: i64, ledger: &Ledger) -> Result<()> {
    ConnectionManager::using(&names[0])
        .transaction(async |tx| {
            ledger.lock().unwrap().entry(tag).or_default().registered = true;
            let (commit, rollback, partial) = (ledger.clone(), ledger.clone(), ledger.clone());
            tx.after_commit(move || {
                commit
                    .lock()
                    .unwrap()
                    .entry(tag)
                    .or_default()
                    .hooks
                    .push(("commit", None))
            });
            tx.after_rollback(move || {
                rollback
                    .lock()
                    .unwrap()
                    .entry(tag)
                    .or_default()
                    .hooks
                    .push(("rollback", None))
            });
            tx.on_partial_outcome(move |report| {
                let outcomes = report.outcomes.iter().map(|(_, o)| *o).collect();
                partial
                    .lock()
                    .unwrap()
                    .entry(tag)
                    .or_default()
                    .hooks
                    .push(("partial", Some(outcomes)));
            });
            Account::find_for_update(tx, accounts[0]).await?;
            Movement::record(tx, accounts[0], -tag).await?;
            ConnectionManager::using(&names[1])
                .transaction(async |tx| {
                    Account::find_for_update(tx, accounts[1]).await?;
                    Movement::record(tx, accounts[1], tag).await.map(drop)
                })
                .await
        })
        .await
}

/// Kills a random session of `database` (other than the asking one) from `admin`.
async fn kill_one(admin: &Database, dice: u64) {
    let (list, kill): (&str, fn(i64) -> String) = match admin.backend() {
        Backend::Postgres => (
            "SELECT pid::bigint FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            |id| format!("SELECT pg_terminate_backend({id})"),
        ),
        _ => (
            "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID()",
            |id| format!("KILL CONNECTION {id}"),
        ),
    };
    let Ok(sessions) = fetch_column::<i64, _>(admin, list).await else {
        return;
    };
    if sessions.is_empty() {
        return;
    }
    let victim = sessions[(dice % sessions.len() as u64) as usize];
    // The session may be gone already: that is fine.
    let _ = admin.execute(&kill(victim)).await;
}

/// Sessions of `db` still in a transaction or waiting on a lock, other than the asking one.
async fn busy_sessions(db: &Database) -> i64 {
    let sql = match db.backend() {
        Backend::Postgres => {
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND (state LIKE 'idle in transaction%' OR wait_event_type = 'Lock')"
        }
        _ => {
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX t \
             JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE p.DB = DATABASE() AND p.ID <> CONNECTION_ID()"
        }
    };
    fetch_column::<i64, _>(db, sql).await.unwrap()[0]
}

async fn transfers_under_drops_and_kills_never_lie(first: Backend, second: Backend) -> Result<()> {
    let names = [1, 2].map(|n| format!("stress_{n}_{first:?}_{second:?}").to_lowercase());
    let (db1, ids1) = bank(first, &names[0], &["ann"]).await;
    let (db2, ids2) = bank(second, &names[1], &["bob"]).await;
    activerecord::migrate::run(&db1).await?;
    activerecord::migrate::run(&db2).await?;
    // Admin handles on the same databases, under their own names, for the killer and the checks.
    let admins = [
        ConnectionManager::configure(&format!("{}_admin", names[0]), db1.url().expose()).await?,
        ConnectionManager::configure(&format!("{}_admin", names[1]), db2.url().expose()).await?,
    ];
    let accounts = [ids1[0], ids2[0]];
    let ledger: Ledger = Arc::default();
    let next_tag = Arc::new(AtomicI64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let seed = Instant::now().elapsed().as_nanos() as u64 | 1;

    let killer = {
        let (admins, stop, kills) = (admins.clone(), stop.clone(), kills.clone());
        tokio::spawn(async move {
            let mut dice = Dice(seed ^ 0x9e37_79b9_7f4a_7c15);
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20 + dice.roll(180))).await;
                let which = dice.roll(2) as usize;
                kill_one(&admins[which], dice.roll(u64::MAX)).await;
                kills.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let workers: Vec<_> = (0..6u64)
        .map(|worker| {
            let (names, ledger, next_tag, stop) = (names.clone(), ledger.clone(), next_tag.clone(), stop.clone());
            tokio::spawn(async move {
                let mut dice = Dice(seed.wrapping_mul(worker + 2) | 1);
                while !stop.load(Ordering::SeqCst) {
                    let tag = next_tag.fetch_add(1, Ordering::SeqCst);
                    ledger.lock().unwrap().entry(tag).or_default();
                    let work = transfer(&names, accounts, tag, &ledger);
                    let result = if dice.roll(10) < 3 {
                        // Dropped after a few milliseconds: in the body, or during the final commits.
                        let limit = Duration::from_micros(500 + dice.roll(20_000));
                        tokio::time::timeout(limit, work).await.ok()
                    } else {
                        Some(work.await)
                    };
                    let mut ledger = ledger.lock().unwrap();
                    let told = ledger.entry(tag).or_default();
                    match result {
                        None => told.dropped = true,
                        Some(result) => {
                            told.report = result
                                .as_ref()
                                .err()
                                .and_then(|e| e.report())
                                .map(|r| r.outcomes.iter().map(|(_, o)| *o).collect());
                            told.returned = Some(result.map_err(|e| e.to_string()));
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::SeqCst);
    killer.await.unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    // Units whose caller stopped waiting finish in the background: every transfer gets its hook.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger
        .lock()
        .unwrap()
        .values()
        .any(|t| t.registered && t.hooks.is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let present = |db: &Database| {
        let db = db.clone();
        async move {
            Movement::all(&db)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.amount.abs())
                .collect::<std::collections::BTreeSet<i64>>()
        }
    };
    let (on1, on2) = (present(&admins[0]).await, present(&admins[1]).await);
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let mut counts = BTreeMap::<&str, usize>::new();
    for (tag, told) in ledger.iter() {
        let rows = (on1.contains(tag), on2.contains(tag));
        let truth = [rows.0, rows.1].map(|p| {
            if p {
                DatabaseOutcome::Committed
            } else {
                DatabaseOutcome::RolledBack
            }
        });
        let agrees = |outcomes: &[DatabaseOutcome]| {
            outcomes.len() == 2
                && outcomes
                    .iter()
                    .zip(truth)
                    .all(|(said, true_one)| *said == DatabaseOutcome::Unknown || *said == true_one)
        };
        if !told.registered {
            // Dropped, or failed, before its body began (waiting for a connection, or at BEGIN).
            let failed_plainly = matches!(told.returned, Some(Err(_))) && told.report.is_none();
            assert!(
                (told.dropped || failed_plainly) && told.hooks.is_empty(),
                "transfer {tag}: {told:?}"
            );
            assert_eq!(rows, (false, false), "transfer {tag}: ended before it began");
            *counts.entry("ended before the body").or_default() += 1;
            continue;
        }
        assert_eq!(
            told.hooks.len(),
            1,
            "transfer {tag}: exactly one hook kind runs: {told:?}, rows {rows:?}"
        );
        match &told.hooks[0] {
            ("commit", _) => assert_eq!(rows, (true, true), "transfer {tag}: after-commit lied: {told:?}"),
            ("rollback", _) => assert_eq!(rows, (false, false), "transfer {tag}: after-rollback lied: {told:?}"),
            (_, Some(outcomes)) => assert!(
                agrees(outcomes),
                "transfer {tag}: the handler's report lied: {told:?}, rows {rows:?}"
            ),
            other => panic!("transfer {tag}: {other:?}"),
        }
        match (&told.returned, &told.report) {
            (Some(Ok(())), _) => assert_eq!(rows, (true, true), "transfer {tag}: Ok lied"),
            (Some(Err(_)), Some(outcomes)) => assert!(
                agrees(outcomes),
                "transfer {tag}: the error's report lied: {told:?}, rows {rows:?}"
            ),
            (Some(Err(e)), None) => assert_eq!(
                rows,
                (false, false),
                "transfer {tag}: a plain error but something committed: {e}"
            ),
            (None, _) => assert!(told.dropped, "transfer {tag} never returned"),
        }
        if rows.0 != rows.1 {
            assert!(
                told.report.is_some() || told.hooks[0].0 == "partial",
                "transfer {tag}: a silent partial commit"
            );
        }
        let kind = match (rows, &told.hooks[0].0) {
            ((true, true), _) => "committed",
            ((false, false), _) => "rolled back",
            _ => "partial",
        };
        *counts.entry(kind).or_default() += 1;
        if told.dropped {
            *counts.entry("dropped").or_default() += 1;
        }
        if told.hooks[0]
            .1
            .as_ref()
            .is_some_and(|o| o.contains(&DatabaseOutcome::Unknown))
        {
            *counts.entry("reported unknown").or_default() += 1;
        }
    }
    eprintln!(
        "stress: {} transfers, {:?}, {} sessions killed",
        ledger.len(),
        counts,
        kills.load(Ordering::SeqCst)
    );
    assert!(
        counts.get("committed").copied().unwrap_or(0) > 0,
        "some transfers went through"
    );

    // Nothing is left in a transaction or waiting on a lock.
    for admin in &admins {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut busy = busy_sessions(admin).await;
        while busy > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            busy = busy_sessions(admin).await;
        }
        assert_eq!(busy, 0, "{}: sessions left in a transaction or waiting", admin.name());
    }
    // (The pools' own check, `assert_no_open_transactions`, does not apply here: the killer ended
    // idle pooled sessions too, which the server-side check above covers.)
    Ok(())
}

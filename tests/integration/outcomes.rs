//! Honest outcomes of best effort under faults (semantics.md, "Outcomes: never a guess"): a
//! `COMMIT` that reached the server and whose answer was lost is reported as unknown, never as
//! rolled back; the commits stop there; no hook runs for an outcome nobody knows; the events say
//! the same. The faults are real: the fault-injecting proxy of `testkit` sits between the library
//! and the server, forwards the `COMMIT`, drops the answer and closes the connection.

use crate::common::{Movement, assert_no_open_transactions, bank, test_matrix};
use crate::two_phase::{SERIAL, coordinator};
use activerecord::{
    Backend, ConnectionManager, Database, DatabaseOutcome, Error, Event, EventKind, Model, Observer, Result,
    UnitOutcome,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use testkit::{Fault, Proxy, Trigger};

test_matrix!([postgres_and_mariadb, mariadb_and_postgres] =>
    a_lost_answer_to_the_first_commit_is_unknown,
    a_lost_answer_to_the_joined_commit_is_unknown,
);

test_matrix!([postgres_and_mariadb], one_at_a_time(SERIAL) =>
    a_two_phase_unit_dropped_after_its_decision_commits_and_runs_no_rollback_hook,
);

/// One bank database reached two ways: directly (to check its rows) and through a proxy (for the
/// unit of work under test).
struct Side {
    direct: Database,
    proxied: String,
    proxy: Proxy,
    account: i64,
}

async fn side(backend: Backend, label: &str) -> Side {
    let name = format!("{label}_{backend:?}").to_lowercase();
    let (direct, ids) = bank(backend, &name, &["owner"]).await;
    let proxy = Proxy::for_url(direct.url().expose()).await;
    let proxied = format!("{name}_proxied");
    ConnectionManager::configure(&proxied, proxy.url_for(direct.url().expose()))
        .await
        .unwrap();
    Side {
        direct,
        proxied,
        proxy,
        account: ids[0],
    }
}

/// The events of every unit of work, kept to look up one unit's afterwards.
#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl Observer for Events {
    async fn on_event(&self, event: &Event) -> Result<()> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl Events {
    /// Waits until the unit of work begun on `connection` ends, and returns its outcome.
    async fn wait_for_end(&self, connection: &str) -> UnitOutcome {
        loop {
            let ended = {
                let all = self.0.lock().unwrap();
                let unit = all.iter().find_map(|e| match &e.kind {
                    EventKind::Begun { connection: c } if c == connection => Some(e.unit.clone()),
                    _ => None,
                });
                all.iter().find_map(|e| match e.kind {
                    EventKind::Ended { outcome } if Some(&e.unit) == unit.as_ref() => Some(outcome),
                    _ => None,
                })
            };
            if let Some(outcome) = ended {
                return outcome;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    fn of(&self, unit: &str) -> Vec<EventKind> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|e| e.unit.as_str() == unit)
            .map(|e| e.kind.clone())
            .collect()
    }
}

/// Registers an after-commit and an after-rollback hook on `tx`, each adding one to `ran`.
fn count_hooks(tx: &activerecord::Tx, ran: &Arc<AtomicUsize>) {
    let (committed, rolled_back) = (ran.clone(), ran.clone());
    tx.after_commit(move || {
        committed.fetch_add(1, Ordering::SeqCst);
    });
    tx.after_rollback(move || {
        rolled_back.fetch_add(1, Ordering::SeqCst);
    });
}

/// A transfer of 10 from `one` to `two` in a scope opened by `outer` (on `one`), with both kinds
/// of hook, each adding one to `hooks` when it runs.
async fn transfer_in(outer: activerecord::Using, one: &Side, two: &Side, hooks: &Arc<AtomicUsize>) -> Result<()> {
    outer
        .transaction(async |tx| {
            count_hooks(tx, hooks);
            Movement::record(tx, one.account, -10).await?;
            ConnectionManager::using(&two.proxied)
                .transaction(async |tx| Movement::record(tx, two.account, 10).await.map(drop))
                .await
        })
        .await
}

/// A best-effort transfer that fails; returns its error and how many hooks ran.
async fn transfer(one: &Side, two: &Side) -> (Error, usize) {
    let hooks = Arc::new(AtomicUsize::new(0));
    let err = transfer_in(ConnectionManager::using(&one.proxied), one, two, &hooks)
        .await
        .unwrap_err();
    (err, hooks.load(Ordering::SeqCst))
}

/// Checks the error of a unit whose `unknown` database lost its COMMIT answer, against the events.
fn check_unknown(err: &Error, expected: &[(&str, DatabaseOutcome)], events: &Events) {
    let Error::OutcomeUnknown(report) = err else {
        panic!("expected an unknown outcome, got {err:?}")
    };
    let outcomes: Vec<(&str, DatabaseOutcome)> = report.outcomes.iter().map(|(n, o)| (n.as_str(), *o)).collect();
    assert_eq!(outcomes, expected);
    assert!(!err.is_transient(), "retrying could apply the transfer twice");
    let message = err.to_string();
    assert!(
        message.contains("unknown") && message.contains(&report.unit),
        "{message}"
    );
    let unknown = report.unknown()[0].to_owned();
    let kinds = events.of(&report.unit);
    assert!(
        kinds.contains(&EventKind::OutcomeUnknown {
            connection: unknown.clone()
        }),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&EventKind::RolledBack { connection: unknown }),
        "an unknown outcome is never reported as rolled back: {kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&EventKind::Ended {
            outcome: UnitOutcome::Unknown
        })
    );
}

/// Which database's COMMIT answer the proxy drops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lost {
    Root,
    Joined,
}

/// A transfer whose `lost` COMMIT answer is dropped after the server committed: the error says
/// that database is unknown, the others are as they truly are, and the rows agree.
async fn lose_a_commit_answer(first: Backend, second: Backend, lost: Lost) -> Result<()> {
    let events = Arc::new(Events::default());
    let observer = ConnectionManager::observe(events.clone());
    let label = if lost == Lost::Root { "lost_root" } else { "lost_joined" };
    let one = side(first, &format!("{label}_1")).await;
    let two = side(second, &format!("{label}_2")).await;
    let faulty = if lost == Lost::Root { &one } else { &two };
    let armed = faulty
        .proxy
        .arm(Trigger::statement("COMMIT"), Fault::DropAnswerAndClose);
    let (err, hooks) = transfer(&one, &two).await;
    ConnectionManager::unobserve(observer);
    assert_eq!(armed.fired(), 1);
    let (root, joined, joined_rows) = match lost {
        // The root's commit is first: the joined database was then rolled back.
        Lost::Root => (DatabaseOutcome::Unknown, DatabaseOutcome::RolledBack, 0),
        // The root had committed; the joined database's commit reached the server too.
        Lost::Joined => (DatabaseOutcome::Committed, DatabaseOutcome::Unknown, 1),
    };
    check_unknown(&err, &[(&one.proxied, root), (&two.proxied, joined)], &events);
    assert_eq!(hooks, 0, "neither hook describes an unknown outcome");
    assert_eq!(Movement::count(&one.direct).await?, 1, "the server committed the root");
    assert_eq!(Movement::count(&two.direct).await?, joined_rows);
    assert_no_open_transactions(&one.direct).await;
    assert_no_open_transactions(&two.direct).await;
    Ok(())
}

/// Case 1 of issue 11: the root database's COMMIT reached the server and its answer was lost. The
/// root committed; the joined database was rolled back; the error says the root is unknown.
async fn a_lost_answer_to_the_first_commit_is_unknown(first: Backend, second: Backend) -> Result<()> {
    lose_a_commit_answer(first, second, Lost::Root).await
}

/// Case 2 of issue 11: the joined database's COMMIT answer was lost after the root committed.
/// Both committed; the error says the root committed and the joined one is unknown (never
/// "rolled back": repairing from that would apply the transfer twice).
async fn a_lost_answer_to_the_joined_commit_is_unknown(first: Backend, second: Backend) -> Result<()> {
    lose_a_commit_answer(first, second, Lost::Joined).await
}

/// Case 5 of issue 11: a two-phase unit whose future is dropped after its decision was logged,
/// while the first `COMMIT PREPARED` is in flight. The unit finishes phase two in the background:
/// both branches commit, the after-commit hook runs (never the after-rollback one), and the unit's
/// last event says committed.
async fn a_two_phase_unit_dropped_after_its_decision_commits_and_runs_no_rollback_hook(
    first: Backend,
    second: Backend,
) -> Result<()> {
    let _coordinator = coordinator().await;
    let events = Arc::new(Events::default());
    let observer = ConnectionManager::observe(events.clone());
    let one = side(first, "decided_drop_1").await;
    let two = side(second, "decided_drop_2").await;
    let armed = one.proxy.arm(Trigger::statement("COMMIT PREPARED"), Fault::HoldAnswer);
    let hooks = Arc::new(AtomicUsize::new(0));
    let unit = transfer_in(ConnectionManager::using(&one.proxied).two_phase(), &one, &two, &hooks);
    tokio::select! {
        done = unit => panic!("the unit ended while its first COMMIT PREPARED was held: {done:?}"),
        () = armed.wait_fired() => {} // the future is dropped here, after the decision
    }
    assert_eq!(hooks.load(Ordering::SeqCst), 0, "nothing is known yet");
    one.proxy.release();
    let ended = events.wait_for_end(&one.proxied).await;
    ConnectionManager::unobserve(observer);
    assert_eq!(ended, UnitOutcome::Committed, "finished in the background");
    assert_eq!(hooks.load(Ordering::SeqCst), 1, "the after-commit hook, and only it");
    assert_eq!(Movement::count(&one.direct).await?, 1, "committed");
    assert_eq!(Movement::count(&two.direct).await?, 1, "committed in the background");
    Ok(())
}

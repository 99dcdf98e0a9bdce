//! Honest outcomes under faults (semantics.md, "Outcomes: never a guess"), cases 1 to 6 of the
//! outcome issue, each with real faults: the fault-injecting proxy of `testkit` sits between the
//! library and the server and, on a `COMMIT` or `PREPARE`, drops the answer after the server ran
//! it, cuts the connection before the server gets it, or holds the answer while the caller's
//! future is dropped. Each test checks the returned error, the rows of both databases, the hooks
//! that ran and the events, and that no transaction, prepared branch or waiting session is left.
//!
//! With the marker table (`migrate::run`), a lost answer is resolved: the session is ended from
//! the control connection and the unit's marker looked up. Without it, the outcome stays unknown,
//! and says so.

use crate::common::{Movement, assert_no_open_transactions, bank, hold, test_matrix};
use crate::two_phase::{SERIAL, coordinator, prepared_count};
use activerecord::{
    Backend, ConnectionManager, Database, DatabaseOutcome, Error, Event, EventKind, Model, Observer, Result,
    UnitOutcome, fetch_column,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{Fault, Proxy, Trigger};

test_matrix!([postgres_and_mariadb, mariadb_and_postgres] =>
    a_lost_answer_to_the_first_commit_is_resolved_as_committed,
    a_lost_answer_to_the_joined_commit_is_resolved_as_committed,
    a_first_commit_that_never_reached_the_server_is_a_plain_error,
    a_joined_commit_that_never_reached_the_server_is_a_partial_commit,
    without_markers_a_lost_first_answer_stays_unknown,
    without_markers_a_lost_joined_answer_stays_unknown,
    an_outcome_left_unknown_is_resolved_later_from_its_marker,
    a_unit_dropped_during_its_first_commit_finishes_in_the_background,
    a_unit_dropped_while_a_lost_answer_is_resolved_finishes_in_the_background,
);

test_matrix!([postgres_and_mariadb, mariadb_and_postgres], one_at_a_time(SERIAL) =>
    a_two_phase_unit_dropped_after_its_decision_commits_and_runs_no_rollback_hook,
    a_lost_prepare_answer_is_rolled_back_at_once,
    a_lost_phase_two_answer_is_decided_and_recovery_finishes_it,
    a_lost_answer_of_the_commit_point_site_is_resolved_from_its_marker,
    a_site_commit_that_never_reached_the_server_rolls_every_branch_back,
);

test_matrix!([sqlite_and_sqlite, postgres_and_mariadb] =>
    each_database_that_wrote_keeps_one_marker_until_pruned,
);

test_matrix!([postgres, mariadb] =>
    a_statement_abandoned_while_waiting_on_a_lock_is_ended_on_the_server,
);

/// One bank database reached two ways: directly (to check its rows) and through a proxy (for the
/// unit of work under test).
struct Side {
    direct: Database,
    proxied: String,
    proxy: Proxy,
    account: i64,
}

async fn side(backend: Backend, label: &str, markers: bool) -> Side {
    let name = format!("{label}_{backend:?}").to_lowercase();
    let (direct, ids) = bank(backend, &name, &["owner"]).await;
    if markers {
        activerecord::migrate::run(&direct).await.unwrap();
    }
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
    /// Waits until the unit of work begun on `connection` ends, and returns its outcome; fails
    /// after 30 s, with the unit's events.
    async fn wait_for_end(&self, connection: &str) -> UnitOutcome {
        for _ in 0..6000 {
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
        panic!("the unit never ended: {:?}", self.of_unit_begun_on(connection))
    }

    /// The events of the unit of work begun on `connection`.
    fn of_unit_begun_on(&self, connection: &str) -> Vec<EventKind> {
        let all = self.0.lock().unwrap();
        let unit = all.iter().find_map(|e| match &e.kind {
            EventKind::Begun { connection: c } if c == connection => Some(e.unit.clone()),
            _ => None,
        });
        all.iter()
            .filter(|e| Some(&e.unit) == unit.as_ref())
            .map(|e| e.kind.clone())
            .collect()
    }
}

/// The hooks of one transfer that ran, in order.
#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<&'static str>>>);

impl Hooks {
    /// Registers an after-commit and an after-rollback hook on `tx`, and a handler of a partial
    /// or unknown outcome.
    fn register(&self, tx: &activerecord::Tx) {
        let (committed, rolled_back, reported) = (self.0.clone(), self.0.clone(), self.0.clone());
        tx.after_commit(move || committed.lock().unwrap().push("after commit"));
        tx.after_rollback(move || rolled_back.lock().unwrap().push("after rollback"));
        tx.on_partial_outcome(move |_| reported.lock().unwrap().push("outcome handler"));
    }

    fn ran(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

/// A transfer of 10 from `one` to `two` in a scope opened by `outer` (on `one`), with both kinds
/// of hook, each adding one to `hooks` when it runs.
async fn transfer_in(outer: activerecord::Using, one: &Side, two: &Side, hooks: &Hooks) -> Result<()> {
    outer
        .transaction(async |tx| {
            hooks.register(tx);
            Movement::record(tx, one.account, -10).await?;
            ConnectionManager::using(&two.proxied)
                .transaction(async |tx| Movement::record(tx, two.account, 10).await.map(drop))
                .await
        })
        .await
}

/// A best-effort transfer; returns its result and which hooks ran.
async fn transfer(one: &Side, two: &Side) -> (Result<()>, Hooks) {
    let hooks = Hooks::default();
    let result = transfer_in(ConnectionManager::using(&one.proxied), one, two, &hooks).await;
    (result, hooks)
}

/// The two sides of a transfer, the events of every unit, and the proxy of the side under fault.
struct Run {
    one: Side,
    two: Side,
    events: Arc<Events>,
    observer: activerecord::ObserverId,
}

impl Run {
    async fn new(first: Backend, second: Backend, label: &str, markers: bool) -> Run {
        let events = Arc::new(Events::default());
        let observer = ConnectionManager::observe(events.clone());
        Run {
            one: side(first, &format!("{label}_1"), markers).await,
            two: side(second, &format!("{label}_2"), markers).await,
            events,
            observer,
        }
    }

    fn side(&self, which: Which) -> &Side {
        match which {
            Which::Root => &self.one,
            Which::Joined => &self.two,
        }
    }

    /// The rows each database has: 1 where the transfer committed.
    async fn rows(&self) -> (i64, i64) {
        (
            Movement::count(&self.one.direct).await.unwrap(),
            Movement::count(&self.two.direct).await.unwrap(),
        )
    }

    /// The events of the unit begun on the root side.
    fn unit_events(&self) -> Vec<EventKind> {
        self.events.of_unit_begun_on(&self.one.proxied)
    }

    /// Checks that no branch is left prepared on either side (`why` says which would be wrong).
    async fn assert_nothing_prepared(&self, why: &str) {
        assert_eq!(prepared_count(&self.one.direct).await, 0, "{why}");
        assert_eq!(prepared_count(&self.two.direct).await, 0, "{why}");
    }

    /// [`finish`](Self::finish), once no branch is left prepared.
    async fn finish_with_nothing_prepared(self) {
        self.assert_nothing_prepared("a branch was left prepared").await;
        self.finish().await;
    }

    /// Checks that nothing is left open on either side, and stops observing.
    async fn finish(self) {
        ConnectionManager::unobserve(self.observer);
        assert_no_open_transactions(&self.one.direct).await;
        assert_no_open_transactions(&self.two.direct).await;
    }
}

/// Which database of the transfer a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Root,
    Joined,
}

/// A transfer whose `which` COMMIT answer is dropped after the server committed, with markers: the
/// session is ended, the marker found, and the transfer goes on to commit everywhere.
async fn lose_an_answer_resolved(first: Backend, second: Backend, which: Which) -> Result<()> {
    let run = Run::new(first, second, &format!("resolved_{which:?}"), true).await;
    let faulty = run.side(which);
    let armed = faulty
        .proxy
        .arm(Trigger::statement("COMMIT"), Fault::DropAnswerAndClose);
    let (result, hooks) = transfer(&run.one, &run.two).await;
    assert_eq!(armed.fired(), 1);
    result.expect("the lost answer is resolved as committed, and the transfer commits");
    assert_eq!(hooks.ran(), ["after commit"]);
    assert_eq!(run.rows().await, (1, 1));
    let events = run.unit_events();
    let lost = faulty.proxied.clone();
    let unknown_at = events
        .iter()
        .position(|e| {
            *e == EventKind::OutcomeUnknown {
                connection: lost.clone(),
            }
        })
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(
        events[unknown_at + 1],
        EventKind::Committed { connection: lost },
        "then resolved"
    );
    assert_eq!(
        events.last(),
        Some(&EventKind::Ended {
            outcome: UnitOutcome::Committed
        })
    );
    run.finish().await;
    Ok(())
}

/// Case 1: the root database's COMMIT reached the server and its answer was lost.
async fn a_lost_answer_to_the_first_commit_is_resolved_as_committed(first: Backend, second: Backend) -> Result<()> {
    lose_an_answer_resolved(first, second, Which::Root).await
}

/// Case 2: the joined database's COMMIT answer was lost after the root committed.
async fn a_lost_answer_to_the_joined_commit_is_resolved_as_committed(first: Backend, second: Backend) -> Result<()> {
    lose_an_answer_resolved(first, second, Which::Joined).await
}

/// The root's `COMMIT` never reaches its server (the connection is cut before it): once the
/// session is gone and no marker is there, the root is known rolled back; nothing committed, so
/// the joined one is rolled back and the error is plain.
async fn a_first_commit_that_never_reached_the_server_is_a_plain_error(first: Backend, second: Backend) -> Result<()> {
    let run = Run::new(first, second, "cut_root", true).await;
    let armed = run
        .one
        .proxy
        .arm(Trigger::statement("COMMIT"), Fault::CutBeforeForwarding);
    let (result, hooks) = transfer(&run.one, &run.two).await;
    assert_eq!(armed.fired(), 1);
    let err = result.unwrap_err();
    assert!(matches!(err, Error::ConnectionLost { .. }), "a plain error: {err:?}");
    assert!(err.is_transient(), "nothing committed anywhere: safe to retry");
    assert_eq!(hooks.ran(), ["after rollback"]);
    assert_eq!(run.rows().await, (0, 0));
    let events = run.unit_events();
    assert!(
        events.contains(&EventKind::RolledBack {
            connection: run.one.proxied.clone()
        }),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&EventKind::Ended {
            outcome: UnitOutcome::RolledBack
        })
    );
    run.finish().await;
    Ok(())
}

/// The joined database's `COMMIT` never reaches its server, after the root committed: a partial
/// commit with the true list (never "unknown", never "committed").
async fn a_joined_commit_that_never_reached_the_server_is_a_partial_commit(
    first: Backend,
    second: Backend,
) -> Result<()> {
    let run = Run::new(first, second, "cut_joined", true).await;
    let armed = run
        .two
        .proxy
        .arm(Trigger::statement("COMMIT"), Fault::CutBeforeForwarding);
    let (result, hooks) = transfer(&run.one, &run.two).await;
    assert_eq!(armed.fired(), 1);
    let err = result.unwrap_err();
    let Error::PartialCommit(report) = &err else {
        panic!("expected a partial commit, got {err:?}")
    };
    assert_eq!(report.committed(), [run.one.proxied.as_str()]);
    assert_eq!(report.rolled_back(), [run.two.proxied.as_str()]);
    assert!(!err.is_transient());
    assert_eq!(hooks.ran(), ["outcome handler"], "no hook describes a partial commit");
    assert_eq!(run.rows().await, (1, 0));
    assert_eq!(
        run.unit_events().last(),
        Some(&EventKind::Ended {
            outcome: UnitOutcome::Mixed
        })
    );
    run.finish().await;
    Ok(())
}

/// Checks the error of a unit whose `unknown` database lost its COMMIT answer, against the events.
fn check_unknown(err: &Error, expected: &[(&str, DatabaseOutcome)], events: &[EventKind]) {
    let Error::OutcomeUnknown(report) = err else {
        panic!("expected an unknown outcome, got {err:?}")
    };
    let outcomes: Vec<(&str, DatabaseOutcome)> = report.outcomes.iter().map(|(n, o)| (n.as_str(), *o)).collect();
    assert_eq!(outcomes, expected);
    assert!(!err.is_transient(), "retrying could apply the transfer twice");
    let message = err.to_string();
    assert!(
        message.contains("unknown") && message.contains(&report.unit) && message.contains("resolve_outcomes"),
        "{message}"
    );
    let unknown = report.unknown()[0].to_owned();
    assert!(
        report.sessions.is_empty(),
        "no marker was written: nothing to resolve from later"
    );
    assert!(
        events.contains(&EventKind::OutcomeUnknown {
            connection: unknown.clone()
        }),
        "{events:?}"
    );
    assert!(
        !events.contains(&EventKind::RolledBack { connection: unknown }),
        "an unknown outcome is never reported as rolled back: {events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&EventKind::Ended {
            outcome: UnitOutcome::Unknown
        })
    );
}

/// A transfer whose `which` COMMIT answer is dropped after the server committed, on databases
/// without the marker table: the outcome cannot be found out, and the error says it is unknown.
async fn lose_an_answer_unresolved(first: Backend, second: Backend, which: Which) -> Result<()> {
    let run = Run::new(first, second, &format!("unmarked_{which:?}"), false).await;
    let armed = run
        .side(which)
        .proxy
        .arm(Trigger::statement("COMMIT"), Fault::DropAnswerAndClose);
    let (result, hooks) = transfer(&run.one, &run.two).await;
    assert_eq!(armed.fired(), 1);
    let (root, joined, joined_rows) = match which {
        // The root's commit is first: the joined database was then rolled back.
        Which::Root => (DatabaseOutcome::Unknown, DatabaseOutcome::RolledBack, 0),
        // The root had committed; the joined database's commit reached the server too.
        Which::Joined => (DatabaseOutcome::Committed, DatabaseOutcome::Unknown, 1),
    };
    let err = result.unwrap_err();
    check_unknown(
        &err,
        &[(&run.one.proxied, root), (&run.two.proxied, joined)],
        &run.unit_events(),
    );
    assert_eq!(
        hooks.ran(),
        ["outcome handler"],
        "neither hook describes an unknown outcome"
    );
    assert_eq!(
        run.rows().await,
        (1, joined_rows),
        "the server committed the unknown one"
    );
    // Created now, the marker table holds no marker of the unit: resolving later must not read
    // that as "rolled back".
    activerecord::migrate::run(&run.side(which).direct).await?;
    let report = err.report().expect("an unknown outcome carries its report");
    assert_eq!(ConnectionManager::resolve_outcomes(report).await?, report.outcomes);
    run.finish().await;
    Ok(())
}

async fn without_markers_a_lost_first_answer_stays_unknown(first: Backend, second: Backend) -> Result<()> {
    lose_an_answer_unresolved(first, second, Which::Root).await
}

async fn without_markers_a_lost_joined_answer_stays_unknown(first: Backend, second: Backend) -> Result<()> {
    lose_an_answer_unresolved(first, second, Which::Joined).await
}

/// The root's COMMIT answer is lost and its session cannot be ended (every statement that would
/// end it is cut on its way): the outcome stays unknown, and the report carries what a later call
/// needs. Once the database can be reached again, `resolve_outcomes` ends the session, finds the
/// marker and says the root committed.
async fn an_outcome_left_unknown_is_resolved_later_from_its_marker(first: Backend, second: Backend) -> Result<()> {
    let run = Run::new(first, second, "resolved_later", true).await;
    let lost = run
        .one
        .proxy
        .arm(Trigger::statement("COMMIT"), Fault::DropAnswerAndClose);
    let fence = match first {
        Backend::Postgres => "pg_terminate_backend",
        _ => "KILL CONNECTION",
    };
    let unreachable = run
        .one
        .proxy
        .arm(Trigger::contains(fence).every_time(), Fault::CutBeforeForwarding);
    let (result, hooks) = transfer(&run.one, &run.two).await;
    assert_eq!(lost.fired(), 1);
    assert!(unreachable.fired() >= 1, "the library tried to end the session");
    let err = result.unwrap_err();
    let report = match &err {
        Error::OutcomeUnknown(report) => report,
        _ => panic!("expected an unknown outcome, got {err:?}"),
    };
    let expected_now = [
        (run.one.proxied.clone(), DatabaseOutcome::Unknown),
        (run.two.proxied.clone(), DatabaseOutcome::RolledBack),
    ];
    assert_eq!(report.outcomes, expected_now);
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(hooks.ran(), ["outcome handler"]);
    assert_eq!(run.rows().await, (1, 0), "the root did commit");
    run.one.proxy.disarm_all();
    let resolved = ConnectionManager::resolve_outcomes(report).await?;
    assert_eq!(
        resolved,
        [
            (run.one.proxied.clone(), DatabaseOutcome::Committed),
            (run.two.proxied.clone(), DatabaseOutcome::RolledBack),
        ]
    );
    run.finish().await;
    Ok(())
}

/// Case 3: the caller's future is dropped (a timeout, a `select!`) while the root's COMMIT is in
/// flight. The unit finishes in the background: the root commits when its answer comes, the joined
/// database commits after it, the after-commit hook runs and the last event says committed.
async fn a_unit_dropped_during_its_first_commit_finishes_in_the_background(
    first: Backend,
    second: Backend,
) -> Result<()> {
    let run = Run::new(first, second, "dropped_commit", true).await;
    let armed = run.one.proxy.arm(Trigger::statement("COMMIT"), Fault::HoldAnswer);
    let hooks = Hooks::default();
    tokio::select! {
        done = transfer_in(ConnectionManager::using(&run.one.proxied), &run.one, &run.two, &hooks) => {
            panic!("the unit ended while its first COMMIT was held: {done:?}")
        }
        () = armed.wait_fired() => {} // the caller stops waiting here
    }
    assert!(hooks.ran().is_empty(), "nothing is known yet");
    run.one.proxy.release();
    let ended = run.events.wait_for_end(&run.one.proxied).await;
    assert_eq!(ended, UnitOutcome::Committed);
    assert_eq!(hooks.ran(), ["after commit"]);
    assert_eq!(run.rows().await, (1, 1));
    run.finish().await;
    Ok(())
}

/// Case 3 with the answer lost as well: the caller stops waiting while the joined database's
/// COMMIT is in flight, and its answer never comes (the connection is cut after the server
/// committed). The background task resolves it from the marker: committed everywhere.
async fn a_unit_dropped_while_a_lost_answer_is_resolved_finishes_in_the_background(
    first: Backend,
    second: Backend,
) -> Result<()> {
    let run = Run::new(first, second, "dropped_lost", true).await;
    let held = run.two.proxy.arm(Trigger::statement("COMMIT"), Fault::HoldAnswer);
    let hooks = Hooks::default();
    tokio::select! {
        done = transfer_in(ConnectionManager::using(&run.one.proxied), &run.one, &run.two, &hooks) => {
            panic!("the unit ended while the joined COMMIT was held: {done:?}")
        }
        () = held.wait_fired() => {}
    }
    // The held answer is thrown away with the connection once the server committed (its answer
    // is held, so it runs the whole batch): the client never hears of it.
    while Movement::count(&run.two.direct).await? == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    run.two.proxy.cut_all();
    let ended = run.events.wait_for_end(&run.one.proxied).await;
    assert_eq!(ended, UnitOutcome::Committed, "{:?}", run.unit_events());
    assert_eq!(hooks.ran(), ["after commit"]);
    assert_eq!(run.rows().await, (1, 1));
    assert!(
        run.unit_events().contains(&EventKind::OutcomeUnknown {
            connection: run.two.proxied.clone()
        }),
        "the lost answer was seen as such before it was resolved"
    );
    run.finish().await;
    Ok(())
}

/// Case 5: a two-phase unit whose future is dropped after its decision was logged, while the
/// first `COMMIT PREPARED` is in flight. The unit finishes phase two in the background: both
/// branches commit, the after-commit hook runs (never the after-rollback one), and the unit's last
/// event says committed.
async fn a_two_phase_unit_dropped_after_its_decision_commits_and_runs_no_rollback_hook(
    first: Backend,
    second: Backend,
) -> Result<()> {
    coordinator().await;
    let run = Run::new(first, second, "decided_drop", false).await;
    let finish = match first {
        Backend::Postgres => "COMMIT PREPARED",
        _ => "XA COMMIT",
    };
    let armed = run.one.proxy.arm(Trigger::statement(finish), Fault::HoldAnswer);
    let hooks = Hooks::default();
    let unit = transfer_in(
        ConnectionManager::using(&run.one.proxied).two_phase(),
        &run.one,
        &run.two,
        &hooks,
    );
    tokio::select! {
        done = unit => panic!("the unit ended while its first phase-two commit was held: {done:?}"),
        () = armed.wait_fired() => {} // the future is dropped here, after the decision
    }
    assert!(hooks.ran().is_empty(), "nothing is known yet");
    run.one.proxy.release();
    let ended = run.events.wait_for_end(&run.one.proxied).await;
    assert_eq!(ended, UnitOutcome::Committed, "finished in the background");
    assert_eq!(hooks.ran(), ["after commit"]);
    assert_eq!(run.rows().await, (1, 1));
    run.finish_with_nothing_prepared().await;
    Ok(())
}

/// Case 4: the answer to the joined database's `PREPARE TRANSACTION` / `XA PREPARE` is lost
/// after the server prepared the branch. Once its session is gone the branch is rolled back by its
/// id, at once: no prepared branch is left holding its locks until recovery's grace period, and
/// the next transfer on the same accounts goes through.
async fn a_lost_prepare_answer_is_rolled_back_at_once(first: Backend, second: Backend) -> Result<()> {
    coordinator().await;
    let run = Run::new(first, second, "lost_prepare", false).await;
    let prepare = match second {
        Backend::Postgres => "PREPARE TRANSACTION",
        _ => "XA PREPARE",
    };
    let armed = run
        .two
        .proxy
        .arm(Trigger::statement(prepare), Fault::DropAnswerAndClose);
    let hooks = Hooks::default();
    let result = transfer_in(
        ConnectionManager::using(&run.one.proxied).two_phase(),
        &run.one,
        &run.two,
        &hooks,
    )
    .await;
    assert_eq!(armed.fired(), 1);
    let err = result.unwrap_err();
    assert!(
        matches!(err, Error::ConnectionLost { .. }),
        "nothing committed: a plain error, {err:?}"
    );
    assert_eq!(hooks.ran(), ["after rollback"]);
    assert_eq!(run.rows().await, (0, 0));
    run.assert_nothing_prepared("the prepared branch was rolled back by its id")
        .await;
    // The accounts are free: the same transfer now commits.
    transfer_in(
        ConnectionManager::using(&run.one.proxied).two_phase(),
        &run.one,
        &run.two,
        &Hooks::default(),
    )
    .await?;
    assert_eq!(run.rows().await, (1, 1));
    run.finish().await;
    Ok(())
}

/// A two-phase unit whose joined branch's `COMMIT PREPARED` / `XA COMMIT` answer is lost: the
/// decision is durable, so that branch is `Decided` (never unknown, never rolled back), the error
/// is a `PartialCommit` naming the root committed and the joined one decided, the outcome handler
/// gets the report, and recovery leaves nothing prepared.
async fn a_lost_phase_two_answer_is_decided_and_recovery_finishes_it(first: Backend, second: Backend) -> Result<()> {
    let coordinator = coordinator().await;
    let run = Run::new(first, second, "lost_phase_two", false).await;
    let finish = match second {
        Backend::Postgres => "COMMIT PREPARED",
        _ => "XA COMMIT",
    };
    let armed = run.two.proxy.arm(Trigger::statement(finish), Fault::DropAnswerAndClose);
    let hooks = Hooks::default();
    let result = transfer_in(
        ConnectionManager::using(&run.one.proxied).two_phase(),
        &run.one,
        &run.two,
        &hooks,
    )
    .await;
    assert_eq!(armed.fired(), 1);
    let err = result.unwrap_err();
    let report = match &err {
        Error::PartialCommit(report) => report,
        _ => panic!("expected a partial commit with a decided branch, got {err:?}"),
    };
    assert_eq!(
        report.outcomes,
        [
            (run.one.proxied.clone(), DatabaseOutcome::Committed),
            (run.two.proxied.clone(), DatabaseOutcome::Decided),
        ]
    );
    assert!(err.to_string().contains("recover"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(hooks.ran(), ["outcome handler"]);
    let recovered = coordinator.recover_on(&[&run.one.proxied, &run.two.proxied]).await?;
    assert!(recovered.errors.is_empty(), "{recovered:?}");
    assert_eq!(run.rows().await, (1, 1));
    run.finish_with_nothing_prepared().await;
    Ok(())
}

/// A two-phase unit whose commit point site (the root: both databases have the marker table)
/// loses the answer to its one-phase `COMMIT`, which carried the unit's marker: the unit ends the
/// site's session, finds the marker, takes that as the decision and commits the prepared branch.
/// The caller gets `Ok`, the after-commit hook runs, both databases have the rows.
async fn a_lost_answer_of_the_commit_point_site_is_resolved_from_its_marker(
    first: Backend,
    second: Backend,
) -> Result<()> {
    coordinator().await;
    let run = Run::new(first, second, "lost_site", true).await;
    let armed = run.one.proxy.arm(
        Trigger::contains("INSERT INTO activerecord_markers"),
        Fault::DropAnswerAndClose,
    );
    let hooks = Hooks::default();
    transfer_in(
        ConnectionManager::using(&run.one.proxied).two_phase(),
        &run.one,
        &run.two,
        &hooks,
    )
    .await?;
    assert_eq!(armed.fired(), 1);
    assert_eq!(hooks.ran(), ["after commit"]);
    assert_eq!(run.rows().await, (1, 1));
    let events = run.unit_events();
    let site = run.one.proxied.clone();
    let unknown = events
        .iter()
        .position(|e| {
            *e == EventKind::OutcomeUnknown {
                connection: site.clone(),
            }
        })
        .expect("the lost answer was seen as such");
    assert_eq!(
        events[unknown + 1],
        EventKind::Committed {
            connection: site.clone()
        }
    );
    assert!(
        matches!(&events[unknown + 2], EventKind::DecisionDurable { site: Some(s), .. } if *s == site),
        "{events:?}"
    );
    run.finish_with_nothing_prepared().await;
    Ok(())
}

/// The commit point site's `COMMIT` is cut before it reaches the server: once the site's session
/// is gone, no marker means it rolled back, so nothing was decided and the prepared branch rolls
/// back too. A plain error, the after-rollback hook, no rows, nothing left prepared.
async fn a_site_commit_that_never_reached_the_server_rolls_every_branch_back(
    first: Backend,
    second: Backend,
) -> Result<()> {
    coordinator().await;
    let run = Run::new(first, second, "cut_site", true).await;
    let armed = run.one.proxy.arm(
        Trigger::contains("INSERT INTO activerecord_markers"),
        Fault::CutBeforeForwarding,
    );
    let hooks = Hooks::default();
    let err = transfer_in(
        ConnectionManager::using(&run.one.proxied).two_phase(),
        &run.one,
        &run.two,
        &hooks,
    )
    .await
    .unwrap_err();
    assert_eq!(armed.fired(), 1);
    assert!(
        matches!(err, Error::ConnectionLost { .. }),
        "nothing committed: a plain error, {err:?}"
    );
    assert_eq!(hooks.ran(), ["after rollback"]);
    assert_eq!(run.rows().await, (0, 0));
    run.assert_nothing_prepared("the prepared branch was rolled back at once")
        .await;
    run.finish().await;
    Ok(())
}

/// The commit markers a database holds.
async fn markers(db: &Database) -> i64 {
    fetch_column::<i64, _>(db, "SELECT COUNT(*) FROM activerecord_markers")
        .await
        .unwrap()[0]
}

/// A transfer leaves one marker on each database it wrote to (with the unit's id), none on a
/// database it only read, and none at all before the marker table exists; `prune_markers` removes
/// them.
async fn each_database_that_wrote_keeps_one_marker_until_pruned(first: Backend, second: Backend) -> Result<()> {
    let name = |n: u8| format!("markers_{n}_{first:?}_{second:?}").to_lowercase();
    let (one, ids_one) = bank(first, &name(1), &["ann"]).await;
    let (two, ids_two) = bank(second, &name(2), &["bob"]).await;
    let unit = ConnectionManager::using(&name(1))
        .transaction(async |tx| {
            Movement::record(tx, ids_one[0], -10).await?;
            ConnectionManager::using(&name(2))
                .transaction(async |tx| Movement::record(tx, ids_two[0], 10).await.map(drop))
                .await?;
            Ok::<_, Error>(tx.unit_id().clone())
        })
        .await?;
    assert!(
        fetch_column::<i64, _>(&one, "SELECT COUNT(*) FROM activerecord_markers")
            .await
            .is_err(),
        "no table yet"
    );
    activerecord::migrate::run(&one).await?;
    activerecord::migrate::run(&two).await?;
    let unit = ConnectionManager::using(&name(1))
        .transaction(async |tx| {
            Movement::record(tx, ids_one[0], -10).await?;
            ConnectionManager::using(&name(2))
                .read_only()
                .transaction(async |tx| testkit::bank::Account::find(tx, ids_two[0]).await.map(drop))
                .await?;
            Ok::<_, Error>((unit.clone(), tx.unit_id().clone()))
        })
        .await?;
    assert_eq!(
        (markers(&one).await, markers(&two).await),
        (1, 0),
        "the reader left none"
    );
    let marked: Vec<String> = fetch_column(&one, "SELECT unit_id FROM activerecord_markers").await?;
    assert_eq!(marked, [unit.1.to_string()]);
    assert_ne!(unit.0, unit.1);
    assert_eq!(
        ConnectionManager::prune_markers(&name(1), Duration::from_secs(3600)).await?,
        0,
        "too young"
    );
    tokio::time::sleep(Duration::from_millis(5)).await; // older than now, to the millisecond
    assert_eq!(ConnectionManager::prune_markers(&name(1), Duration::ZERO).await?, 1);
    assert_eq!(markers(&one).await, 0);
    Ok(())
}

/// The server sessions of the current database, other than the asking one, that are running a
/// statement (PostgreSQL: waiting on a lock).
async fn waiting_sessions(db: &Database) -> i64 {
    let sql = match db.backend() {
        Backend::Postgres => {
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        }
        _ => {
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() \
             AND ID <> CONNECTION_ID() AND COMMAND <> 'Sleep'"
        }
    };
    fetch_column::<i64, _>(db, sql).await.unwrap()[0]
}

/// Case 6: a scope's future is dropped (a timeout) while its statement waits on a row lock. The
/// statement is ended on the server at once, with its session: it does not wait on until a lock
/// timeout (on PostgreSQL: forever), and does not take the row when the holder lets it go.
async fn a_statement_abandoned_while_waiting_on_a_lock_is_ended_on_the_server(backend: Backend) -> Result<()> {
    let name = format!("abandoned_{backend:?}").to_lowercase();
    let (db, ids) = bank(backend, &name, &["owner"]).await;
    let account = ids[0];
    // Another session holds the row.
    let (release_tx, holding) = hold(&name, account).await;
    let waiter = ConnectionManager::using(&name).transaction(async |tx| {
        testkit::bank::Account::find_for_update(tx, account).await?;
        Movement::record(tx, account, -10).await?;
        Ok::<_, Error>(())
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), waiter).await.is_err(),
        "the waiter waits on the lock"
    );
    // The abandoned statement is ended from the control connection.
    let mut waiting = waiting_sessions(&db).await;
    for _ in 0..500 {
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        waiting = waiting_sessions(&db).await;
    }
    assert_eq!(waiting, 0, "no statement of the dropped scope still runs on the server");
    release_tx.send(()).unwrap();
    holding.await.unwrap()?;
    assert_eq!(Movement::count(&db).await?, 0, "the abandoned scope wrote nothing");
    assert_no_open_transactions(&db).await;
    Ok(())
}

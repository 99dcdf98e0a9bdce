//! Contention (the first part of the contention contract in `docs/transactions.md`): no statement
//! of a unit of work over several databases waits for a lock for longer than its limit, and the
//! error then is the typed, retryable `Error::LockTimeout` with nothing committed. A unit of work
//! on one database keeps the database's own waits.

use crate::common::{
    Movement, assert_balances_match_movements, assert_no_open_transactions, balance, bank, hold, test_matrix,
};
use activerecord::{Backend, ConnectionManager, Database, DatabaseConfig, Error, Model, Result, RetryPolicy};
use std::time::Duration;
use testkit::bank::{Account, adjust, transfer_in};
use tokio::sync::oneshot;

test_matrix!([postgres_and_mariadb, mariadb_and_postgres, postgres_and_postgres] =>
    a_joined_statement_gives_up_waiting_for_a_lock,
    the_root_gives_up_waiting_once_another_database_joined,
);

test_matrix!([postgres_and_postgres, postgres_and_mariadb, sqlite_and_sqlite] =>
    opposite_transfers_with_a_retry_policy_all_complete,
    opposite_transfers_without_retries_fail_only_on_deadlocks_and_lock_waits,
);

test_matrix!([postgres_and_postgres, postgres_and_mariadb, mariadb_and_postgres, sqlite_and_sqlite, postgres_and_sqlite, sqlite_and_mariadb] =>
    a_deadlock_across_databases_is_broken_and_the_younger_unit_gives_way,
    a_unit_chosen_to_give_way_commits_nothing_even_if_the_body_goes_on,
);

test_matrix!([sqlite, postgres, mariadb] =>
    twenty_concurrent_calls_with_one_key_apply_the_work_once,
    a_key_reused_for_another_request_is_refused_and_a_failed_call_frees_it,
);

test_matrix!([postgres, mariadb] =>
    a_unit_on_one_database_keeps_the_database_s_own_waits,
    a_deadlock_inside_a_savepoint_is_reported_and_never_autocommits,
);

/// The limit the tests ask for (MariaDB rounds it up to 1 s).
const LIMIT: Duration = Duration::from_millis(300);

/// Two bank databases, each with one account.
async fn pair(first: Backend, second: Backend, label: &str) -> [(String, Database, i64); 2] {
    let names = [1, 2].map(|n| format!("{label}_{n}_{first:?}_{second:?}").to_lowercase());
    let (one, ids_one) = bank(first, &names[0], &["ann"]).await;
    let (two, ids_two) = bank(second, &names[1], &["bob"]).await;
    let [n1, n2] = names;
    [(n1, one, ids_one[0]), (n2, two, ids_two[0])]
}

/// A joined scope's statement waits on a row another transaction holds: after the limit it fails
/// with `LockTimeout`, the unit rolls back, and nothing is committed on either database.
async fn a_joined_statement_gives_up_waiting_for_a_lock(first: Backend, second: Backend) -> Result<()> {
    let [(n1, db1, a1), (n2, db2, a2)] = pair(first, second, "joined_wait").await;
    let (release, holding) = hold(&n2, a2).await;
    let result = ConnectionManager::using(&n1)
        .lock_timeout(LIMIT)
        .transaction(async |tx| {
            Movement::record(tx, a1, -10).await?;
            ConnectionManager::using(&n2)
                .transaction(async |tx| {
                    Account::find_for_update(tx, a2).await?;
                    Movement::record(tx, a2, 10).await
                })
                .await?;
            Ok::<_, Error>(())
        })
        .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    assert!(err.is_transient(), "nothing committed: the unit may be retried");
    release.send(()).unwrap();
    holding.await.unwrap()?;
    assert_eq!((Movement::count(&db1).await?, Movement::count(&db2).await?), (0, 0));
    assert_no_open_transactions(&db1).await;
    assert_no_open_transactions(&db2).await;
    Ok(())
}

/// The outermost scope's own database is limited too, from the moment another database joins.
async fn the_root_gives_up_waiting_once_another_database_joined(first: Backend, second: Backend) -> Result<()> {
    let [(n1, db1, a1), (n2, db2, a2)] = pair(first, second, "root_wait").await;
    let (release, holding) = hold(&n1, a1).await;
    let result = ConnectionManager::using(&n1)
        .lock_timeout(LIMIT)
        .transaction(async |tx| {
            ConnectionManager::using(&n2)
                .transaction(async |tx| Movement::record(tx, a2, 10).await)
                .await?;
            Account::find_for_update(tx, a1).await?;
            Movement::record(tx, a1, -10).await?;
            Ok::<_, Error>(())
        })
        .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    release.send(()).unwrap();
    holding.await.unwrap()?;
    assert_eq!((Movement::count(&db1).await?, Movement::count(&db2).await?), (0, 0));
    Ok(())
}

/// A unit of work on one database waits as the database says (it sees the whole wait, and its
/// own deadlock detection breaks cycles): here longer than the multi-database limit, and succeeds.
async fn a_unit_on_one_database_keeps_the_database_s_own_waits(backend: Backend) -> Result<()> {
    let name = format!("single_wait_{backend:?}").to_lowercase();
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let (release, holding) = hold(&name, ids[0]).await;
    let waiter = tokio::spawn({
        let name = name.clone();
        let id = ids[0];
        async move {
            ConnectionManager::using(&name)
                .lock_timeout(LIMIT)
                .transaction(async |tx| {
                    Account::find_for_update(tx, id).await?;
                    Movement::record(tx, id, -10).await
                })
                .await
        }
    });
    // Longer than the limit (MariaDB's rounded-up second included) before the lock is let go.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    release.send(()).unwrap();
    holding.await.unwrap()?;
    waiter.await.unwrap()?;
    assert_eq!(Movement::count(&db).await?, 1);
    Ok(())
}

/// SQLite: a writer that does not get the file's lock within `busy_timeout` fails with
/// `LockTimeout` too.
#[tokio::test]
async fn a_sqlite_writer_gives_up_after_its_busy_timeout() -> Result<()> {
    testkit::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("busy.db").display());
    let config = DatabaseConfig::new(url.as_str()).busy_timeout(Duration::from_millis(200));
    let db = ConnectionManager::configure_with("sqlite_busy_wait", config).await?;
    db.execute("CREATE TABLE t (x INTEGER)").await?;
    let (release, holding) = {
        let (locked_tx, locked_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let holding = tokio::spawn(
            ConnectionManager::using("sqlite_busy_wait").transaction(async move |tx| {
                tx.execute("INSERT INTO t VALUES (1)").await?;
                locked_tx.send(()).unwrap();
                let _ = release_rx.await;
                Ok::<_, Error>(())
            }),
        );
        locked_rx.await.unwrap();
        (release_tx, holding)
    };
    let err = ConnectionManager::using("sqlite_busy_wait")
        .transaction(async |tx| tx.execute("INSERT INTO t VALUES (2)").await)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    release.send(()).unwrap();
    holding.await.unwrap()?;
    let rows: Vec<i64> = activerecord::fetch_column(&db, "SELECT x FROM t").await?;
    assert_eq!(rows, [1]);
    Ok(())
}

/// What one side of a deadlock saw: the nested scope's result, the outer scope's next statement,
/// and the unit's commit.
type Seen = (Result<()>, Result<()>, Result<()>);

/// Two units of work on one database lock two rows in opposite orders, each inside a nested scope
/// (a savepoint), so the server picks a deadlock victim. The victim's nested scope gets the
/// deadlock error (retryable). On MariaDB the server has rolled back the victim's whole
/// transaction, savepoints included: the outer scope's next statement and the commit are refused
/// (they would run in autocommit), and nothing of the victim is stored. On PostgreSQL only the
/// savepoint is rolled back, and the outer scope goes on and commits.
async fn a_deadlock_inside_a_savepoint_is_reported_and_never_autocommits(backend: Backend) -> Result<()> {
    let name = format!("savepoint_deadlock_{backend:?}").to_lowercase();
    let (db, ids) = bank(backend, &name, &["ann", "bob"]).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let side = |first: i64, second: i64| {
        let (name, barrier) = (name.clone(), barrier.clone());
        tokio::spawn(async move {
            let mut seen = None;
            let commit = ConnectionManager::using(&name)
                .transaction(async |tx| {
                    let nested = ConnectionManager::using(&name)
                        .transaction(async |tx| {
                            Account::find_for_update(tx, first).await?;
                            barrier.wait().await;
                            Account::find_for_update(tx, second).await.map(drop)
                        })
                        .await;
                    let next = Movement::record(tx, first, -1).await.map(drop);
                    seen = Some((nested, next));
                    Ok::<_, Error>(())
                })
                .await;
            let (nested, next) = seen.expect("the body ran");
            (nested, next, commit)
        })
    };
    let a = side(ids[0], ids[1]);
    let b = side(ids[1], ids[0]);
    let (a, b): (Seen, Seen) = (a.await.unwrap(), b.await.unwrap());
    let (victim, winner) = if a.0.is_err() { (a, b) } else { (b, a) };
    assert!(winner.0.is_ok() && winner.1.is_ok() && winner.2.is_ok(), "{winner:?}");
    let deadlock = victim.0.as_ref().unwrap_err();
    assert!(deadlock.is_transient(), "a deadlock may be retried: {deadlock:?}");
    match backend {
        Backend::MySql => {
            assert!(
                matches!(victim.1, Err(Error::RolledBackByServer { .. })),
                "{:?}",
                victim.1
            );
            assert!(
                matches!(victim.2, Err(Error::RolledBackByServer { .. })),
                "{:?}",
                victim.2
            );
            assert_eq!(
                Movement::count(&db).await?,
                1,
                "nothing of the victim ran in autocommit"
            );
        }
        _ => {
            assert!(victim.1.is_ok() && victim.2.is_ok(), "{victim:?}");
            assert_eq!(Movement::count(&db).await?, 2, "the savepoint alone was rolled back");
        }
    }
    assert_no_open_transactions(&db).await;
    Ok(())
}

/// Two units of work each lock a row on their own first database, then each asks for the row the
/// other holds on its second: a cycle through two databases, each of which sees one plain lock
/// wait. The lock-wait limit is far away (30 s): the process's deadlock detector breaks the cycle
/// by cancelling the younger unit's waiting statement, which gets `Error::Deadlock` (retryable)
/// and rolls back on both databases; the older one then commits on both. On SQLite the waits are
/// for the in-process write lock of each file, which the detector sees too.
async fn a_deadlock_across_databases_is_broken_and_the_younger_unit_gives_way(
    first: Backend,
    second: Backend,
) -> Result<()> {
    let [(n1, db1, a1), (n2, db2, a2)] = pair(first, second, "crossed").await;
    let holding_both = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let unit = |from: (String, i64), to: (String, i64), started: Option<oneshot::Receiver<()>>| {
        let holding_both = holding_both.clone();
        async move {
            if let Some(started) = started {
                // The older unit has begun: this one is the younger.
                started.await.unwrap();
            }
            ConnectionManager::using(&from.0)
                .lock_timeout(Duration::from_secs(30))
                .transaction(async |tx| {
                    adjust(tx, from.1, -1).await?;
                    holding_both.wait().await;
                    ConnectionManager::using(&to.0)
                        .transaction(async |tx| adjust(tx, to.1, 1).await)
                        .await
                })
                .await
        }
    };
    let (begun, started) = oneshot::channel();
    let older = tokio::spawn(unit((n1.clone(), a1), (n2.clone(), a2), None));
    // The younger unit starts once the older one holds its first row.
    let younger = tokio::spawn(unit((n2.clone(), a2), (n1.clone(), a1), Some(started)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    begun.send(()).unwrap();
    let (older, younger) = (older.await.unwrap(), younger.await.unwrap());
    older?;
    let err = younger.unwrap_err();
    assert!(matches!(err, Error::Deadlock { .. }), "{err:?}");
    assert!(err.is_transient(), "nothing committed: the unit may be retried");
    only_the_older_unit_committed((&db1, a1), (&db2, a2)).await
}

/// The older unit's transfer alone is stored: one movement on each database, balances that match
/// them and still add up to 200, and no transaction left open.
async fn only_the_older_unit_committed(one: (&Database, i64), two: (&Database, i64)) -> Result<()> {
    assert_eq!((Movement::count(one.0).await?, Movement::count(two.0).await?), (1, 1));
    assert_balances_match_movements(one.0, &[one.1]).await;
    assert_balances_match_movements(two.0, &[two.1]).await;
    assert_eq!(balance(one.0, one.1).await + balance(two.0, two.1).await, 200);
    assert_no_open_transactions(one.0).await;
    assert_no_open_transactions(two.0).await;
    Ok(())
}

/// The younger unit writes in its joined transaction before it waits there; the detector cancels
/// that wait (on MariaDB `KILL QUERY`, which leaves the transaction open with the earlier write).
/// The body swallows the error and returns `Ok`: the unit still commits nothing, anywhere, and
/// the scope returns `Error::Deadlock`.
async fn a_unit_chosen_to_give_way_commits_nothing_even_if_the_body_goes_on(
    first: Backend,
    second: Backend,
) -> Result<()> {
    let [(n1, db1, a1), (n2, db2, a2)] = pair(first, second, "swallowed").await;
    let holding_both = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let (begun, started) = oneshot::channel();
    let older = tokio::spawn({
        let (n1, n2, holding_both) = (n1.clone(), n2.clone(), holding_both.clone());
        async move {
            ConnectionManager::using(&n2)
                .lock_timeout(Duration::from_secs(30))
                .transaction(async |tx| {
                    adjust(tx, a2, -1).await?;
                    begun.send(()).unwrap();
                    holding_both.wait().await;
                    ConnectionManager::using(&n1)
                        .transaction(async |tx| adjust(tx, a1, 1).await)
                        .await
                })
                .await
        }
    });
    started.await.unwrap();
    let mut joined = None;
    let younger = ConnectionManager::using(&n1)
        .lock_timeout(Duration::from_secs(30))
        .transaction(async |tx| {
            adjust(tx, a1, -1).await?;
            holding_both.wait().await;
            let result = ConnectionManager::using(&n2)
                .transaction(async |tx| {
                    // A write of the joined transaction, then the wait the detector cancels.
                    Movement::record(tx, a2, 0).await?;
                    adjust(tx, a2, 1).await
                })
                .await;
            joined = Some(result);
            Ok::<_, Error>(())
        })
        .await;
    older.await.unwrap()?;
    let joined = joined.expect("the body ran").unwrap_err();
    assert!(matches!(joined, Error::Deadlock { .. }), "{joined:?}");
    assert!(matches!(younger, Err(Error::Deadlock { .. })), "{younger:?}");
    only_the_older_unit_committed((&db1, a1), (&db2, a2)).await
}

/// A bank database with the crate's migrations (for the idempotency keys).
async fn migrated_bank(backend: Backend, label: &str) -> (String, Database, i64) {
    let name = format!("{label}_{backend:?}").to_lowercase();
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    activerecord::migrate::run(&db).await.unwrap();
    (name, db, ids[0])
}

/// 20 calls with one key at once: the work is applied once, and every call returns its result
/// (the calls that came second waited for the first and read what it stored).
async fn twenty_concurrent_calls_with_one_key_apply_the_work_once(backend: Backend) -> Result<()> {
    let (name, db, account) = migrated_bank(backend, "idempotent_twenty").await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let name = name.clone();
            tokio::spawn(async move {
                ConnectionManager::using(&name)
                    .idempotent("payment-1", &(account, -10))
                    .transaction(async |tx| {
                        let movement = Movement::record(tx, account, -10).await?;
                        Ok::<_, Error>(movement.id)
                    })
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap()?);
    }
    assert_eq!(Movement::count(&db).await?, 1, "applied once");
    assert!(results.iter().all(|r| *r == results[0] && r.is_some()), "{results:?}");
    Ok(())
}

/// The same key with another request is a typed error and runs nothing; a call that fails stores
/// nothing, so its key is free for the retry; old keys are pruned.
async fn a_key_reused_for_another_request_is_refused_and_a_failed_call_frees_it(backend: Backend) -> Result<()> {
    let (name, db, account) = migrated_bank(backend, "idempotent_conflict").await;
    let pay = |amount: i64, fail: bool| {
        ConnectionManager::using(&name)
            .idempotent("order-9", &amount)
            .transaction(async move |tx| {
                Movement::record(tx, account, amount).await?;
                if fail {
                    return Err(Error::rejected("the payment provider said no"));
                }
                Ok::<_, Error>(amount)
            })
    };
    assert!(matches!(pay(-10, true).await, Err(Error::Rejected(_))));
    assert_eq!(Movement::count(&db).await?, 0, "the failed call stored nothing");
    assert_eq!(pay(-10, false).await?, -10, "the key was free again");
    assert_eq!(pay(-10, false).await?, -10, "the stored result");
    let err = pay(-20, false).await.unwrap_err();
    assert!(
        matches!(err, Error::IdempotencyConflict { ref key } if key == "order-9"),
        "{err:?}"
    );
    assert_eq!(Movement::count(&db).await?, 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        ConnectionManager::prune_idempotency_keys(&name, Duration::ZERO).await?,
        1
    );
    assert_eq!(pay(-20, false).await?, -20, "a pruned key is new again");
    assert_eq!(Movement::count(&db).await?, 2);
    Ok(())
}

/// The README's transfer run by four tasks, two moving money from the first database to the second
/// and two the other way, 25 transfers each: opposite lock orders across two databases, which
/// neither database can see whole. Every unit of work has a short lock-wait limit (SQLite: a short
/// `busy_timeout`). Returns each transfer's result.
async fn opposite_transfers(
    first: Backend,
    second: Backend,
    label: &str,
    policy: Option<RetryPolicy>,
) -> (Vec<Result<()>>, [(String, Database, i64); 2]) {
    let mut pair = pair(first, second, label).await;
    for (name, db, _) in &mut pair {
        if db.backend() == Backend::Sqlite {
            // The crossed `BEGIN IMMEDIATE`s wait for the other file's writer: not for 5 s here.
            let config = DatabaseConfig::new(db.url().expose()).busy_timeout(LIMIT);
            *db = ConnectionManager::configure_with(name, config).await.unwrap();
        }
    }
    let [(n1, _, a1), (n2, _, a2)] = &pair;
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let (from, to) = if task % 2 == 0 {
                ((n1.clone(), *a1), (n2.clone(), *a2))
            } else {
                ((n2.clone(), *a2), (n1.clone(), *a1))
            };
            let policy = policy.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for _ in 0..25 {
                    let scope = ConnectionManager::using(&from.0).lock_timeout(LIMIT);
                    let result = match &policy {
                        Some(policy) => {
                            scope
                                .retry(policy.clone())
                                .transaction(async |tx| transfer_in(tx, from.1, (&to.0, to.1), 1).await)
                                .await
                        }
                        None => {
                            scope
                                .transaction(async |tx| transfer_in(tx, from.1, (&to.0, to.1), 1).await)
                                .await
                        }
                    };
                    results.push(result);
                }
                results
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.unwrap());
    }
    (results, pair)
}

/// Checks that the money on both databases adds up: each account's balance is its start plus its
/// movements, and the two together still hold 200; returns how many transfers committed.
async fn conserved(pair: &[(String, Database, i64); 2]) -> i64 {
    for (_, db, id) in pair {
        assert_balances_match_movements(db, &[*id]).await;
        assert_no_open_transactions(db).await;
    }
    let (one, two) = (
        balance(&pair[0].1, pair[0].2).await,
        balance(&pair[1].1, pair[1].2).await,
    );
    assert_eq!(one + two, 200, "the total is conserved");
    Movement::count(&pair[0].1).await.unwrap()
}

async fn opposite_transfers_with_a_retry_policy_all_complete(first: Backend, second: Backend) -> Result<()> {
    let policy = RetryPolicy::new(50).backoff(Duration::from_millis(5), Duration::from_millis(200));
    let (results, pair) = opposite_transfers(first, second, "opposite_retry", Some(policy)).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(conserved(&pair).await, 100, "100 of 100 committed");
    Ok(())
}

async fn opposite_transfers_without_retries_fail_only_on_deadlocks_and_lock_waits(
    first: Backend,
    second: Backend,
) -> Result<()> {
    let (results, pair) = opposite_transfers(first, second, "opposite_plain", None).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for err in &failed {
        assert!(
            matches!(err, Error::Deadlock { .. } | Error::LockTimeout { .. }),
            "only deadlocks broken and lock waits given up: {err:?}"
        );
    }
    let committed = conserved(&pair).await;
    assert_eq!(
        committed + failed.len() as i64,
        100,
        "every transfer committed or failed whole"
    );
    Ok(())
}

//! Scopes across databases (semantics.md, "Nesting" rules 2 to 5), on two SQLite files and on
//! PostgreSQL + MariaDB together.

use crate::common::{
    Movement, assert_balances_match_movements, assert_no_open_transactions, balance, bank, test_matrix,
};
use activerecord::{Backend, ConnectionManager, Database, DatabaseOutcome, Error, Model, Result, fetch_column};
use std::sync::{Arc, Mutex};
use std::time::Duration;

test_matrix!(
    [sqlite_and_sqlite, postgres_and_mariadb] =>
    a_transfer_commits_both,
    insufficient_funds_changes_nothing,
    an_inner_failure_changes_nothing,
    a_failure_after_the_inner_scope_changes_nothing,
    a_failed_second_commit_is_a_partial_commit,
    hooks_wait_for_every_database,
    requires_new_commits_at_its_own_end,
    cancellation_leaves_no_open_transaction,
    concurrent_transfers_keep_the_total,
);

/// A scope's future keeps its body, and the scopes nested in it, boxed: the future of a
/// two-database transfer stays small, rather than holding every nested scope inline and being
/// copied whole each time it moves (it took 40 KB before).
#[test]
fn a_scope_future_stays_small_however_scopes_nest() {
    let transfer = testkit::bank::transfer(("size_1", 1), ("size_2", 2), 1, false);
    let size = std::mem::size_of_val(&transfer);
    assert!(size <= 2048, "the future of a two-database transfer takes {size} bytes");
}

/// Two banks: `<label>_1` with ann, `<label>_2` with bob, 100 each.
async fn two_banks(first: Backend, second: Backend, label: &str) -> (Bank, Bank) {
    let suffix = format!("{first:?}_{second:?}").to_lowercase();
    let one = format!("{label}_1_{suffix}");
    let two = format!("{label}_2_{suffix}");
    let (db1, ids1) = bank(first, &one, &["ann"]).await;
    let (db2, ids2) = bank(second, &two, &["bob"]).await;
    (
        Bank {
            name: one,
            db: db1,
            account: ids1[0],
        },
        Bank {
            name: two,
            db: db2,
            account: ids2[0],
        },
    )
}

struct Bank {
    name: String,
    db: Database,
    account: i64,
}

/// The guide's best-effort transfer: debit in the first database, credit in a nested scope on the
/// second; each change is recorded as a movement in the same transaction.
async fn transfer(from: &Bank, to: &Bank, amount: i64) -> Result<()> {
    testkit::bank::transfer((&from.name, from.account), (&to.name, to.account), amount, false).await
}

async fn assert_unchanged(one: &Bank, two: &Bank) {
    assert_eq!(balance(&one.db, one.account).await, 100, "{} changed", one.name);
    assert_eq!(balance(&two.db, two.account).await, 100, "{} changed", two.name);
    assert_eq!(
        Movement::count(&one.db).await.unwrap() + Movement::count(&two.db).await.unwrap(),
        0
    );
    assert_no_open_transactions(&one.db).await;
    assert_no_open_transactions(&two.db).await;
}

async fn a_transfer_commits_both(first: Backend, second: Backend) -> Result<()> {
    let (one, two) = two_banks(first, second, "nest_commit").await;
    transfer(&one, &two, 30).await?;
    assert_eq!(balance(&one.db, one.account).await, 70);
    assert_eq!(balance(&two.db, two.account).await, 130);
    assert_no_open_transactions(&one.db).await;
    assert_no_open_transactions(&two.db).await;
    Ok(())
}

async fn insufficient_funds_changes_nothing(first: Backend, second: Backend) -> Result<()> {
    let (one, two) = two_banks(first, second, "nest_funds").await;
    let err = transfer(&one, &two, 101).await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected(reason) if reason == "insufficient funds"),
        "{err:?}"
    );
    assert_unchanged(&one, &two).await;
    Ok(())
}

async fn an_inner_failure_changes_nothing(first: Backend, second: Backend) -> Result<()> {
    let (one, two) = two_banks(first, second, "nest_inner").await;
    let missing = Bank {
        name: two.name.clone(),
        db: two.db.clone(),
        account: 999,
    };
    let err = transfer(&one, &missing, 10).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_unchanged(&one, &two).await;
    Ok(())
}

async fn a_failure_after_the_inner_scope_changes_nothing(first: Backend, second: Backend) -> Result<()> {
    let (one, two) = two_banks(first, second, "nest_after").await;
    let err = ConnectionManager::using(&one.name)
        .transaction(async |tx| {
            Movement::record(tx, one.account, -1).await?;
            ConnectionManager::using(&two.name)
                .transaction(async |tx| Movement::record(tx, two.account, 1).await)
                .await?;
            Err::<(), _>(Error::rejected("the outer body fails after the inner scope succeeded"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Rejected(_)));
    assert_unchanged(&one, &two).await;
    Ok(())
}

/// Makes the commit of the second database fail for real, just before it happens: on SQLite
/// through a deferred foreign key that the commit checks (the database answers: rolled back, a
/// partial commit); on MariaDB by killing the connection from the server side (no answer comes:
/// from the client's side the second database's outcome is unknown, and is reported so).
async fn a_failed_second_commit_is_a_partial_commit(first: Backend, second: Backend) -> Result<()> {
    let (one, two) = two_banks(first, second, "nest_partial").await;
    if second == Backend::Sqlite {
        two.db
            .execute(
                "CREATE TABLE holds (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL \
                 REFERENCES accounts (id) DEFERRABLE INITIALLY DEFERRED)",
            )
            .await?;
    }
    let err = ConnectionManager::using(&one.name)
        .transaction(async |tx| {
            Movement::record(tx, one.account, -10).await?;
            ConnectionManager::using(&two.name)
                .transaction(async |tx| {
                    Movement::record(tx, two.account, 10).await?;
                    if second == Backend::Sqlite {
                        tx.execute("INSERT INTO holds (account_id) VALUES (424242)").await?;
                    }
                    Ok::<_, Error>(())
                })
                .await?;
            if second == Backend::MySql {
                let victims: Vec<i64> = fetch_column(
                    &two.db,
                    "SELECT CAST(t.trx_mysql_thread_id AS SIGNED) FROM information_schema.INNODB_TRX t \
                     JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id WHERE p.DB = DATABASE()",
                )
                .await?;
                assert_eq!(victims.len(), 1, "one open transaction on the second database");
                two.db.execute(&format!("KILL CONNECTION {}", victims[0])).await?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    let (report, second_outcome) = match (&err, second) {
        (Error::PartialCommit(report), Backend::Sqlite) => (report, DatabaseOutcome::RolledBack),
        (Error::OutcomeUnknown(report), Backend::MySql) => (report, DatabaseOutcome::Unknown),
        _ => panic!("expected a partial commit on SQLite, an unknown outcome on MariaDB; got {err:?}"),
    };
    assert_eq!(
        report.outcomes,
        [
            (one.name.clone(), DatabaseOutcome::Committed),
            (two.name.clone(), second_outcome)
        ]
    );
    assert_eq!(report.failed, two.name);
    assert!(!err.is_transient(), "retrying could apply the transfer twice");
    let message = err.to_string();
    assert!(message.contains(&one.name) && message.contains(&two.name), "{message}");
    assert!(message.contains(&report.unit), "{message}");
    assert_eq!(Movement::count(&one.db).await?, 1, "the first database committed");
    assert_eq!(Movement::count(&two.db).await?, 0, "the second did not");
    assert_no_open_transactions(&one.db).await;
    assert_no_open_transactions(&two.db).await;
    Ok(())
}

async fn hooks_wait_for_every_database(first: Backend, second: Backend) -> Result<()> {
    let (one, two) = two_banks(first, second, "nest_hooks").await;
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = |event: &str| {
        let events = events.clone();
        let event = event.to_owned();
        move || events.lock().unwrap().push(event)
    };
    for fail_outer in [false, true] {
        let before = events.lock().unwrap().len();
        let _ = ConnectionManager::using(&one.name)
            .transaction(async |_| {
                ConnectionManager::using(&two.name)
                    .transaction(async |tx| {
                        tx.after_commit(log("committed"));
                        tx.after_rollback(log("rolled back"));
                        Movement::record(tx, two.account, 0).await
                    })
                    .await?;
                assert_eq!(
                    events.lock().unwrap().len(),
                    before,
                    "the inner scope's end runs no hook"
                );
                if fail_outer {
                    Err(Error::rejected("outer fails"))
                } else {
                    Ok(())
                }
            })
            .await;
    }
    assert_eq!(*events.lock().unwrap(), ["committed", "rolled back"]);
    Ok(())
}

async fn requires_new_commits_at_its_own_end(first: Backend, second: Backend) -> Result<()> {
    let (one, two) = two_banks(first, second, "nest_new").await;
    let _ = ConnectionManager::using(&one.name)
        .transaction(async |tx| {
            Movement::record(tx, one.account, -1).await?;
            ConnectionManager::using(&two.name)
                .requires_new()
                .transaction(async |tx| Movement::record(tx, two.account, 1).await)
                .await?;
            Err::<(), _>(Error::rejected("the outer scope fails"))
        })
        .await;
    assert_eq!(Movement::count(&one.db).await?, 0, "the outer scope rolled back");
    assert_eq!(
        Movement::count(&two.db).await?,
        1,
        "the independent inner scope had committed"
    );
    Ok(())
}

/// Drops a transfer's future at many points: before BEGIN completes, in the middle of the bodies,
/// during the final commits. Afterwards no pooled connection is inside a transaction and each
/// database shows all of a transfer's writes there or none.
async fn cancellation_leaves_no_open_transaction(first: Backend, second: Backend) -> Result<()> {
    let (one, two) = two_banks(first, second, "nest_cancel").await;
    // Dropped before BEGIN completes.
    assert!(
        tokio::time::timeout(Duration::ZERO, transfer(&one, &two, 1))
            .await
            .is_err()
    );
    // Dropped while the inner body waits, with writes made on both databases.
    let parked = ConnectionManager::using(&one.name).transaction(async |tx| {
        Movement::record(tx, one.account, -1).await?;
        ConnectionManager::using(&two.name)
            .transaction(async |tx| {
                Movement::record(tx, two.account, 1).await?;
                std::future::pending::<()>().await;
                Ok::<_, Error>(())
            })
            .await
    });
    assert!(tokio::time::timeout(Duration::from_millis(100), parked).await.is_err());
    // Dropped at points spread over a whole transfer, the final commits included.
    let full = {
        let started = std::time::Instant::now();
        transfer(&one, &two, 1).await?;
        started.elapsed()
    };
    for step in 0..40u32 {
        let _ = tokio::time::timeout(full * step / 30, transfer(&one, &two, 1)).await;
    }
    // Closing a dropped connection finishes in the background.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_no_open_transactions(&one.db).await;
    assert_no_open_transactions(&two.db).await;
    assert_balances_match_movements(&one.db, &[one.account]).await;
    assert_balances_match_movements(&two.db, &[two.account]).await;
    Ok(())
}

/// 32 tasks transfer between the two databases at once, in both directions. Every unit of work
/// opens the first database's scope first, so locks are always taken in the same order.
async fn concurrent_transfers_keep_the_total(first: Backend, second: Backend) -> Result<()> {
    let (one, two) = two_banks(first, second, "nest_concurrent").await;
    let (one, two) = (Arc::new(one), Arc::new(two));
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let (one, two) = (one.clone(), two.clone());
            tokio::spawn(async move {
                let mut done = 0;
                for round in 0..5 {
                    let amount = if (task + round) % 2 == 0 { 3 } else { -3 };
                    loop {
                        match transfer(&one, &two, amount).await {
                            Ok(()) => break,
                            Err(Error::Rejected(_)) => break,
                            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(5)).await,
                            Err(e) => panic!("transfer failed: {e}"),
                        }
                    }
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut transfers = 0;
    for task in tasks {
        transfers += tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("no deadlock")
            .unwrap();
    }
    assert_eq!(transfers, 32 * 5);
    let total = balance(&one.db, one.account).await + balance(&two.db, two.account).await;
    assert_eq!(total, 200, "money is neither created nor lost");
    assert_balances_match_movements(&one.db, &[one.account]).await;
    assert_balances_match_movements(&two.db, &[two.account]).await;
    assert_no_open_transactions(&one.db).await;
    assert_no_open_transactions(&two.db).await;
    Ok(())
}

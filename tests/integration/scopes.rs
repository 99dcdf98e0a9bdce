//! Local scopes on one database (semantics.md, "Local scopes" and "Nesting" rule 1), on every
//! backend.

use crate::common::{Account, Movement, assert_no_open_transactions, balance, bank, test_matrix};
use activerecord::{Ambient, Backend, ConnectionManager, Error, Isolation, Model, Result, col, fetch_column};
use std::sync::Arc;
use std::time::Duration;

test_matrix!([sqlite, postgres, mariadb] =>
    ok_commits_and_returns_the_value,
    err_rolls_back,
    panic_rolls_back_and_continues,
    savepoint_rollback_is_survived_by_the_outer_scope,
    a_swallowed_statement_failure,
    read_only_scopes_refuse_writes,
    isolation_is_applied,
    timeouts_roll_back,
    calls_without_a_handle_use_the_scope,
    hooks_run_once_after_the_outcome,
    scopes_run_inside_spawned_tasks,
);

fn name(backend: Backend, label: &str) -> String {
    format!("{label}_{backend:?}").to_lowercase()
}

async fn ok_commits_and_returns_the_value(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_ok");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let returned = ConnectionManager::using(&name)
        .transaction(async |tx| {
            let mut ann = Account::find(tx, ids[0]).await?;
            ann.balance = 70;
            ann.save(tx).await?;
            Ok::<_, Error>(ann.balance * 2)
        })
        .await?;
    assert_eq!(returned, 140);
    assert_eq!(balance(&db, ids[0]).await, 70);
    assert_no_open_transactions(&db).await;
    Ok(())
}

async fn err_rolls_back(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_err");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let err = ConnectionManager::using(&name)
        .transaction(async |tx| {
            let mut ann = Account::find(tx, ids[0]).await?;
            ann.balance = 0;
            ann.save(tx).await?;
            Movement::record(tx, ids[0], -100).await?;
            Err::<(), _>(Error::rejected("changed my mind"))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Rejected(_)),
        "the body's error is returned: {err:?}"
    );
    assert_eq!(balance(&db, ids[0]).await, 100);
    assert_eq!(Movement::count(&db).await?, 0);
    assert_no_open_transactions(&db).await;
    Ok(())
}

async fn panic_rolls_back_and_continues(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_panic");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let id = ids[0];
    let scope_name = name.clone();
    let task = tokio::spawn(async move {
        ConnectionManager::using(&scope_name)
            .transaction(async |tx| {
                let mut ann = Account::find(tx, id).await?;
                ann.balance = 1;
                ann.save(tx).await?;
                panic!("bug in the body");
                #[allow(unreachable_code)]
                Ok::<_, Error>(())
            })
            .await
    });
    let joined = task.await.unwrap_err();
    assert!(joined.is_panic(), "the panic continues to the caller");
    assert_eq!(balance(&db, id).await, 100);
    assert_no_open_transactions(&db).await;
    Ok(())
}

async fn savepoint_rollback_is_survived_by_the_outer_scope(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_savepoint");
    let (db, ids) = bank(backend, &name, &["ann", "bob"]).await;
    ConnectionManager::using(&name)
        .transaction(async |tx| {
            Movement::record(tx, ids[0], 1).await?;
            // A failing statement inside a nested scope: on PostgreSQL it aborts the transaction
            // until the savepoint is rolled back.
            let inner = ConnectionManager::using(&name)
                .transaction(async |tx| {
                    Movement::record(tx, ids[1], 2).await?;
                    Account::create(
                        tx,
                        Account {
                            id: None,
                            owner: "ann".into(),
                            balance: 0,
                        },
                    )
                    .await
                })
                .await;
            assert!(matches!(inner, Err(Error::ConstraintViolation { .. })), "{inner:?}");
            // The outer scope goes on after handling the error.
            Movement::record(tx, ids[0], 3).await?;
            Ok::<_, Error>(())
        })
        .await?;
    let amounts: Vec<i64> = Movement::all(&db).await?.into_iter().map(|m| m.amount).collect();
    assert_eq!(amounts, [1, 3], "the savepoint's work is undone, the rest commits");
    assert_no_open_transactions(&db).await;
    Ok(())
}

async fn a_swallowed_statement_failure(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_swallowed");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let outcome = ConnectionManager::using(&name)
        .transaction(async |tx| {
            Movement::record(tx, ids[0], 5).await?;
            let duplicate = Account::create(
                tx,
                Account {
                    id: None,
                    owner: "ann".into(),
                    balance: 0,
                },
            )
            .await;
            assert!(duplicate.is_err());
            Ok::<_, Error>(())
        })
        .await;
    match backend {
        // PostgreSQL answers COMMIT of an aborted transaction by rolling back: that must not look
        // like success.
        Backend::Postgres => {
            assert!(matches!(outcome, Err(Error::Aborted { .. })), "{outcome:?}");
            assert_eq!(Movement::count(&db).await?, 0);
        }
        // SQLite and MySQL undo only the failed statement.
        Backend::Sqlite | Backend::MySql => {
            outcome?;
            assert_eq!(Movement::count(&db).await?, 1);
        }
    }
    assert_no_open_transactions(&db).await;
    Ok(())
}

async fn read_only_scopes_refuse_writes(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_read_only");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let read = ConnectionManager::using(&name)
        .read_only()
        .transaction(async |tx| Account::find(tx, ids[0]).await)
        .await?;
    assert_eq!(read.balance, 100);
    let write = ConnectionManager::using(&name)
        .read_only()
        .transaction(async |tx| Movement::record(tx, ids[0], 1).await)
        .await;
    assert!(write.is_err(), "a read-only scope refuses writes");
    assert_eq!(Movement::count(&db).await?, 0);
    // The connection is writable again for the next user.
    Movement::record(&db, ids[0], 1).await?;
    assert_no_open_transactions(&db).await;
    Ok(())
}

async fn isolation_is_applied(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_isolation");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let level = ConnectionManager::using(&name)
        .isolation(Isolation::Serializable)
        .transaction(async |tx| {
            // InnoDB lists a transaction only once it has touched data.
            Movement::record(tx, ids[0], 1).await?;
            match backend {
                Backend::Postgres => fetch_column::<String, _>(tx, "SHOW transaction_isolation").await,
                Backend::MySql => {
                    fetch_column::<String, _>(
                        tx,
                        "SELECT trx_isolation_level FROM information_schema.INNODB_TRX \
                         WHERE trx_mysql_thread_id = CONNECTION_ID()",
                    )
                    .await
                }
                // SQLite is always serializable.
                Backend::Sqlite => Ok(vec!["serializable".to_owned()]),
            }
        })
        .await?;
    assert_eq!(level.first().map(|l| l.to_lowercase()), Some("serializable".to_owned()));
    assert_no_open_transactions(&db).await;
    Ok(())
}

async fn timeouts_roll_back(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_timeout");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let err = ConnectionManager::using(&name)
        .timeout(Duration::from_millis(200))
        .transaction(async |tx| {
            Movement::record(tx, ids[0], 1).await?;
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(Movement::count(&db).await?, 0);
    assert_no_open_transactions(&db).await;
    Ok(())
}

async fn calls_without_a_handle_use_the_scope(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_ambient");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let using = ConnectionManager::using(&name);
    using
        .clone()
        .transaction(async |_tx| {
            let mut ann = Account::find(&Ambient, ids[0]).await?;
            ann.balance = 55;
            ann.save(&Ambient).await?;
            assert_eq!(
                Account::find(&using, ids[0]).await?.balance,
                55,
                "`using` sees the scope's write"
            );
            assert_eq!(balance(&db, ids[0]).await, 100, "the pool, outside the scope, does not");
            Ok::<_, Error>(())
        })
        .await?;
    assert_eq!(balance(&db, ids[0]).await, 55);
    // Outside any scope, a model that names no database has nowhere to go.
    assert!(matches!(Account::count(&Ambient).await, Err(Error::NoConnectionChosen)));
    assert_eq!(Account::count(&using).await?, 1, "`using` outside a scope is the pool");
    Ok(())
}

async fn hooks_run_once_after_the_outcome(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_hooks");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let events = Arc::new(std::sync::Mutex::new(Vec::<&'static str>::new()));
    let log = |event: &'static str| {
        let events = events.clone();
        move || events.lock().unwrap().push(event)
    };
    ConnectionManager::using(&name)
        .transaction(async |tx| {
            tx.after_commit(log("outer committed"));
            tx.after_rollback(log("outer rolled back"));
            let _ = ConnectionManager::using(&name)
                .transaction(async |tx| {
                    tx.after_commit(log("discarded with its savepoint"));
                    Err::<(), _>(Error::rejected("inner fails"))
                })
                .await;
            ConnectionManager::using(&name)
                .transaction(async |tx| {
                    tx.after_commit(log("inner committed"));
                    Ok::<_, Error>(())
                })
                .await?;
            assert!(
                events.lock().unwrap().is_empty(),
                "no hook runs before the outermost scope ends"
            );
            Movement::record(tx, ids[0], 1).await
        })
        .await?;
    assert_eq!(*events.lock().unwrap(), ["outer committed", "inner committed"]);

    events.lock().unwrap().clear();
    let _ = ConnectionManager::using(&name)
        .transaction(async |tx| {
            tx.after_commit(log("never"));
            tx.after_rollback(log("rolled back"));
            Err::<(), _>(Error::rejected("no"))
        })
        .await;
    assert_eq!(*events.lock().unwrap(), ["rolled back"]);
    assert_no_open_transactions(&db).await;
    Ok(())
}

async fn scopes_run_inside_spawned_tasks(backend: Backend) -> Result<()> {
    let name = name(backend, "scope_spawn");
    let (db, ids) = bank(backend, &name, &["ann"]).await;
    let id = ids[0];
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let name = name.clone();
            tokio::spawn(async move {
                ConnectionManager::using(&name)
                    .transaction(async |tx| {
                        Movement::record(tx, id, 1).await?;
                        // Work spawned from inside a scope does not run in it.
                        let outside =
                            tokio::spawn(async move { Movement::count(&ConnectionManager::using(&name)).await });
                        let _ = outside.await.unwrap();
                        Ok::<_, Error>(())
                    })
                    .await
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap()?;
    }
    assert_eq!(Movement::query().filter(col("account_id").eq(id)).count(&db).await?, 4);
    assert_no_open_transactions(&db).await;
    Ok(())
}

/// SQLite has one writer per file: a `requires_new` write scope inside a write scope on the same
/// file would wait on its own task until `busy_timeout`. It is refused at once, also when it names
/// the file through another connection; a read-only one may run, since readers do not wait for
/// the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_requires_new_on_the_written_file_is_refused_at_once() {
    let name = name(Backend::Sqlite, "scope_sqlite_writer");
    let (db, ids) = bank(Backend::Sqlite, &name, &["ann"]).await;
    let alias = format!("{name}_alias");
    ConnectionManager::configure(&alias, db.url().expose()).await.unwrap();
    let other = format!("{name}_other");
    bank(Backend::Sqlite, &other, &["bob"]).await;
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        ConnectionManager::using(&name).transaction(async |tx| {
            Movement::record(tx, ids[0], -5).await?;
            for inner in [&name, &alias] {
                let err = ConnectionManager::using(inner)
                    .requires_new()
                    .transaction(async |tx| Movement::record(tx, ids[0], 1).await)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(&err, Error::SqliteWriterBusy { connection, holder } if connection == inner && *holder == name),
                    "{err:?}"
                );
                assert!(err.to_string().contains("one writer"), "{err}");
            }
            // A unit of its own on another file, in which a scope on the written file would join.
            let joined = ConnectionManager::using(&other)
                .requires_new()
                .transaction(async |_| {
                    ConnectionManager::using(&name)
                        .transaction(async |tx| Movement::record(tx, ids[0], 1).await)
                        .await
                })
                .await
                .unwrap_err();
            assert!(matches!(joined, Error::SqliteWriterBusy { .. }), "{joined:?}");
            let seen = ConnectionManager::using(&alias)
                .requires_new()
                .read_only()
                .transaction(async |tx| Movement::count(tx).await)
                .await?;
            assert_eq!(seen, 0, "the independent reader sees only committed rows");
            Ok::<_, Error>(())
        }),
    )
    .await
    .expect("refused at once, not after busy_timeout");
    outcome.unwrap();
    assert_eq!(
        Movement::count(&db).await.unwrap(),
        1,
        "the enclosing scope still committed"
    );
    assert_no_open_transactions(&db).await;
}

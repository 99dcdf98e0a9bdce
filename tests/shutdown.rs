//! `ConnectionManager::shutdown` in a process of its own (it closes every connection of the
//! process, which the shared integration suite could not survive): a unit of work whose caller
//! stopped waiting during its final commits is finished before shutdown returns, with its hook.

use activerecord::Backend;
use activerecord::{ConnectionManager, Error};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use testkit::{Fault, Proxy, Trigger};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_unit_finishing_in_the_background() {
    testkit::init_logging();
    let mut proxies = Vec::new();
    for name in ["shutdown_one", "shutdown_two"] {
        let url = testkit::fresh_database(Backend::Postgres).await;
        let direct = ConnectionManager::configure(&format!("{name}_direct"), url.as_str())
            .await
            .unwrap();
        direct
            .execute("CREATE TABLE moves (amount BIGINT NOT NULL)")
            .await
            .unwrap();
        activerecord::migrate::run(&direct).await.unwrap();
        let proxy = Proxy::for_url(&url).await;
        ConnectionManager::configure(name, proxy.url_for(&url)).await.unwrap();
        proxies.push((proxy, direct));
    }
    // The second database's COMMIT answer is lost; finding out what happened needs its session
    // ended, and that answer is held: the unit is then finishing in the background with no
    // pooled connection in use (so closing the pools alone would not wait for it).
    proxies[1]
        .0
        .arm(Trigger::statement("COMMIT"), Fault::DropAnswerAndClose);
    let held = proxies[1]
        .0
        .arm(Trigger::contains("pg_terminate_backend"), Fault::HoldAnswer);
    let committed = Arc::new(AtomicBool::new(false));
    let flag = committed.clone();
    let unit = ConnectionManager::using("shutdown_one").transaction(async move |tx| {
        tx.after_commit(move || flag.store(true, Ordering::SeqCst));
        tx.execute("INSERT INTO moves VALUES (-10)").await?;
        ConnectionManager::using("shutdown_two")
            .transaction(async |tx| tx.execute("INSERT INTO moves VALUES (10)").await)
            .await?;
        Ok::<_, Error>(())
    });
    tokio::select! {
        done = unit => panic!("the unit ended while its outcome was being found out: {done:?}"),
        () = held.wait_fired() => {} // the caller stops waiting here
    }
    let counts = |db: activerecord::Database| async move {
        activerecord::fetch_column::<i64, _>(&db, "SELECT COUNT(*) FROM moves")
            .await
            .unwrap()[0]
    };
    let (one, two) = (proxies[0].1.clone(), proxies[1].1.clone());
    let release = {
        let proxy = proxies.remove(1).0;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            proxy.release();
            proxy
        })
    };
    assert!(!committed.load(Ordering::SeqCst), "not known yet");
    ConnectionManager::shutdown().await.unwrap();
    assert!(
        committed.load(Ordering::SeqCst),
        "shutdown returned after the unit finished, hook included"
    );
    assert!(ConnectionManager::names().is_empty(), "and closed every connection");
    drop(release.await.unwrap());
    // The handles were closed by shutdown: look with fresh ones.
    for db in [one, two] {
        let fresh = ConnectionManager::configure("shutdown_check", db.url().expose())
            .await
            .unwrap();
        assert_eq!(counts(fresh).await, 1, "{}: committed", db.name());
    }
}

//! A process for the two-phase crash tests, to be killed at an exact point.
//!
//! `two_phase_child transfer FIRST_URL SECOND_URL LOG_FILE COORDINATOR STEP` moves 10 from account 1
//! of the first database to account 1 of the second in a two-phase scope, recording a movement on
//! each side. After STEP (`prepared`: every branch to prepare is prepared; `decided`: the decision
//! is durable, which with a commit point site is right after the site's commit; or `none`) it prints `STOPPED` and waits to be killed.
//!
//! With `MARKERS=1` the marker tables are created first (`migrate::run` on both databases), so
//! that a participant can be the unit's commit point site (a SQLite one always is); without it,
//! the decision goes to the log. With `READER_URL=url`, the transfer also reads account 1 of that
//! database, a participant that only reads. `GRACE_SECONDS=N` sets the coordinator's grace period
//! (default 300).
//!
//! `two_phase_child recover FIRST_URL SECOND_URL LOG_FILE COORDINATOR GRACE_SECONDS` runs recovery
//! and prints one line: `committed=N rolled_back=N in_flight=N finished=N errors=N`.

use activerecord::two_phase::{Coordinator, CoordinatorConfig};
use activerecord::{ConnectionManager, Event, EventKind, Model, Observer, Result};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use testkit::bank::Account;

/// Stops the process (prints `STOPPED` and waits to be killed) right after a step of the transfer.
struct StopAfter {
    step: String,
    /// How many branches the transfer prepares.
    to_prepare: usize,
    prepared: AtomicUsize,
}

impl Observer for StopAfter {
    async fn on_event(&self, event: &Event) -> Result<()> {
        let stop = match (&event.kind, self.step.as_str()) {
            (EventKind::Prepared { .. }, "prepared") => {
                self.prepared.fetch_add(1, Ordering::SeqCst) + 1 == self.to_prepare
            }
            (EventKind::DecisionDurable { .. }, "decided") => true,
            _ => false,
        };
        if stop {
            println!("STOPPED");
            let _ = std::io::stdout().flush();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, first, second, log, name, last] = args.as_slice() else {
        panic!("usage: two_phase_child transfer|recover FIRST_URL SECOND_URL LOG_FILE COORDINATOR STEP|GRACE_SECONDS");
    };
    let databases = [
        ConnectionManager::configure("first", first.as_str()).await?,
        ConnectionManager::configure("second", second.as_str()).await?,
    ];
    let markers = std::env::var("MARKERS").is_ok_and(|v| v == "1");
    if markers {
        for database in &databases {
            activerecord::migrate::run(database).await?;
        }
    }
    let reader = match std::env::var("READER_URL") {
        Ok(url) => Some(ConnectionManager::configure("reader", url.as_str()).await?),
        Err(_) => None,
    };
    let config = CoordinatorConfig::new(name.as_str()).log_in_file(log);
    match mode.as_str() {
        "transfer" => {
            ConnectionManager::observe(Arc::new(StopAfter {
                step: last.clone(),
                // With a commit point site, it is not prepared.
                to_prepare: if markers { 1 } else { 2 },
                prepared: AtomicUsize::new(0),
            }));
            let grace = std::env::var("GRACE_SECONDS").map_or(300, |g| g.parse().expect("GRACE_SECONDS is a number"));
            let config = config.grace_period(Duration::from_secs(grace));
            Coordinator::install(config.recover_at_start(false)).await?;
            ConnectionManager::using("first")
                .two_phase()
                .transaction(async |tx| {
                    if reader.is_some() {
                        ConnectionManager::using("reader")
                            .transaction(async |tx| Account::find(tx, 1).await)
                            .await?;
                    }
                    testkit::bank::transfer_in(tx, 1, ("second", 1), 10).await
                })
                .await?;
            println!("COMMITTED");
        }
        "recover" => {
            let grace: u64 = last.parse().expect("GRACE_SECONDS is a number");
            // Installing a coordinator recovers.
            let (_, report) = Coordinator::install(config.grace_period(Duration::from_secs(grace))).await?;
            println!(
                "committed={} rolled_back={} in_flight={} finished={} errors={}",
                report.committed.len(),
                report.rolled_back.len(),
                report.in_flight.len(),
                report.finished_decisions,
                report.errors.len()
            );
            for (what, branches) in [
                ("committed", &report.committed),
                ("rolled back", &report.rolled_back),
                ("in flight", &report.in_flight),
            ] {
                for branch in branches {
                    eprintln!("{what}: {branch}");
                }
            }
            for error in &report.errors {
                eprintln!("error: {error}");
            }
        }
        other => panic!("unknown mode {other}"),
    }
    Ok(())
}

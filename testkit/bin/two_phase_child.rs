//! A process for the two-phase crash tests, to be killed at an exact point.
//!
//! `two_phase_child transfer FIRST_URL SECOND_URL LOG_FILE COORDINATOR STEP` moves 10 from account 1
//! of the first database to account 1 of the second in a two-phase scope, recording a movement on
//! each side. After STEP (`prepared`, `decided`, `first_commit`, or `none`) it prints `STOPPED` and
//! waits to be killed.
//!
//! `two_phase_child recover FIRST_URL SECOND_URL LOG_FILE COORDINATOR GRACE_SECONDS` runs recovery
//! and prints one line: `committed=N rolled_back=N in_flight=N finished=N errors=N`.

use activerecord::two_phase::{Coordinator, CoordinatorConfig, Step};
use activerecord::{ConnectionManager, Result};
use std::io::Write;
use std::time::Duration;

fn stops_at(step: &Step, wanted: &str) -> bool {
    matches!(
        (step, wanted),
        (Step::Prepared { .. }, "prepared")
            | (Step::DecisionLogged { .. }, "decided")
            | (Step::BranchCommitted { .. }, "first_commit")
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, first, second, log, name, last] = args.as_slice() else {
        panic!("usage: two_phase_child transfer|recover FIRST_URL SECOND_URL LOG_FILE COORDINATOR STEP|GRACE_SECONDS");
    };
    ConnectionManager::configure("first", first.as_str()).await?;
    ConnectionManager::configure("second", second.as_str()).await?;
    let config = CoordinatorConfig::new(name.as_str()).log_in_file(log);
    match mode.as_str() {
        "transfer" => {
            let wanted = last.clone();
            let config = config.recover_at_start(false).on_step(move |step| {
                if stops_at(step, &wanted) {
                    println!("STOPPED");
                    let _ = std::io::stdout().flush();
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
            });
            Coordinator::install(config).await?;
            testkit::bank::transfer(("first", 1), ("second", 1), 10, true).await?;
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
            for error in &report.errors {
                eprintln!("{error}");
            }
        }
        other => panic!("unknown mode {other}"),
    }
    Ok(())
}

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
use activerecord::{ActiveRecord, ConnectionManager, Error, Model, Result};
use std::io::Write;
use std::time::Duration;

#[derive(ActiveRecord, Debug)]
#[activerecord(table = "accounts")]
struct Account {
    id: Option<i64>,
    owner: String,
    balance: i64,
}

#[derive(ActiveRecord, Debug)]
#[activerecord(table = "movements")]
struct Movement {
    id: Option<i64>,
    account_id: i64,
    amount: i64,
}

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
            ConnectionManager::using("first")
                .two_phase()
                .transaction(async |tx| {
                    let mut payer = Account::find_for_update(tx, 1).await?;
                    payer.balance -= 10;
                    payer.save(tx).await?;
                    Movement::create(
                        tx,
                        Movement {
                            id: None,
                            account_id: 1,
                            amount: -10,
                        },
                    )
                    .await?;
                    ConnectionManager::using("second")
                        .transaction(async |tx| {
                            let mut payee = Account::find_for_update(tx, 1).await?;
                            payee.balance += 10;
                            payee.save(tx).await?;
                            Movement::create(
                                tx,
                                Movement {
                                    id: None,
                                    account_id: 1,
                                    amount: 10,
                                },
                            )
                            .await?;
                            Ok::<_, Error>(())
                        })
                        .await
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
            for error in &report.errors {
                eprintln!("{error}");
            }
        }
        other => panic!("unknown mode {other}"),
    }
    Ok(())
}

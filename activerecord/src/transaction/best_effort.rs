//! Best effort, the default [`CommitProtocol`]: the final commits run one database after another,
//! in the order the databases began, with no prepare.
//!
//! Guarantees (semantics.md, "Outcomes"): a `COMMIT` sent without an answer is resolved first
//! (its session ended, then its marker looked up, within a bound); resolved as committed, the
//! commits go on. When the first database did not commit, nothing was committed: the others are
//! rolled back and the plain error is returned. When a later one did not, the error is
//! [`Error::PartialCommit`], naming each database's outcome. When one stays unknown, the commits
//! stop there, the databases after it are rolled back, and the error is [`Error::OutcomeUnknown`]
//! with each database's outcome and the unit's id. A `tracing` error event records the same
//! facts: never silent, never a plain error, never a guess.

use super::unit::{Branch, Commit, CommitProtocol, Settled};
use crate::error::{DatabaseOutcome, Error};
use futures_util::future::BoxFuture;

/// Commits each database in turn. See the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BestEffort;

impl<B: Branch> CommitProtocol<B> for BestEffort {
    fn commit<'a>(&'a self, commit: &'a Commit<'a, B>) -> BoxFuture<'a, Settled> {
        let order: Vec<usize> = (0..commit.branches().len()).collect();
        Box::pin(async move { commit_in_turn(commit, &order).await })
    }
}

/// Commits the databases at `order` one after another, as the [module docs](self) say; the
/// databases before them, if any, committed nothing that a later failure could make partial (they
/// only read).
pub(crate) async fn commit_in_turn<B: Branch>(commit: &Commit<'_, B>, order: &[usize]) -> Settled {
    for (n, &i) in order.iter().enumerate() {
        let Err(failure) = commit.commit_one(i).await else {
            continue;
        };
        commit.rollback_each(&order[n + 1..]).await;
        let outcome = failure.outcome;
        if n == 0 && outcome == DatabaseOutcome::RolledBack {
            return Settled::RolledBack(failure.cause);
        }
        let report = commit.report_failure(i, failure);
        tracing::error!(
            unit = %report.unit,
            outcomes = ?report.outcomes,
            failed = %report.failed,
            cause = %report.cause,
            "{}",
            match outcome {
                DatabaseOutcome::Unknown => "outcome unknown: a COMMIT was sent and no answer came",
                _ => "partial commit: the databases of one unit of work disagree and need reconciliation",
            }
        );
        return match outcome {
            DatabaseOutcome::Unknown => Settled::Unknown(Error::OutcomeUnknown(Box::new(report))),
            _ => Settled::Mixed(Error::PartialCommit(Box::new(report))),
        };
    }
    Settled::Committed
}

//! Best effort, the default [`CommitProtocol`]: the final commits run one database after another,
//! in the order the databases began, with no prepare.
//!
//! Guarantees: when the first commit fails nothing was committed: the others are rolled back and
//! the plain error is returned. When a later commit fails, the error is
//! [`Error::PartialCommit`], naming what committed, what failed and what was rolled back, and a
//! `tracing` error event records the same facts: never silent, never a plain error.

use super::unit::{Branch, Commit, CommitProtocol, Settled};
use crate::error::{Error, PartialCommit};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Commits each database in turn. See the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BestEffort;

impl<B: Branch> CommitProtocol<B> for BestEffort {
    fn commit<'a>(&'a self, commit: &'a Commit<'a, B>) -> BoxFuture<'a, Settled> {
        Box::pin(async move {
            let branches = commit.branches();
            for (i, branch) in branches.iter().enumerate() {
                let Err(cause) = commit.commit_one(i).await else {
                    continue;
                };
                commit.rollback_from(i + 1).await;
                if i == 0 {
                    return Settled::RolledBack(cause);
                }
                let names = |bs: &[Arc<B>]| bs.iter().map(|b| b.name().to_owned()).collect();
                let partial = PartialCommit {
                    committed: names(&branches[..i]),
                    failed: branch.name().to_owned(),
                    rolled_back: names(&branches[i + 1..]),
                    cause,
                };
                tracing::error!(
                    unit = %commit.unit_id(),
                    committed = ?partial.committed,
                    failed = %partial.failed,
                    rolled_back = ?partial.rolled_back,
                    cause = %partial.cause,
                    "partial commit: the databases of one unit of work disagree and need reconciliation"
                );
                return Settled::Mixed(Error::PartialCommit(Box::new(partial)));
            }
            Settled::Committed
        })
    }
}

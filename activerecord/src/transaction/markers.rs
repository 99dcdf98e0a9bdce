//! Commit markers as the caller reaches them: finding out later what an unknown outcome was, and
//! removing old markers.
//!
//! A unit of work that wrote on a database leaves one row in its `activerecord_markers` table, in
//! the same round trip as its `COMMIT` (see `docs/transactions.md`, "Outcomes"). Guarantees: an
//! outcome is read from a marker only after the session that sent the `COMMIT` is gone, so "no
//! marker" means "rolled back", never "not yet".

use crate::ActiveRecord;
use crate::backend::validate_id;
use crate::connection::{ConnectionManager, Database};
use crate::error::{ConstraintKind, DatabaseOutcome, Error, PartialCommit, Result};
use crate::model::Model;
use crate::query::col;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long finding out an unknown outcome may take (ending the session, then the marker lookup)
/// before the outcome is reported as unknown.
pub(crate) const RESOLVE_WITHIN: Duration = Duration::from_secs(5);

/// Milliseconds since the Unix epoch, as the crate's tables store times (`created_ms`).
pub(crate) fn now_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Whether the `COMMIT` of unit `unit` (a checked id), sent by server session `session` of
/// `database`, took effect: ends the session, waits until the server no longer has it, then looks
/// for the unit's marker, within [`RESOLVE_WITHIN`]. Unknown (and logged) when that fails.
pub(crate) async fn outcome_from_marker(database: &Database, session: u64, unit: &str) -> DatabaseOutcome {
    let found = tokio::time::timeout(RESOLVE_WITHIN, async {
        database.fence(session).await?;
        database.has_marker(unit).await
    })
    .await;
    match found {
        Ok(Ok(true)) => DatabaseOutcome::Committed,
        Ok(Ok(false)) => DatabaseOutcome::RolledBack,
        Ok(Err(e)) => {
            tracing::warn!(unit, connection = database.name(), error = %e, "the outcome of a lost COMMIT answer could not be found out");
            DatabaseOutcome::Unknown
        }
        Err(_) => {
            tracing::warn!(unit, connection = database.name(), within = ?RESOLVE_WITHIN, "the outcome of a lost COMMIT answer could not be found out in time");
            DatabaseOutcome::Unknown
        }
    }
}

/// Whether unit `unit`'s marker is on `database` (a pooled connection reads it: no session is
/// fenced, so the caller must know that no `COMMIT` of the unit can still be on its way).
pub(crate) async fn marker_exists(database: &Database, unit: &str) -> Result<bool> {
    row_exists(database, unit, false).await
}

/// Whether recovery claimed unit `unit` as rolled back on `database` (see [`claim_abort`]).
pub(crate) async fn abort_claimed(database: &Database, unit: &str) -> Result<bool> {
    row_exists(database, unit, true).await
}

/// Whether unit `unit` has a row on `database`: its commit marker, or (`aborted`) an abort claim.
async fn row_exists(database: &Database, unit: &str, aborted: bool) -> Result<bool> {
    Marker::query()
        .filter(col("unit_id").eq(unit))
        .filter(col("aborted").eq(aborted))
        .exists(database)
        .await
}

/// Claims unit `unit` as rolled back on `database`, the commit point site of a two-phase unit
/// whose prepared branches recovery is about to roll back: inserts an abort claim under the
/// unit's id, so that the site's own commit, which inserts its marker under the same id, fails
/// on the key if it is still on its way. Returns whether the unit committed there instead (its
/// marker came first).
pub(crate) async fn claim_abort(database: &Database, unit: &str) -> Result<bool> {
    let claim = Marker {
        unit_id: unit.to_owned(),
        created_ms: now_ms(),
        aborted: true,
    };
    insert_claim(database, claim, marker_exists(database, unit)).await
}

/// Inserts `claim`, a row keyed by a unit's id that says it rolled back, on `database`. When the
/// key is taken, `committed` says by what: the unit's own commit (true) or another claim. Returns
/// whether the unit committed.
pub(crate) async fn insert_claim<M: Model>(
    database: &Database,
    mut claim: M,
    committed: impl Future<Output = Result<bool>>,
) -> Result<bool> {
    match claim.insert(database).await {
        Ok(()) => Ok(false),
        Err(Error::ConstraintViolation {
            kind: ConstraintKind::Unique,
            ..
        }) => committed.await,
        Err(e) => Err(e),
    }
}

/// Removes the rows of `M` (one of the crate's tables with a `created_ms` column) older than
/// `older_than` from the connection `name`, and returns how many.
pub(crate) async fn prune_older<M: Model>(name: &str, older_than: Duration) -> Result<u64> {
    let database = ConnectionManager::get(name)?;
    let cutoff = now_ms().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
    M::query()
        .filter(col("created_ms").lt(cutoff))
        .delete_all(&database)
        .await
}

/// One commit marker.
#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "activerecord_markers")]
struct Marker {
    #[activerecord(primary_key)]
    unit_id: String,
    created_ms: i64,
    /// Set on recovery's abort claim; a commit marker leaves it unset.
    aborted: bool,
}

impl ConnectionManager {
    /// Finds out what became of the databases whose outcome `report` left unknown: ends the
    /// server session that sent each `COMMIT` (if it still lives), waits until it is gone, then
    /// looks for the unit's commit marker. Returns every database's outcome; a database that
    /// cannot be reached within 5 s stays [`DatabaseOutcome::Unknown`] (call again later), and so
    /// does one whose `COMMIT` carried no marker (its marker table did not exist then: see
    /// [`migrate::run`](crate::migrate::run)).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, DatabaseOutcome, Error};
    ///
    /// let transfer = ConnectionManager::using("bank_db_1").transaction(async |_tx| Ok::<_, Error>(())).await;
    /// if let Err(Error::OutcomeUnknown(report)) = transfer {
    ///     for (connection, outcome) in ConnectionManager::resolve_outcomes(&report).await? {
    ///         println!("{connection}: {outcome}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn resolve_outcomes(report: &PartialCommit) -> Result<Vec<(String, DatabaseOutcome)>> {
        let unit = validate_id(&report.unit)?;
        let mut outcomes = report.outcomes.clone();
        for (connection, outcome) in &mut outcomes {
            if *outcome != DatabaseOutcome::Unknown {
                continue;
            }
            // Only a COMMIT that carried the marker can be resolved by looking for it.
            let Some(session) = report
                .sessions
                .iter()
                .find(|(name, _)| name == connection)
                .map(|(_, session)| *session)
            else {
                continue;
            };
            let database = ConnectionManager::get(connection)?;
            *outcome = outcome_from_marker(&database, session, unit).await;
        }
        Ok(outcomes)
    }

    /// Removes the commit markers older than `older_than` from the connection `name`, and returns
    /// how many. A marker is needed only until every unknown outcome of its unit is resolved: keep
    /// them longer than you could take to call [`resolve_outcomes`](Self::resolve_outcomes). Two-
    /// phase recovery's abort claims (see `docs/two_phase.md`, "Recovery") are removed by the same
    /// rule: keep them longer than a commit point site's `COMMIT` could be held up, and longer than
    /// a branch can stay prepared.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::ConnectionManager;
    /// use std::time::Duration;
    ///
    /// let db = ConnectionManager::configure("prune_doc", "sqlite::memory:").await?;
    /// activerecord::migrate::run(&db).await?;
    /// let removed = ConnectionManager::prune_markers("prune_doc", Duration::from_secs(7 * 24 * 3600)).await?;
    /// assert_eq!(removed, 0);
    /// # Ok(()) }
    /// ```
    pub async fn prune_markers(name: &str, older_than: Duration) -> Result<u64> {
        prune_older::<Marker>(name, older_than).await
    }
}

//! Commit markers as the caller reaches them: finding out later what an unknown outcome was, and
//! removing old markers.
//!
//! A unit of work that wrote on a database leaves one row in its `activerecord_markers` table, in
//! the same round trip as its `COMMIT` (see `docs/transactions.md`, "Outcomes"). Guarantees: an
//! outcome is read from a marker only after the session that sent the `COMMIT` is gone, so "no
//! marker" means "rolled back", never "not yet".

use super::participant::RESOLVE_WITHIN;
use crate::ActiveRecord;
use crate::backend::validate_id;
use crate::connection::ConnectionManager;
use crate::error::{DatabaseOutcome, PartialCommit, Result};
use crate::model::Model;
use crate::query::col;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One commit marker.
#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "activerecord_markers")]
struct Marker {
    #[activerecord(primary_key)]
    unit_id: String,
    created_ms: i64,
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
            let found = tokio::time::timeout(RESOLVE_WITHIN, async {
                database.fence(session).await?;
                database.has_marker(unit).await
            })
            .await;
            match found {
                Ok(Ok(true)) => *outcome = DatabaseOutcome::Committed,
                Ok(Ok(false)) => *outcome = DatabaseOutcome::RolledBack,
                Ok(Err(e)) => {
                    tracing::warn!(unit, connection = %connection, error = %e, "the outcome is still unknown")
                }
                Err(_) => {
                    tracing::warn!(unit, connection = %connection, "the outcome is still unknown: the database did not answer in time")
                }
            }
        }
        Ok(outcomes)
    }

    /// Removes the commit markers older than `older_than` from the connection `name`, and returns
    /// how many. A marker is needed only until every unknown outcome of its unit is resolved: keep
    /// them longer than you could take to call [`resolve_outcomes`](Self::resolve_outcomes).
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
        let database = ConnectionManager::get(name)?;
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Marker::query()
            .filter(col("created_ms").lt(i64::try_from(cutoff).unwrap_or(i64::MAX)))
            .delete_all(&database)
            .await
    }
}

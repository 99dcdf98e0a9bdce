//! Idempotency keys: `using(..).idempotent(key, &request).transaction(..)` runs a unit of work at
//! most once per key.
//!
//! The key is claimed by inserting its row (key, a SHA-256 fingerprint of the request, no result
//! yet) in the unit's own transaction, on the outermost scope's database, before the body runs;
//! the body's serialized result is stored in the same transaction. So:
//! - a second call after the first committed finds the row and returns the stored result without
//!   running the body;
//! - a concurrent second call's insert waits for the first's transaction (the database holds the
//!   uncommitted key): when the first commits it returns the first's result; when the first rolls
//!   back, it claims the key and runs the body itself;
//! - the same key with another request is [`Error::IdempotencyConflict`];
//! - a unit that fails stores nothing: its key is free again.
//!
//! The table comes from [`migrate::run`](crate::migrate::run); old keys go with
//! [`ConnectionManager::prune_idempotency_keys`].

use super::markers::{now_ms, prune_older};
use super::{Tx, Using};
use crate::ActiveRecord;
use crate::connection::ConnectionManager;
use crate::error::{ConstraintKind, Error, Result};
use crate::model::Model;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The longest key the table takes.
const MAX_KEY_LEN: usize = 128;

/// One claimed key.
#[derive(ActiveRecord, Debug, Clone)]
#[activerecord(table = "activerecord_idempotency")]
struct IdempotencyRecord {
    #[activerecord(primary_key)]
    idempotency_key: String,
    fingerprint: String,
    result: Option<String>,
    created_ms: i64,
}

impl Using {
    /// Runs the scope's unit of work at most once for `key`. The key is claimed in the unit's own
    /// transaction, on the outermost scope's database, before the body runs, and the body's result
    /// is stored (as JSON) in the same transaction: a later call with the key returns that result
    /// without running the body; a concurrent one waits for the first and returns its result (or,
    /// if the first rolled back, runs the body itself); a failed call stores nothing. `request` is
    /// what the call was asked to do: its fingerprint tells a repeated call from a different one
    /// that reuses the key by mistake ([`Error::IdempotencyConflict`]). The outermost scope's
    /// database must have the crate's migrations applied
    /// ([`migrate::run`](crate::migrate::run)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, Error};
    ///
    /// let db = ConnectionManager::configure("idempotent_doc", "sqlite::memory:").await?;
    /// activerecord::migrate::run(&db).await?;
    /// db.execute("CREATE TABLE payments (amount INTEGER)").await?;
    /// for _ in 0..2 {
    ///     let receipt: String = ConnectionManager::using("idempotent_doc")
    ///         .idempotent("payment-7", &("alice", 30))
    ///         .transaction(async |tx| {
    ///             tx.execute("INSERT INTO payments VALUES (30)").await?;
    ///             Ok::<_, Error>("receipt-1".to_owned())
    ///         })
    ///         .await?;
    ///     assert_eq!(receipt, "receipt-1");
    /// }
    /// let paid: Vec<i64> = activerecord::fetch_column(&db, "SELECT COUNT(*) FROM payments").await?;
    /// assert_eq!(paid, [1], "paid once");
    /// # Ok(()) }
    /// ```
    pub fn idempotent(self, key: impl Into<String>, request: &impl Serialize) -> Idempotent {
        let fingerprint = serde_json::to_vec(request)
            .map(|json| Sha256::digest(&json).iter().map(|byte| format!("{byte:02x}")).collect())
            .map_err(|e| e.to_string());
        Idempotent {
            using: self,
            key: key.into(),
            fingerprint,
        }
    }
}

/// A scope run at most once per key: from [`Using::idempotent`].
#[derive(Debug)]
pub struct Idempotent {
    using: Using,
    key: String,
    /// The request's fingerprint, or why it could not be serialized.
    fingerprint: std::result::Result<String, String>,
}

/// How the key's claim ended.
enum Claimed {
    /// The key is ours: run the body.
    New,
    /// Another call stored this result.
    Done(String),
}

impl Idempotent {
    /// Runs `body` in a transaction scope, as [`Using::transaction`] does, unless a call with the
    /// same key has committed: then returns that call's result, stored as JSON.
    pub async fn transaction<F, T, E>(self, body: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
    {
        if self.key.is_empty() || self.key.len() > MAX_KEY_LEN {
            return Err(Error::InvalidId {
                id: self.key,
                reason: "an idempotency key has 1 to 128 bytes",
            }
            .into());
        }
        let fingerprint = self.fingerprint.map_err(|e| Error::Configuration {
            connection: self.using.name.clone(),
            message: format!(
                "the request of idempotency key {:?} cannot be serialized: {e}",
                self.key
            ),
            source: None,
        })?;
        let key = self.key;
        let name = self.using.name.clone();
        let stored = self
            .using
            .transaction(async |tx| {
                match claim(tx, &name, &key, &fingerprint).await? {
                    Claimed::Done(result) => return Ok(Err(result)),
                    Claimed::New => {}
                }
                let value = body(tx).await?;
                store(tx, &name, &key, &value).await?;
                Ok::<_, E>(Ok(value))
            })
            .await?;
        match stored {
            Ok(value) => Ok(value),
            Err(json) => serde_json::from_str(&json).map_err(|e| {
                Error::Configuration {
                    connection: name,
                    message: format!(
                        "the stored result of idempotency key {key:?} does not read as the type asked for: {e}"
                    ),
                    source: None,
                }
                .into()
            }),
        }
    }
}

/// Stores `value` as the result of `key`, in the transaction that claimed it.
async fn store(tx: &Tx, name: &str, key: &str, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_string(value).map_err(|e| Error::Configuration {
        connection: name.to_owned(),
        message: format!("the result of idempotency key {key:?} cannot be serialized: {e}"),
        source: None,
    })?;
    let mut record = IdempotencyRecord::find_for_update(tx, key.to_owned()).await?;
    record.result = Some(json);
    record.update(tx).await
}

/// Claims `key` in `tx`'s transaction, in a nested scope (a savepoint) so that a duplicate key
/// does not abort the transaction. A duplicate's insert waits for the transaction that holds the
/// key; once that committed, the key's row is read.
async fn claim(tx: &Tx, name: &str, key: &str, fingerprint: &str) -> Result<Claimed> {
    let record = IdempotencyRecord {
        idempotency_key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        result: None,
        created_ms: now_ms(),
    };
    let inserted = ConnectionManager::using(name)
        .transaction(async |tx| IdempotencyRecord::create(tx, record).await)
        .await;
    match inserted {
        Ok(_) => Ok(Claimed::New),
        Err(Error::ConstraintViolation {
            kind: ConstraintKind::Unique,
            ..
        }) => {
            let existing = IdempotencyRecord::find_for_update(tx, key.to_owned()).await?;
            if existing.fingerprint != fingerprint {
                return Err(Error::IdempotencyConflict { key: key.to_owned() });
            }
            let result = existing
                .result
                .ok_or_else(|| Error::IdempotencyConflict { key: key.to_owned() })?;
            Ok(Claimed::Done(result))
        }
        Err(e) => Err(e),
    }
}

impl ConnectionManager {
    /// Removes the idempotency keys older than `older_than` from the connection `name`, and
    /// returns how many: a call repeated after that runs its body again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::ConnectionManager;
    /// use std::time::Duration;
    ///
    /// let db = ConnectionManager::configure("prune_keys_doc", "sqlite::memory:").await?;
    /// activerecord::migrate::run(&db).await?;
    /// let removed = ConnectionManager::prune_idempotency_keys("prune_keys_doc", Duration::from_secs(86_400)).await?;
    /// assert_eq!(removed, 0);
    /// # Ok(()) }
    /// ```
    pub async fn prune_idempotency_keys(name: &str, older_than: Duration) -> Result<u64> {
        prune_older::<IdempotencyRecord>(name, older_than).await
    }
}

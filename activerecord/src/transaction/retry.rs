//! Retrying a unit of work, or any operation, on the errors that are safe to retry: a policy
//! (attempts, exponential backoff with jitter and a cap, from the `backon` crate) and the
//! classification ([`Transient`]).
//!
//! Guarantees: an error is retried only when nothing it reports was committed (a deadlock or
//! serialization failure, a lock wait given up, a connection lost before any `COMMIT` was sent or
//! whose `COMMIT` was found not to have taken effect, a busy pool): never a partial or unknown
//! outcome, which retrying could apply twice. The last error is returned as it was.

use super::{Tx, Using};
use crate::error::{Error, Result};
use backon::BackoffBuilder as _;
use std::future::Future;
use std::time::Duration;

/// How often and how patiently to retry: `attempts` runs in all, waiting between them with
/// exponential backoff (doubling from the first delay up to a cap) and jitter.
///
/// ```
/// use activerecord::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::new(5).backoff(Duration::from_millis(20), Duration::from_secs(1));
/// assert_eq!(policy.attempts(), 5);
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    attempts: u32,
    first_delay: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl RetryPolicy {
    /// Up to `attempts` runs in all (at least one), waiting 50 ms, then 100 ms, ... up to 2 s
    /// between them, each with random jitter.
    pub fn new(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts: attempts.max(1),
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            jitter: true,
        }
    }

    /// Waits `first` before the second run, doubling each time up to `cap`.
    #[must_use]
    pub fn backoff(mut self, first: Duration, cap: Duration) -> RetryPolicy {
        self.first_delay = first;
        self.max_delay = cap.max(first);
        self
    }

    /// Waits exactly the backoff's delays, without random jitter (two contenders that collided
    /// then tend to collide again: keep jitter unless you test).
    #[must_use]
    pub fn without_jitter(mut self) -> RetryPolicy {
        self.jitter = false;
        self
    }

    /// How many runs in all, at most.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delays between the runs of one use of the policy.
    fn delays(&self) -> backon::ExponentialBackoff {
        let builder = backon::ExponentialBuilder::new()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.attempts as usize - 1);
        let builder = if self.jitter { builder.with_jitter() } else { builder };
        builder.build()
    }
}

/// Whether an error is safe to retry: nothing it reports was committed, and another run may
/// succeed. Implemented for [`Error`] (see [`Error::is_transient`]); implement it for your own
/// error type to retry scopes that return it.
pub trait Transient {
    /// Whether retrying may succeed and cannot apply anything twice.
    fn is_transient(&self) -> bool;
}

impl Transient for Error {
    fn is_transient(&self) -> bool {
        Error::is_transient(self)
    }
}

/// Runs `operation` until it succeeds, fails with an error that is not [`Transient`], or has run
/// `policy.attempts()` times; returns its last result.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{Error, RetryPolicy, retry};
/// use std::time::Duration;
///
/// let mut runs = 0;
/// let policy = RetryPolicy::new(3).backoff(Duration::from_millis(1), Duration::from_millis(5));
/// let answer = retry(&policy, || {
///     runs += 1;
///     let busy = runs < 3;
///     async move {
///         if busy {
///             return Err(Error::PoolTimeout { connection: "db".into() }); // transient
///         }
///         Ok(42)
///     }
/// })
/// .await?;
/// assert_eq!((answer, runs), (42, 3));
/// # Ok(()) }
/// ```
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, mut operation: F) -> Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = policy.delays();
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(e) if e.is_transient() => {
                let Some(delay) = delays.next() else { return Err(e) };
                tracing::debug!(attempt, ?delay, error = %e, "retrying after a transient error");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

impl Using {
    /// Re-runs the whole scope (a new unit of work each time) when it fails with an error that is
    /// safe to retry ([`Transient`]), as `policy` says. The body may run several times: keep side
    /// effects outside the database in hooks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ConnectionManager, Error, RetryPolicy};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// ConnectionManager::configure("retry_doc", "sqlite::memory:").await?;
    /// let runs = AtomicU32::new(0);
    /// let done = ConnectionManager::using("retry_doc")
    ///     .retry(RetryPolicy::new(3))
    ///     .transaction(async |_tx| Ok::<_, Error>(runs.fetch_add(1, Ordering::SeqCst) + 1))
    ///     .await?;
    /// assert_eq!(done, 1);
    /// # Ok(()) }
    /// ```
    pub fn retry(self, policy: RetryPolicy) -> Retrying {
        Retrying { using: self, policy }
    }
}

/// A scope that is re-run on errors safe to retry: from [`Using::retry`].
#[derive(Debug)]
pub struct Retrying {
    using: Using,
    policy: RetryPolicy,
}

impl Retrying {
    /// Runs `body` in a transaction scope, as [`Using::transaction`] does, and runs it again in a
    /// new one while it fails with a [`Transient`] error and the policy allows.
    ///
    /// The body is cloned for each run (a closure that captures references and shared state such
    /// as atomics is `Clone`), which keeps the scope's future `Send` for `tokio::spawn`.
    pub async fn transaction<F, T, E>(self, body: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T, E> + Clone,
        E: From<Error> + Transient + std::fmt::Display,
    {
        retry(&self.policy, || self.using.clone().transaction(body.clone())).await
    }
}

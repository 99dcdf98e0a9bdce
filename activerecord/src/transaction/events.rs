//! Observer events: one [`Event`] for every step of every unit of work (begin, join, savepoint,
//! prepare, decision, commit, rollback, outcome), delivered to the [`Observer`]s registered with
//! [`ConnectionManager::observe`](crate::ConnectionManager::observe).
//!
//! Guarantees: events of one unit of work arrive in the order the steps happened, each once, and
//! carry the unit's [`UnitId`]. Observers are awaited. An observer that fails on
//! [`EventKind::Committing`], the event sent before the first final commit, fails the unit of work:
//! it rolls back and returns [`Error::Observer`] (a journal that cannot record a unit must be able
//! to stop it). A failure on any other event cannot undo what already happened: it is logged with
//! `tracing` and the unit goes on. With no observer registered an event costs nothing: it is not
//! even built.

use crate::connection::ConnectionManager;
use crate::context::context;
use crate::error::{Error, Result};
use futures_util::future::BoxFuture;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The id of one unit of work (an outermost scope and every database that joined it):
/// `<creation time in ms, hex>-<random, hex>`, ASCII letters and digits only.
///
/// ```
/// let id = activerecord::UnitId::new();
/// assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
/// assert_ne!(id, activerecord::UnitId::new());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnitId(Arc<str>);

impl UnitId {
    /// A new, unique id.
    #[allow(clippy::new_without_default)] // a default id would be a shared one: each call is new
    pub fn new() -> UnitId {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let random = uuid::Uuid::new_v4().as_u128() as u64;
        UnitId(Arc::from(format!("{created:x}-{random:016x}")))
    }

    /// The unit id `id`, made by a strategy that names its units (two-phase: the global
    /// transaction id); it must pass `backend::validate_id`, since markers write it as a literal.
    pub(crate) fn named(id: &str) -> UnitId {
        debug_assert!(crate::backend::validate_id(id).is_ok(), "{id}");
        UnitId(Arc::from(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One step of one unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The unit of work.
    pub unit: UnitId,
    /// What happened.
    pub kind: EventKind,
}

/// What happened in a unit of work. `connection` is the connection name of the database the
/// step concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The outermost scope opened its transaction.
    Begun {
        /// The outermost scope's connection.
        connection: String,
    },
    /// A scope on another database opened a transaction there and joined the unit.
    Joined {
        /// The joining connection.
        connection: String,
    },
    /// A joined database's scope failed and rolled its own transaction back; it left the unit.
    Left {
        /// The connection that left.
        connection: String,
    },
    /// A nested scope on a database already in the unit set a savepoint.
    Savepoint {
        /// The connection.
        connection: String,
    },
    /// A savepoint's scope returned `Ok`: its work stays.
    SavepointReleased {
        /// The connection.
        connection: String,
    },
    /// A savepoint's scope failed: its work was undone.
    SavepointRolledBack {
        /// The connection.
        connection: String,
    },
    /// The outermost scope returned `Ok`: the final commits are about to start. An observer
    /// that fails on this event rolls the unit back.
    Committing {
        /// Every database of the unit, in commit order.
        connections: Vec<String>,
    },
    /// A database's branch was prepared (two-phase).
    Prepared {
        /// The connection.
        connection: String,
    },
    /// The commit decision of a two-phase unit is durable: from now on every database commits.
    DecisionDurable {
        /// The global transaction id (the unit's id).
        gtrid: String,
        /// The commit point site whose one-phase commit, carrying the unit's marker, is the
        /// decision (its `Committed` event came just before); `None` when the decision is a row
        /// in the coordinator's log.
        site: Option<String>,
    },
    /// A database committed.
    Committed {
        /// The connection.
        connection: String,
    },
    /// A database rolled back.
    RolledBack {
        /// The connection.
        connection: String,
    },
    /// A database's `COMMIT` was sent and no answer came: it may have committed.
    OutcomeUnknown {
        /// The connection.
        connection: String,
    },
    /// Two-phase: a database's `COMMIT PREPARED` / `XA COMMIT` failed after the decision; its
    /// branch stays prepared and recovery commits it.
    Decided {
        /// The connection.
        connection: String,
    },
    /// The unit of work ended.
    Ended {
        /// How.
        outcome: UnitOutcome,
    },
}

/// How a unit of work ended, as its [`EventKind::Ended`] event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnitOutcome {
    /// Every database committed.
    Committed,
    /// Every database rolled back.
    RolledBack,
    /// The databases do not all agree, or not yet: a partial commit, or a two-phase unit whose
    /// decision is logged and whose remaining branches recovery will commit. The unit's error
    /// says which.
    Mixed,
    /// The outcome of at least one database is unknown (its `COMMIT` was sent and no answer came);
    /// the unit's error reports each database.
    Unknown,
}

/// Receives the [`Event`]s of every unit of work. Register one with
/// [`ConnectionManager::observe`](crate::ConnectionManager::observe).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{ConnectionManager, Event, EventKind, Observer};
/// use std::sync::{Arc, Mutex};
///
/// #[derive(Default)]
/// struct Recorder(Mutex<Vec<EventKind>>);
///
/// impl Observer for Recorder {
///     async fn on_event(&self, event: &Event) -> activerecord::Result<()> {
///         self.0.lock().unwrap().push(event.kind.clone());
///         Ok(())
///     }
/// }
///
/// let recorder = Arc::new(Recorder::default());
/// let id = ConnectionManager::observe(recorder.clone());
/// ConnectionManager::configure("observer_doc", "sqlite::memory:").await?;
/// ConnectionManager::using("observer_doc")
///     .transaction(async |_tx| Ok::<_, activerecord::Error>(()))
///     .await?;
/// ConnectionManager::unobserve(id); // units of work opened from now on are not delivered
/// let seen = recorder.0.lock().unwrap().clone();
/// assert!(seen.contains(&EventKind::Committed { connection: "observer_doc".into() }));
/// # Ok(()) }
/// ```
pub trait Observer: Send + Sync + 'static {
    /// Called for every event, in order, and awaited.
    fn on_event(&self, event: &Event) -> impl Future<Output = Result<()>> + Send;
}

/// Names a registered [`Observer`], to remove it with
/// [`ConnectionManager::unobserve`](crate::ConnectionManager::unobserve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObserverId(u64);

impl ConnectionManager {
    /// Registers `observer` for the events of every unit of work opened from now on in the
    /// process. See [`Observer`].
    pub fn observe(observer: Arc<impl Observer>) -> ObserverId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        context().update(|current: Option<&Observers>| current.cloned().unwrap_or_default().with(id, observer.clone()));
        ObserverId(id)
    }

    /// Removes an observer: units of work opened from now on are not delivered to it (those
    /// already open still are, to the end).
    pub fn unobserve(id: ObserverId) {
        context().update(|current: Option<&Observers>| current.cloned().unwrap_or_default().without(id.0));
    }
}

/// [`Observer`] in a form that can be stored as a trait object.
trait DynObserver: Send + Sync {
    fn on_event_boxed<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<()>>;
}

impl<O: Observer> DynObserver for O {
    fn on_event_boxed<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.on_event(event))
    }
}

/// The observers of the process, in registration order.
#[derive(Clone, Default)]
pub(crate) struct Observers(Vec<(u64, Arc<dyn DynObserver>)>);

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Observers({})", self.0.len())
    }
}

impl Observers {
    pub(crate) fn with(&self, id: u64, observer: Arc<impl Observer>) -> Observers {
        let mut all = self.0.clone();
        all.push((id, observer));
        Observers(all)
    }

    pub(crate) fn without(&self, id: u64) -> Observers {
        Observers(self.0.iter().filter(|(i, _)| *i != id).cloned().collect())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Delivers `event` to every observer; the first failure, after all have seen it.
    pub(crate) async fn deliver(&self, event: &Event) -> Result<()> {
        let mut first_error = None;
        for (_, observer) in &self.0 {
            if let Err(e) = observer.on_event_boxed(event).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Wraps an observer's failure on `event`.
pub(crate) fn observer_error(event: &Event, cause: Error) -> Error {
    Error::Observer {
        unit: event.unit.to_string(),
        source: Box::new(cause),
    }
}

//! Who waits for whom among this process's units of work, and the deadlock detector that breaks
//! the cycles no database can see: unit A holds a row on one database and waits on another for
//! unit B, which waits on the first for A. Each database sees one plain lock wait.
//!
//! What it owns: a [`UnitTag`] per unit of work (its age and whether it was chosen to give way),
//! the server sessions of the units that span several databases, their statements that are
//! running, the in-process write lock of each SQLite file ([`WriterLock`]), and one checker thread.
//! The checker wakes while such statements run; for those that have run longer than the
//! threshold it asks each database, on its control connection, which sessions they wait for
//! (PostgreSQL `pg_blocking_pids`, MariaDB's InnoDB lock waits), reads the SQLite waits from the
//! writer locks, builds the wait-for graph among this process's units, and for each cycle cancels
//! the waiting statement of the youngest unit in it.
//!
//! Guarantees: only a unit seen waiting in a cycle is chosen, and only the youngest of it; a
//! chosen unit is marked before its statement is cancelled, so that the statement's error (and
//! any later statement or commit of the unit) reports [`Error::Deadlock`](crate::Error::Deadlock)
//! and nothing of it commits. A statement of a unit over one database is never watched: its
//! database sees the whole of any deadlock it is in. Waits across processes are not seen: the
//! lock-wait limits are the backstop there.

use super::Database;
use crate::context::context;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedMutexGuard};

/// How long a statement waits before the detector looks at what it waits for, unless
/// [`set_threshold`] says otherwise.
pub(crate) const DEFAULT_THRESHOLD: Duration = Duration::from_millis(150);

/// What is logged when the detector's thread cannot start.
const NOT_STARTED: &str = "could not start the deadlock detector: only lock-wait limits end cross-database waits";

/// How long cancelling a statement may take before the detector gives up on it (the lock-wait
/// limit then ends the wait).
const CANCEL_WITHIN: Duration = Duration::from_secs(2);

/// A unit of work as the detector sees it, shared by all of its transactions.
#[derive(Debug)]
pub(crate) struct UnitTag {
    /// The order in which units began: a larger number is a younger unit.
    number: u64,
    /// Whether the unit spans several databases, so that its statements are watched.
    watched: AtomicBool,
    /// How long the cancelled statement had waited, in µs, once the unit was chosen to give way
    /// (0: not chosen).
    chosen_after_micros: AtomicU64,
    /// Whether the detector's cancel of the unit's statement may still be on its way to the server.
    cancelling: AtomicBool,
    /// Told when `cancelling` turns false.
    cancelled: Notify,
}

impl UnitTag {
    /// The tag of a unit of work that begins now.
    pub(crate) fn new() -> Arc<UnitTag> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(UnitTag {
            number: NEXT.fetch_add(1, Ordering::Relaxed),
            watched: AtomicBool::new(false),
            chosen_after_micros: AtomicU64::new(0),
            cancelling: AtomicBool::new(false),
            cancelled: Notify::new(),
        })
    }

    /// Marks the unit as spanning several databases: its statements are watched from now on.
    pub(crate) fn watch(&self) {
        self.watched.store(true, Ordering::SeqCst);
    }

    /// Whether the unit's statements are watched.
    pub(crate) fn is_watched(&self) -> bool {
        self.watched.load(Ordering::SeqCst)
    }

    /// How long its cancelled statement had waited, once the detector chose the unit to give way.
    pub(crate) fn chosen(&self) -> Option<Duration> {
        match self.chosen_after_micros.load(Ordering::SeqCst) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// Returns once no cancel of the detector's is on its way to the unit's sessions: a
    /// connection given back to the pool before then could have the next user's statement
    /// cancelled. Immediate unless the unit was chosen to give way.
    pub(crate) async fn cancel_settled(&self) {
        loop {
            let settled = self.cancelled.notified();
            if !self.cancelling.load(Ordering::SeqCst) {
                return;
            }
            settled.await;
        }
    }

    fn cancel_sent(&self) {
        self.cancelling.store(false, Ordering::SeqCst);
        self.cancelled.notify_waiters();
    }

    fn choose(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX).max(1);
        self.chosen_after_micros.store(micros, Ordering::SeqCst);
    }
}

/// Turns the detector on, looking at statements that have waited `threshold`, or off (`None`).
pub(crate) fn set_threshold(threshold: Option<Duration>) {
    let millis = threshold.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
    detector().threshold_millis.store(millis, Ordering::SeqCst);
}

/// The process's detector.
fn detector() -> Detector {
    let stored = match context().get::<Detector>() {
        Some(detector) => detector,
        None => {
            context().update(|current: Option<&Detector>| current.cloned().unwrap_or_default());
            context().get::<Detector>().expect("stored above")
        }
    };
    Detector::clone(&stored)
}

/// The detector's state, shared by its handles: see the [module docs](self).
#[derive(Clone)]
struct Detector {
    inner: Arc<DetectorInner>,
}

impl Default for Detector {
    fn default() -> Self {
        Detector {
            inner: Arc::new(DetectorInner {
                threshold_millis: AtomicU64::new(DEFAULT_THRESHOLD.as_millis() as u64),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                thread: OnceLock::new(),
            }),
        }
    }
}

impl std::ops::Deref for Detector {
    type Target = DetectorInner;
    fn deref(&self) -> &DetectorInner {
        &self.inner
    }
}

struct DetectorInner {
    /// 0 when detection is off.
    threshold_millis: AtomicU64,
    state: Mutex<State>,
    /// Wakes the checker when a watched statement starts and it sleeps.
    wake: Notify,
    /// The checker's thread, once started.
    thread: OnceLock<()>,
}

#[derive(Default)]
struct State {
    /// The unit holding each watched server session, by connection name and session id.
    holders: HashMap<(String, u64), Arc<UnitTag>>,
    /// The statements (and SQLite write-lock waits) of watched units that are running now.
    waits: HashMap<u64, Wait>,
    next_wait: u64,
    /// Whether the checker runs (or was woken to).
    checking: bool,
    /// The write lock of each SQLite file open in the process.
    writer_locks: HashMap<PathBuf, Weak<WriterLock>>,
}

struct Wait {
    unit: Arc<UnitTag>,
    since: Instant,
    on: WaitsOn,
    cancel: Arc<Notify>,
}

/// What a running statement may be waiting for.
#[derive(Clone)]
enum WaitsOn {
    /// A lock on a server database, as its session.
    Server { database: Database, session: u64 },
    /// The in-process write lock of a SQLite file.
    Writer(Arc<WriterLock>),
}

impl DetectorInner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn threshold(&self) -> Option<Duration> {
        match self.threshold_millis.load(Ordering::SeqCst) {
            0 => None,
            millis => Some(Duration::from_millis(millis)),
        }
    }
}

/// Records that the watched session `session` of `database` belongs to `unit`, until the
/// returned registration is dropped. `None` when detection is off.
pub(crate) fn hold(database: &Database, session: u64, unit: &Arc<UnitTag>) -> Option<Holding> {
    let detector = detector();
    detector.threshold()?;
    let key = (database.name().to_owned(), session);
    detector.state().holders.insert(key.clone(), unit.clone());
    Some(Holding {
        detector,
        key,
        unit: unit.clone(),
    })
}

/// A watched session's registration: dropped when its transaction ends.
pub(crate) struct Holding {
    detector: Detector,
    key: (String, u64),
    unit: Arc<UnitTag>,
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut state = self.detector.state();
        // The session may have gone back to the pool and been registered by another unit since.
        if state
            .holders
            .get(&self.key)
            .is_some_and(|holder| Arc::ptr_eq(holder, &self.unit))
        {
            state.holders.remove(&self.key);
        }
    }
}

/// Records that a statement of `unit` runs on session `session` of `database`, until the returned
/// registration is dropped. `None` when detection is off or the unit is not watched.
pub(crate) fn statement_runs(database: &Database, session: u64, unit: &Arc<UnitTag>) -> Option<Waiting> {
    waits_on(unit, || WaitsOn::Server {
        database: database.clone(),
        session,
    })
}

/// Registers a wait of `unit` on what `on` says, when the unit is watched and detection is on;
/// `on` is built only then, so that the statements of other units pay one atomic load.
fn waits_on(unit: &Arc<UnitTag>, on: impl FnOnce() -> WaitsOn) -> Option<Waiting> {
    if !unit.is_watched() {
        return None;
    }
    let detector = detector();
    detector.threshold()?;
    let cancel = Arc::new(Notify::new());
    let mut state = detector.state();
    let id = state.next_wait;
    state.next_wait += 1;
    state.waits.insert(
        id,
        Wait {
            unit: unit.clone(),
            since: Instant::now(),
            on: on(),
            cancel: cancel.clone(),
        },
    );
    let wake = !state.checking;
    state.checking = true;
    drop(state);
    if wake {
        detector.start();
        detector.wake.notify_one();
    }
    Some(Waiting { detector, id, cancel })
}

/// A running statement's (or write-lock wait's) registration: dropped when it ends.
pub(crate) struct Waiting {
    detector: Detector,
    id: u64,
    cancel: Arc<Notify>,
}

impl Waiting {
    /// Resolves when the detector chose this wait's unit to give way.
    async fn chosen(&self) {
        self.cancel.notified().await
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.detector.state().waits.remove(&self.id);
    }
}

/// The checker: runs while watched statements run, then sleeps until the next one starts.
async fn check(detector: &Detector) {
    loop {
        let Some(threshold) = detector.threshold() else {
            detector.state().checking = false;
            return;
        };
        tokio::time::sleep(threshold / 2).await;
        let long = {
            let mut state = detector.state();
            if state.waits.is_empty() {
                state.checking = false;
                return;
            }
            state
                .waits
                .iter()
                .filter(|(_, wait)| wait.since.elapsed() >= threshold && wait.unit.chosen().is_none())
                .map(|(id, wait)| (*id, wait.unit.clone(), wait.on.clone()))
                .collect::<Vec<_>>()
        };
        if long.is_empty() {
            continue;
        }
        let edges = wait_for_edges(detector, long, threshold).await;
        for victim in victims(&edges) {
            choose(detector, victim).await;
        }
    }
}

impl Detector {
    /// Starts the checker's thread, once per process. It has a runtime of its own, so that it
    /// works whichever runtime (or runtimes) the units of work run on, and goes on when one of
    /// them shuts down.
    fn start(&self) {
        self.thread.get_or_init(|| {
            let detector = self.clone();
            let started = std::thread::Builder::new()
                .name("activerecord-deadlocks".to_owned())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            tracing::error!(error = %e, "{NOT_STARTED}");
                            return;
                        }
                    };
                    runtime.block_on(async {
                        loop {
                            detector.wake.notified().await;
                            check(&detector).await;
                        }
                    })
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "{NOT_STARTED}");
            }
        });
    }
}

/// One edge of the wait-for graph: the wait `wait` of unit `waiter` is blocked by unit `holder`.
struct Edge {
    wait: u64,
    waiter: Arc<UnitTag>,
    holder: Arc<UnitTag>,
}

/// A long wait of a statement on a server database.
struct ServerWait {
    wait: u64,
    waiter: Arc<UnitTag>,
    database: Database,
    session: u64,
}

/// The edges among this process's units, for the long waits `long`.
async fn wait_for_edges(detector: &Detector, long: Vec<(u64, Arc<UnitTag>, WaitsOn)>, within: Duration) -> Vec<Edge> {
    let mut edges = Vec::new();
    let mut by_database: HashMap<String, Vec<ServerWait>> = HashMap::new();
    for (wait, waiter, on) in long {
        match on {
            WaitsOn::Writer(lock) => {
                if let Some(holder) = lock.holder()
                    && !Arc::ptr_eq(&holder, &waiter)
                {
                    edges.push(Edge { wait, waiter, holder });
                }
            }
            WaitsOn::Server { database, session } => {
                by_database
                    .entry(database.name().to_owned())
                    .or_default()
                    .push(ServerWait {
                        wait,
                        waiter,
                        database,
                        session,
                    })
            }
        }
    }
    for (name, waiting) in by_database {
        let database = &waiting[0].database;
        // A database that does not answer in time holds up no other's check.
        let pairs = match tokio::time::timeout(within, database.lock_waits()).await {
            Ok(Ok(pairs)) => pairs,
            Ok(Err(e)) => {
                tracing::debug!(connection = %name, error = %e, "could not read lock waits for deadlock detection");
                continue;
            }
            Err(_) => {
                tracing::debug!(connection = %name, "lock waits not read in time for deadlock detection");
                continue;
            }
        };
        let mut blockers: HashMap<u64, Vec<u64>> = HashMap::new();
        for (waiting, blocking) in pairs {
            blockers.entry(waiting).or_default().push(blocking);
        }
        let state = detector.state();
        let unit_of = |session: u64| state.holders.get(&(name.clone(), session));
        for wait in &waiting {
            for holder in holders_reached(wait.session, &blockers, &unit_of) {
                if !Arc::ptr_eq(holder, &wait.waiter) {
                    edges.push(Edge {
                        wait: wait.wait,
                        waiter: wait.waiter.clone(),
                        holder: holder.clone(),
                    });
                }
            }
        }
    }
    edges
}

/// The units whose sessions `session` waits for on one database: those it waits for directly,
/// and, through a session that is no watched unit's (a unit of work on one database, queued
/// ahead for the same row, say), the units that one waits for in turn.
fn holders_reached<'u>(
    session: u64,
    blockers: &HashMap<u64, Vec<u64>>,
    unit_of: &impl Fn(u64) -> Option<&'u Arc<UnitTag>>,
) -> Vec<&'u Arc<UnitTag>> {
    let mut reached = Vec::new();
    let mut seen = vec![session];
    let mut next = blockers.get(&session).cloned().unwrap_or_default();
    while let Some(blocking) = next.pop() {
        if seen.contains(&blocking) {
            continue;
        }
        seen.push(blocking);
        match unit_of(blocking) {
            Some(unit) => reached.push(unit),
            None => next.extend(blockers.get(&blocking).into_iter().flatten()),
        }
    }
    reached
}

/// For each cycle of the wait-for graph `edges`, the wait of its youngest unit that is part of
/// the cycle. A unit chosen leaves the graph before the next cycle is looked for.
fn victims(edges: &[Edge]) -> Vec<u64> {
    let mut removed: Vec<u64> = Vec::new();
    let mut chosen = Vec::new();
    while let Some(cycle) = find_cycle(edges, &removed) {
        let youngest = cycle
            .iter()
            .max_by_key(|edge| edge.waiter.number)
            .expect("a cycle has edges");
        chosen.push(youngest.wait);
        removed.push(youngest.waiter.number);
    }
    chosen
}

/// A cycle among `edges` whose units are not in `removed`, as the edges along it.
fn find_cycle<'e>(edges: &'e [Edge], removed: &[u64]) -> Option<Vec<&'e Edge>> {
    let live = |number: u64| !removed.contains(&number);
    let out = |number: u64| {
        edges
            .iter()
            .filter(move |edge| edge.waiter.number == number && live(edge.holder.number))
    };
    // Depth-first from every unit, following one path; the graph has a handful of nodes.
    for start in edges.iter().map(|edge| edge.waiter.number).filter(|n| live(*n)) {
        let mut path: Vec<&Edge> = Vec::new();
        let mut stack: Vec<Vec<&Edge>> = vec![out(start).collect()];
        while let Some(next) = stack.last_mut() {
            let Some(edge) = next.pop() else {
                stack.pop();
                path.pop();
                continue;
            };
            if let Some(at) = path.iter().position(|on| on.waiter.number == edge.holder.number) {
                let mut cycle = path[at..].to_vec();
                cycle.push(edge);
                return Some(cycle);
            }
            path.push(edge);
            stack.push(out(edge.holder.number).collect());
        }
    }
    None
}

/// Marks the unit of wait `wait` as chosen to give way, then cancels the waiting statement.
async fn choose(detector: &Detector, wait: u64) {
    let (on, cancel, unit, waited) = {
        let state = detector.state();
        // The statement may have ended meanwhile: then there is nothing to break.
        let Some(found) = state.waits.get(&wait).filter(|found| found.unit.chosen().is_none()) else {
            return;
        };
        let waited = found.since.elapsed();
        found.unit.choose(waited);
        if matches!(found.on, WaitsOn::Server { .. }) {
            found.unit.cancelling.store(true, Ordering::SeqCst);
        }
        (found.on.clone(), found.cancel.clone(), found.unit.clone(), waited)
    };
    match on {
        WaitsOn::Writer(_) => cancel.notify_one(),
        WaitsOn::Server { database, session } => {
            tracing::info!(
                connection = database.name(),
                session,
                unit = unit.number,
                ?waited,
                "deadlock across databases: cancelling the youngest unit's waiting statement"
            );
            let cancelled = tokio::time::timeout(CANCEL_WITHIN, database.cancel_statement(session)).await;
            if let Some(e) = cancelled.map_or_else(
                |_| Some("no answer in time".to_owned()),
                |done| done.err().map(|e| e.to_string()),
            ) {
                tracing::warn!(connection = database.name(), session, error = %e, "could not cancel a deadlocked statement: its lock-wait limit ends it");
            }
            unit.cancel_sent();
        }
    }
}

/// The in-process write lock of one SQLite file: write scopes of this process queue for it before
/// `BEGIN IMMEDIATE`, so that their wait can be bounded, cancelled by the detector, and seen by it
/// (SQLite's own busy wait can be neither seen nor interrupted).
#[derive(Default)]
pub(crate) struct WriterLock {
    lock: Arc<tokio::sync::Mutex<()>>,
    holder: Mutex<Option<Arc<UnitTag>>>,
}

/// Why a wait for a [`WriterLock`] ended without it.
pub(crate) enum WriterWait {
    /// The wait reached its limit.
    TimedOut,
    /// The detector chose the waiting unit to give way; it had waited this long.
    Chosen(Duration),
}

impl WriterLock {
    /// Waits at most `limit` for the lock, for `unit`; the detector sees the wait while `unit`
    /// spans several databases.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        unit: &Arc<UnitTag>,
        limit: Duration,
    ) -> Result<WriterGuard, WriterWait> {
        let guard = match self.lock.clone().try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                let waiting = waits_on(unit, || WaitsOn::Writer(self.clone()));
                let chosen = async {
                    match &waiting {
                        Some(waiting) => waiting.chosen().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    guard = self.lock.clone().lock_owned() => guard,
                    () = chosen => return Err(WriterWait::Chosen(unit.chosen().unwrap_or_default())),
                    () = tokio::time::sleep(limit) => return Err(WriterWait::TimedOut),
                }
            }
        };
        *self.holder_slot() = Some(unit.clone());
        Ok(WriterGuard {
            lock: self.clone(),
            _guard: guard,
        })
    }

    fn holder_slot(&self) -> MutexGuard<'_, Option<Arc<UnitTag>>> {
        self.holder.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn holder(&self) -> Option<Arc<UnitTag>> {
        self.holder_slot().clone()
    }
}

/// The write lock of SQLite file `file` (as [`Database::sqlite_file`] names it): one per file in
/// the process, however many connection names open it.
pub(crate) fn writer_lock(file: &Path) -> Arc<WriterLock> {
    let detector = detector();
    let mut state = detector.state();
    let locks = &mut state.writer_locks;
    locks.retain(|_, lock| lock.strong_count() > 0);
    if let Some(lock) = locks.get(file).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(WriterLock::default());
    locks.insert(file.to_owned(), Arc::downgrade(&lock));
    lock
}

/// A held [`WriterLock`]; dropping it lets the next write scope of the process begin.
pub(crate) struct WriterGuard {
    lock: Arc<WriterLock>,
    _guard: OwnedMutexGuard<()>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // Before the lock itself is released (fields drop after this).
        *self.lock.holder_slot() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(wait: u64, waiter: &Arc<UnitTag>, holder: &Arc<UnitTag>) -> Edge {
        Edge {
            wait,
            waiter: waiter.clone(),
            holder: holder.clone(),
        }
    }

    #[test]
    fn the_youngest_unit_of_a_cycle_gives_way() {
        let (a, b, c) = (UnitTag::new(), UnitTag::new(), UnitTag::new());
        assert_eq!(victims(&[edge(1, &a, &b), edge(2, &b, &a)]), [2]);
        assert_eq!(victims(&[edge(1, &a, &b), edge(2, &b, &c), edge(3, &c, &a)]), [3]);
    }

    #[test]
    fn waits_without_a_cycle_break_nothing() {
        let (a, b, c) = (UnitTag::new(), UnitTag::new(), UnitTag::new());
        assert!(victims(&[edge(1, &a, &b), edge(2, &b, &c)]).is_empty());
        assert!(victims(&[edge(1, &a, &c), edge(2, &b, &c)]).is_empty());
        assert!(victims(&[]).is_empty());
    }

    #[test]
    fn each_cycle_loses_one_unit() {
        let (a, b, c, d) = (UnitTag::new(), UnitTag::new(), UnitTag::new(), UnitTag::new());
        let edges = [edge(1, &a, &b), edge(2, &b, &a), edge(3, &c, &d), edge(4, &d, &c)];
        let mut chosen = victims(&edges);
        chosen.sort();
        assert_eq!(chosen, [2, 4]);
        // Two cycles through one unit: removing it breaks both.
        let edges = [edge(1, &a, &c), edge(2, &b, &c), edge(3, &c, &a), edge(4, &c, &b)];
        let chosen = victims(&edges);
        assert_eq!(chosen.len(), 1);
        assert!(chosen == [3] || chosen == [4]);
    }

    #[test]
    fn a_cycle_reached_from_outside_is_found() {
        let (a, b, c) = (UnitTag::new(), UnitTag::new(), UnitTag::new());
        // a waits for b, which is in a cycle with c; a is not in the cycle and keeps waiting.
        assert_eq!(victims(&[edge(1, &a, &b), edge(2, &b, &c), edge(3, &c, &b)]), [3]);
    }

    #[test]
    fn a_wait_behind_a_session_of_no_watched_unit_reaches_the_unit_that_one_waits_for() {
        let (a, b) = (UnitTag::new(), UnitTag::new());
        let units = HashMap::from([(10, a.clone()), (20, b.clone())]);
        let unit_of = |session: u64| units.get(&session);
        // Session 30 (a unit on one database) is queued ahead for the row; 10 holds it.
        let blockers = HashMap::from([(20, vec![30]), (30, vec![10]), (10, vec![20])]);
        let reached = holders_reached(20, &blockers, &unit_of);
        assert_eq!(reached.len(), 1);
        assert!(Arc::ptr_eq(reached[0], &a));
        // A session waiting for nobody known reaches nobody, and loops end.
        let blockers = HashMap::from([(20, vec![30]), (30, vec![40, 20])]);
        assert!(holders_reached(20, &blockers, &unit_of).is_empty());
    }
}

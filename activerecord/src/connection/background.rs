//! Work that must finish even when the future that started it is dropped: the final commits of a
//! unit of work whose caller stopped waiting, the ending of a session a dropped future abandoned.
//!
//! Guarantees: every such task is tracked, and [`settle`] returns once all of them (including
//! those spawned while it waits) have finished; `ConnectionManager::shutdown` awaits it.

use crate::context::context;
use std::future::Future;
use tokio_util::task::TaskTracker;

/// The tasks still running, process-wide.
#[derive(Clone, Default)]
struct Background(TaskTracker);

fn tracker() -> TaskTracker {
    if let Some(background) = context().get::<Background>() {
        return background.0.clone();
    }
    context().update(|current: Option<&Background>| current.cloned().unwrap_or_default());
    context().get::<Background>().expect("stored above").0.clone()
}

/// Runs `task` to its end on the current runtime, whatever becomes of the caller; `None` (the
/// task not run) without a runtime (a drop outside any).
pub(crate) fn spawn<T: Send + 'static>(
    task: impl Future<Output = T> + Send + 'static,
) -> Option<tokio::task::JoinHandle<T>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    Some(tracker().spawn_on(task, &runtime))
}

/// Waits until every background task has finished.
pub(crate) async fn settle() {
    let tracker = tracker();
    tracker.close();
    tracker.wait().await;
    tracker.reopen();
}

//! Work that must finish even when the future that started it is dropped: the final commits of a
//! unit of work whose caller stopped waiting, the ending of a session a dropped future abandoned.
//!
//! Guarantees: every such task is tracked, and [`settle`] returns once all of them (including
//! those spawned while it waits) have finished; `ConnectionManager::shutdown` awaits it.

use crate::context::context;
use futures_util::future::BoxFuture;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
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

/// Runs `task` in the caller's own task, with no hop to another one while the caller waits; if the
/// caller drops it before its end, the rest of `task` runs to its end in a background task
/// (tracked like [`spawn`]), which then hands the output to `detached`. Without a runtime at that
/// moment, the rest is dropped with it.
pub(crate) fn finish_even_if_dropped<T: Send + 'static>(
    task: impl Future<Output = T> + Send + 'static,
    detached: impl FnOnce(T) + Send + 'static,
) -> FinishEvenIfDropped<T> {
    FinishEvenIfDropped {
        task: Some(Box::pin(task)),
        detached: Some(Box::new(detached)),
    }
}

/// See [`finish_even_if_dropped`].
pub(crate) struct FinishEvenIfDropped<T: Send + 'static> {
    task: Option<BoxFuture<'static, T>>,
    detached: Option<Box<dyn FnOnce(T) + Send>>,
}

impl<T: Send + 'static> Future for FinishEvenIfDropped<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let task = self.task.as_mut().expect("polled after its end");
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.task = None;
                Poll::Ready(output)
            }
            // A task that panicked cannot be polled again: it is not handed on.
            Err(panic) => {
                self.task = None;
                std::panic::resume_unwind(panic)
            }
        }
    }
}

impl<T: Send + 'static> Drop for FinishEvenIfDropped<T> {
    fn drop(&mut self) {
        if let (Some(task), Some(detached)) = (self.task.take(), self.detached.take()) {
            // The boxed task moves, pinned where it is, with whatever it has in flight.
            spawn(async move { detached(task.await) });
        }
    }
}

/// Waits until every background task has finished.
pub(crate) async fn settle() {
    let tracker = tracker();
    tracker.close();
    tracker.wait().await;
    tracker.reopen();
}

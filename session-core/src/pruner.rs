//! A background task that purges expired sessions, for backends without native expiry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::SessionStore;

/// Handle to a running pruning task; [`Pruner::stop`] ends it cleanly.
///
/// Dropping the handle also stops the task (at its next tick), so a pruner never outlives
/// the code that started it by accident.
#[derive(Debug)]
pub struct Pruner {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Pruner {
    /// Calls `store.delete_expired()` every `interval` on the current tokio runtime.
    ///
    /// Failures are logged with `tracing` and retried at the next tick; they never stop
    /// the task.
    pub fn spawn(store: Arc<dyn SessionStore>, interval: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => prune_once(&*store).await,
                    _ = stopped.changed() => break,
                }
            }
        });
        Self { stop, task }
    }

    /// Stops the task and waits until it has finished its current purge, if any.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn prune_once(store: &dyn SessionStore) {
    match store.delete_expired().await {
        Ok(0) => {}
        Ok(removed) => tracing::debug!(removed, "pruned expired sessions"),
        Err(err) => tracing::warn!(error = %err, "pruning expired sessions failed; will retry"),
    }
}

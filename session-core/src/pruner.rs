//! A background task that purges expired sessions, for backends without native expiry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
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
    /// the task. A zero `interval` is an [`Error::Config`].
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn(store: Arc<dyn SessionStore>, interval: Duration) -> Result<Self> {
        if interval.is_zero() {
            return Err(Error::Config(
                "a pruning interval must be longer than zero (for example 5 minutes)".into(),
            ));
        }
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
        Ok(Self { stop, task })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nothing;

    #[tokio::test]
    async fn a_zero_interval_is_a_configuration_error() {
        let store: Arc<dyn SessionStore> = Arc::new(crate::HashedIds::new(Nothing));
        assert!(matches!(
            Pruner::spawn(store, Duration::ZERO),
            Err(Error::Config(_))
        ));
    }

    #[crate::async_trait]
    impl SessionStore for Nothing {
        async fn get(&self, _: &crate::SessionId) -> Result<Option<crate::Record>> {
            Ok(None)
        }
        async fn insert(&self, _: &mut crate::Record) -> Result<bool> {
            Ok(false)
        }
        async fn set(&self, _: &mut crate::Record) -> Result<()> {
            Ok(())
        }
        async fn update(&self, r: &mut crate::Record) -> Result<()> {
            Err(Error::Conflict { id: r.id().clone() })
        }
        async fn touch(&self, _: &crate::SessionId, _: time::OffsetDateTime) -> Result<bool> {
            Ok(false)
        }
        async fn destroy(&self, _: &crate::SessionId) -> Result<()> {
            Ok(())
        }
        async fn rename(
            &self,
            _: &crate::SessionId,
            _: &crate::SessionId,
        ) -> Result<crate::Rename> {
            Ok(crate::Rename::SourceMissing)
        }
        async fn delete_expired(&self) -> Result<u64> {
            Ok(0)
        }
        async fn list_by_owner(&self, _: &str) -> Result<Vec<crate::Record>> {
            Ok(Vec::new())
        }
        async fn destroy_by_owner(&self, _: &str) -> Result<u64> {
            Ok(0)
        }
        async fn count(&self) -> Result<u64> {
            Ok(0)
        }
    }
}

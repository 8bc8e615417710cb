//! Expiries reported by the backend, turned into [`SessionEvent::Expired`] and counted.

use session_core::{Expired, ExpiryFeed, Result, SessionStore, WatchOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::events::SessionEvent;
use crate::metrics;
use crate::store::InstrumentedStore;

/// The task that forwards a backend's expiries to an [`InstrumentedStore`]'s subscribers;
/// from [`InstrumentedStore::report_expiries`]. Dropping it stops the reporting.
#[derive(Debug)]
pub struct ExpiryReporter {
    task: JoinHandle<()>,
}

impl Drop for ExpiryReporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: SessionStore + ExpiryFeed> InstrumentedStore<S> {
    /// Starts reporting the inner store's expiries as [`SessionEvent::Expired`] to every
    /// subscriber, counted in [`metrics::EXPIRED`], until the returned reporter is dropped.
    /// Events never carry data: `options`' [`with_data`](WatchOptions::with_data) is
    /// ignored here (watch the inner store's [`ExpiryFeed`] directly for the records).
    ///
    /// On backends that purge (PostgreSQL, MongoDB, the SQL stores) this runs the purge
    /// every `options`' interval: don't also run a [`session_core::Pruner`] there, whose
    /// purges report nothing.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub async fn report_expiries(&self, options: WatchOptions) -> Result<ExpiryReporter> {
        let mut expired = self.inner().watch_expired(options.with_data(false)).await?;
        let events = self.event_sender();
        let system = self.system();
        let task = tokio::spawn(async move {
            while let Some(one) = expired.recv().await {
                forward(&events, system, one);
            }
        });
        Ok(ExpiryReporter { task })
    }
}

fn forward(events: &broadcast::Sender<SessionEvent>, system: &'static str, expired: Expired) {
    metrics::sessions(metrics::EXPIRED, system, 1);
    if events.receiver_count() > 0 {
        let _ = events.send(SessionEvent::Expired {
            id: expired.id,
            owner: expired.owner,
        });
    }
}

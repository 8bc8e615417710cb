//! The memory store's [`ExpiryFeed`]: moka's removal listener, reporting what it removed.

use std::sync::{Arc, Mutex, PoisonError};

use moka::notification::RemovalCause;
use session_core::{
    Expired, ExpiredSessions, ExpiryFeed, ExpirySink, Result, SessionId, WatchOptions, async_trait,
};

use crate::entry::Entry;
use crate::store::MemoryStore;

/// The sinks of the feeds watching one store, each with whether it wants the record.
#[derive(Default)]
pub(crate) struct Watchers(Mutex<Vec<(ExpirySink, bool)>>);

impl Watchers {
    /// moka's removal listener: reports an entry that ended without being ended by a call.
    /// That is one moka expired or evicted for space, and also a dead entry that a write
    /// replaced or a call removed before moka's housekeeping got to it (it expired first).
    /// A call that ended or replaced a *live* entry marked it first: the listener may run
    /// after the entry's expiry, but the call judged it live.
    pub(crate) fn removed(&self, id: &SessionId, entry: &Entry, cause: RemovalCause) {
        let ended_by_itself = match cause {
            // moka's clock may expire an entry a moment before the store's does, while a
            // call that judged it live is deciding on it: the claim settles who won.
            RemovalCause::Expired | RemovalCause::Size => entry.claim_report(),
            RemovalCause::Replaced | RemovalCause::Explicit => {
                !entry.is_live() && entry.claim_report()
            }
        };
        if !ended_by_itself {
            return;
        }
        let mut watchers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        watchers.retain(|(sink, with_data)| {
            let owner = entry.owner.as_deref().map(str::to_owned);
            let mut expired = Expired::new(id.clone(), owner);
            if *with_data && let Ok(record) = entry.to_record(id) {
                expired = expired.with_record(record);
            }
            sink.send(expired)
        });
    }

    fn add(&self, sink: ExpirySink, with_data: bool) {
        let mut watchers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        watchers.push((sink, with_data));
    }
}

/// Reports every session that ends without a call ending it: expired (also one found
/// dead by a later write before moka's housekeeping removed it) or evicted for space.
/// Once each, to every watcher of this store, within the interval after its `expires_at`
/// (moka's timer wheel adds up to about a second), with its owner and, when asked, its
/// record. In-process, like the store.
#[async_trait]
impl ExpiryFeed for MemoryStore {
    async fn watch_expired(&self, options: WatchOptions) -> Result<ExpiredSessions> {
        let store = self.clone();
        Ok(ExpiredSessions::spawn(move |sink| async move {
            store.watchers().add(sink.clone(), options.wants_data());
            let mut ticks = tokio::time::interval(options.get_interval());
            loop {
                tokio::select! {
                    // moka removes expired entries during its housekeeping, which runs
                    // only when the cache is used: run it on an idle store too.
                    _ = ticks.tick() => store.run_housekeeping(),
                    _ = sink.closed() => return,
                }
            }
        }))
    }
}

/// Shared by the store and moka's listener.
pub(crate) type SharedWatchers = Arc<Watchers>;

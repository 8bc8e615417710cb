//! Sessions changed by anyone, as the backend reports them: the [`InvalidationFeed`] a
//! backend implements and the [`Invalidations`] a cache in front of it reads (for example
//! `session_memory::CachedStore`), so a write by any process evicts the session from every
//! process's cache instead of leaving it stale for a time-to-live.
//!
//! A cache may only trust a feed while the feed is whole: an invalidation lost on the way
//! (a connection dropped, a buffer overflowed) would leave a stale entry that nothing ever
//! evicts. So besides the changes, a feed reports when it stops hearing everything
//! ([`Invalidation::Lost`]: drop every entry and cache nothing) and when it hears
//! everything again ([`Invalidation::Restored`]: cache again). A feed made of several
//! connections (one per node of a cluster) is lost while any of them is:
//! [`InvalidationSink::source_down`] and [`InvalidationSink::source_up`] keep that count.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::id::SessionId;

/// What a feed reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// These sessions were written, touched, renamed or destroyed (by any process, this
    /// one included), or expired: what a cache holds of them is stale.
    Changed(Vec<SessionId>),
    /// The feed may have missed changes from now on (a connection dropped or stopped
    /// answering): a cache must drop everything and cache nothing until
    /// [`Invalidation::Restored`].
    Lost,
    /// The feed hears every change again, from before this event arrived: a cache may fill
    /// again (with reads it starts after this event).
    Restored,
}

/// How a feed watches: see [`InvalidationFeed::watch_invalidations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackOptions {
    heartbeat: Duration,
}

impl Default for TrackOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
        }
    }
}

impl TrackOptions {
    /// How often the feed checks that each of its connections still answers, and how long
    /// an answer may take (default 1 s; at least 10 ms). A connection that closes is
    /// noticed at once; one that goes silent (a network partition) only by this check, so
    /// it bounds how long a cache can keep a stale entry when the invalidation was lost
    /// that way: up to twice the heartbeat. Also how often a feed over a cluster looks for
    /// new nodes, and how often it retries a lost connection.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat.max(Duration::from_millis(10));
        self
    }

    /// See [`Self::heartbeat`].
    pub fn get_heartbeat(&self) -> Duration {
        self.heartbeat
    }
}

/// A backend that reports which sessions changed, to keep caches in front of it exact.
#[async_trait]
pub trait InvalidationFeed: Send + Sync {
    /// Starts watching, and returns once the feed hears every change: the changes made from
    /// then on arrive on the returned receiver (so a cache built on it may start filling at
    /// once), until it is dropped (which stops the watching). Fails when the backend can't
    /// be watched this way ([`crate::Error::Config`] says why) or can't be reached.
    async fn watch_invalidations(&self, options: TrackOptions) -> Result<Invalidations>;
}

/// Invalidations as a feed reports them; dropping it stops the feed's task.
#[derive(Debug)]
pub struct Invalidations {
    receiver: mpsc::UnboundedReceiver<Invalidation>,
    task: JoinHandle<()>,
    runtime: Handle,
}

/// Where a feed's task delivers invalidations; see [`Invalidations::spawn`].
#[derive(Debug, Clone)]
pub struct InvalidationSink {
    sender: mpsc::UnboundedSender<Invalidation>,
    /// The sources (connections) currently down: the feed is lost while any is. The events
    /// are sent under this lock, so `Lost` and `Restored` arrive in the order the sources
    /// changed.
    down: Arc<Mutex<HashSet<String>>>,
}

impl InvalidationSink {
    /// Reports changed sessions (nothing when `ids` is empty); `false` once the receiver is
    /// gone (the task should end).
    pub fn changed(&self, ids: Vec<SessionId>) -> bool {
        ids.is_empty() || self.sender.send(Invalidation::Changed(ids)).is_ok()
    }

    /// Marks `source` as possibly missing changes: the first source down makes the feed
    /// [`Invalidation::Lost`]. Also for a source not yet listening (a new cluster node
    /// before its tracking is on).
    pub fn source_down(&self, source: &str) -> bool {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        if down.insert(source.to_owned()) && down.len() == 1 {
            return self.sender.send(Invalidation::Lost).is_ok();
        }
        !self.sender.is_closed()
    }

    /// Marks `source` as hearing every change again, or as no longer needed (a node that
    /// left the cluster): when no source is down any more, the feed is
    /// [`Invalidation::Restored`].
    pub fn source_up(&self, source: &str) -> bool {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        if down.remove(source) && down.is_empty() {
            return self.sender.send(Invalidation::Restored).is_ok();
        }
        !self.sender.is_closed()
    }

    /// Reports that `source` may have missed changes but is listening again (its buffer
    /// overflowed): a cache drops everything, and may fill again at once.
    pub fn source_gap(&self, source: &str) -> bool {
        self.source_down(source) && self.source_up(source)
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Resolves when the receiver is gone.
    pub async fn closed(&self) {
        self.sender.closed().await
    }
}

impl Invalidations {
    /// Runs `task` with a sink on the current tokio runtime; the task is aborted when the
    /// returned receiver is dropped. The channel is unbounded: the backend can't be asked
    /// to wait, and a dropped invalidation would leave a stale entry.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn<F, Fut>(task: F) -> Self
    where
        F: FnOnce(InvalidationSink) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (sender, receiver) = mpsc::unbounded_channel();
        let sink = InvalidationSink {
            sender,
            down: Arc::default(),
        };
        let runtime = Handle::current();
        let task = runtime.spawn(task(sink));
        Self {
            receiver,
            task,
            runtime,
        }
    }

    /// The next invalidation; `None` only if the feed's task ended (it never ends by itself
    /// while this receiver lives, unless it panicked): a cache must then treat the feed as
    /// lost for good.
    pub async fn recv(&mut self) -> Option<Invalidation> {
        self.receiver.recv().await
    }

    /// The next invalidation if one is waiting.
    pub fn try_recv(&mut self) -> Option<Invalidation> {
        self.receiver.try_recv().ok()
    }

    /// The runtime the feed runs on: where a cache can run the task that reads it, so
    /// building the cache needs no runtime of its own.
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }
}

impl Drop for Invalidations {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_feed_is_lost_while_any_source_is_down() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut feed = Invalidations::spawn(|sink| async move {
            let _ = tx.send(sink.clone());
            sink.closed().await;
        });
        let sink = rx.await.unwrap();
        let id = SessionId::generate();
        assert!(sink.changed(vec![]));
        assert!(sink.changed(vec![id.clone()]));
        sink.source_down("a");
        sink.source_down("b");
        sink.source_down("a");
        sink.source_up("a");
        sink.source_up("b");
        sink.source_up("b");
        sink.source_gap("c");
        let mut seen = Vec::new();
        while let Some(event) = feed.try_recv() {
            seen.push(event);
        }
        use Invalidation::*;
        assert_eq!(seen, [Changed(vec![id]), Lost, Restored, Lost, Restored]);
        drop(feed);
        assert!(sink.is_closed());
    }
}

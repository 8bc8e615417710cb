//! Sessions that ended by reaching their expiry, as the backend reports them: the
//! [`ExpiryFeed`] a backend implements and the [`ExpiredSessions`] an application reads.
//!
//! Two kinds of backend, one shape:
//! - backends that remove expired sessions themselves (memory, Redis) report what they
//!   removed as they remove it;
//! - backends that keep expired rows until purged (PostgreSQL, MongoDB, the SQL stores)
//!   report the sessions **their own purge** claims: the feed runs that purge every
//!   [`WatchOptions::interval`], and each expired session is claimed by one purge only.
//!
//! Each backend's documentation states its guarantee (at least once, the bound, whether the
//! record's data can be given).

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::id::SessionId;
use crate::record::Record;

/// A session that ended by reaching its expiry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Expired {
    /// Its id (a bearer secret: log [`SessionId::fingerprint`], which `Debug` shows).
    pub id: SessionId,
    /// Its owner, where the backend still knows it when it reports.
    pub owner: Option<String>,
    /// The whole record as it was when it expired: only when asked for
    /// ([`WatchOptions::with_data`]) and where the backend still has it.
    pub record: Option<Record>,
}

impl Expired {
    /// An expiry of `id`, owned by `owner`, without the record.
    pub fn new(id: SessionId, owner: Option<String>) -> Self {
        Self {
            id,
            owner,
            record: None,
        }
    }

    /// What a purge that claimed a stored session reports: `None` when `id` is not a
    /// session id (nobody could have held it; logged), else its expiry, carrying the record
    /// that `decode` reads when `with_data` (one that doesn't decode is logged and left out).
    pub fn claimed(
        id: &str,
        owner: Option<String>,
        with_data: bool,
        decode: impl FnOnce(&SessionId) -> Result<Record>,
    ) -> Option<Self> {
        let Ok(id) = SessionId::parse(id) else {
            tracing::warn!("an expired session's stored id is malformed; purged without a report");
            return None;
        };
        let expired = Self::new(id, owner);
        if !with_data {
            return Some(expired);
        }
        match decode(&expired.id) {
            Ok(record) => Some(expired.with_record(record)),
            Err(error) => {
                tracing::warn!(%error, "an expired session's record doesn't decode; reported without it");
                Some(expired)
            }
        }
    }

    /// The same expiry carrying the expired record.
    pub fn with_record(mut self, record: Record) -> Self {
        self.record = Some(record);
        self
    }
}

/// How a feed watches: see [`ExpiryFeed::watch_expired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    interval: Duration,
    batch: u32,
    with_data: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            batch: 1_000,
            with_data: false,
        }
    }
}

impl WatchOptions {
    /// How often the feed looks for expired sessions (default 1 s; at least 10 ms): the
    /// purge interval of purging backends, the housekeeping interval of the memory store,
    /// how soon a Redis Cluster feed notices a new node.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How many sessions one purge statement claims at most (default 1,000; at least 1).
    pub fn batch(mut self, sessions: u32) -> Self {
        self.batch = sessions.max(1);
        self
    }

    /// Whether to hand over each expired session's record, where the backend has it
    /// (default no: an event then carries no session data).
    pub fn with_data(mut self, with_data: bool) -> Self {
        self.with_data = with_data;
        self
    }

    /// See [`Self::interval`].
    pub fn get_interval(&self) -> Duration {
        self.interval
    }

    /// See [`Self::batch`].
    pub fn get_batch(&self) -> u32 {
        self.batch
    }

    /// See [`Self::with_data`].
    pub fn wants_data(&self) -> bool {
        self.with_data
    }
}

/// A backend that reports its sessions' expiries.
#[async_trait]
pub trait ExpiryFeed: Send + Sync {
    /// Starts watching: the expiries found from now on arrive on the returned receiver,
    /// until it is dropped (which stops the watching). Fails if the backend can't be
    /// watched as configured (for example Redis with keyspace notifications disabled).
    async fn watch_expired(&self, options: WatchOptions) -> Result<ExpiredSessions>;
}

/// A store whose expiry feed is its own purge (the SQL stores, MongoDB): see
/// [`ExpiredSessions::purging`].
#[async_trait]
pub trait ClaimExpired: Clone + Send + Sync + 'static {
    /// Removes up to a batch of expired sessions, delivering each to `sink` before its
    /// removal is final (so a purge that fails leaves sessions that are reported again: at
    /// least once); how many it claimed. `0` once the sink is closed.
    async fn claim_expired(&self, options: WatchOptions, sink: &ExpirySink) -> Result<u64>;
}

/// Expired sessions as a feed reports them; dropping it stops the feed's task.
#[derive(Debug)]
pub struct ExpiredSessions {
    receiver: mpsc::UnboundedReceiver<Expired>,
    task: JoinHandle<()>,
}

/// Where a feed's task delivers expiries; see [`ExpiredSessions::spawn`].
#[derive(Debug, Clone)]
pub struct ExpirySink {
    sender: mpsc::UnboundedSender<Expired>,
}

impl ExpirySink {
    /// Delivers one expiry; `false` once the receiver is gone (the task should end).
    pub fn send(&self, expired: Expired) -> bool {
        self.sender.send(expired).is_ok()
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

impl ExpiredSessions {
    /// Runs `task` with a sink on the current tokio runtime; the task is aborted when the
    /// returned receiver is dropped. The channel is unbounded: a backend that removes
    /// sessions itself can't be asked to wait, so a reader that stops reading holds what
    /// arrives in memory.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn<F, Fut>(task: F) -> Self
    where
        F: FnOnce(ExpirySink) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(task(ExpirySink { sender }));
        Self { receiver, task }
    }

    /// The feed of a store that purges: every `options`' interval, calls
    /// [`ClaimExpired::claim_expired`] until it returns fewer than a batch. Failures are
    /// logged and retried at the next tick.
    pub fn purging<S: ClaimExpired>(store: &S, options: WatchOptions) -> Self {
        let store = store.clone();
        Self::spawn(move |sink| async move {
            let mut ticks = tokio::time::interval(options.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = sink.closed() => return,
                }
                loop {
                    match store.claim_expired(options, &sink).await {
                        Ok(n) if n >= u64::from(options.batch) && !sink.is_closed() => {}
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(%error, "claiming expired sessions failed; retrying at the next tick");
                            break;
                        }
                    }
                }
            }
        })
    }

    /// The next expiry; `None` only if the feed's task ended (it never ends by itself
    /// while this receiver lives, unless it panicked).
    pub async fn recv(&mut self) -> Option<Expired> {
        self.receiver.recv().await
    }

    /// The next expiry if one is waiting.
    pub fn try_recv(&mut self) -> Option<Expired> {
        self.receiver.try_recv().ok()
    }
}

impl Drop for ExpiredSessions {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! The Redis store's [`ExpiryFeed`]: Redis removes expired keys itself and says so.

#[cfg(not(feature = "fred"))]
use session_core::Error;
use session_core::{ExpiredSessions, ExpiryFeed, Result, WatchOptions, async_trait};

use crate::store::RedisStore;

/// Reports each session key that Redis expires, from its `expired` keyevent notification
/// (`notify-keyspace-events` gets `Ex` added if missing). Subscribes to a standalone
/// server, the Sentinel primary, or every node of a Cluster (replicas too, so a promoted
/// replica reports at once; new nodes are found within the interval).
///
/// The guarantee: every expiry is reported once to every process whose feed was connected
/// to the node holding the key when Redis removed it. Redis removes an expired key when
/// it is next touched or when its expiry cycle (10 times a second) finds it: usually
/// within a fraction of a second, but it sheds the work under load, so the bound is what
/// the tests measure (see the README). Notifications are fire-and-forget: a process whose
/// connection is down at that moment never hears of it (another subscribed process does),
/// and a burst beyond the buffer is logged as lost. Only the id: the key is gone, so
/// neither the owner nor the data can be given. Only with the `fred` feature.
#[async_trait]
impl ExpiryFeed for RedisStore {
    async fn watch_expired(&self, options: WatchOptions) -> Result<ExpiredSessions> {
        #[cfg(feature = "fred")]
        {
            let (target, connect_timeout) = self.target();
            crate::fred_expiry::watch(target, connect_timeout, self.keys().clone(), options).await
        }
        #[cfg(not(feature = "fred"))]
        {
            let _ = options;
            Err(Error::Config(
                "Redis expiry events need session-redis' `fred` feature".into(),
            ))
        }
    }
}

//! The Redis store's [`ExpiryFeed`]: Redis removes expired keys itself and says so.

use std::collections::HashMap;
use std::sync::Arc;

use session_core::{
    Error, Expired, ExpiredSessions, ExpiryFeed, ExpirySink, Result, WatchOptions, async_trait,
};
use tokio::task::JoinHandle;

use crate::config::{Client, Topology};
use crate::keys::Keys;
use crate::store::RedisStore;

/// Reports each session key that Redis expires, from its `expired` keyevent notification
/// (`notify-keyspace-events` gets `Ex` added if missing). Subscribes to a standalone
/// server, the Sentinel primary, or every node of a Cluster (replicas too, so a promoted
/// replica reports at once; new nodes are found within the interval). Every interval it
/// also `SCAN`s the store's keys (on every primary of a Cluster): Redis' own expiry cycle
/// samples keys at random and, in a keyspace of mostly live keys, can leave an expired key
/// in place for many seconds; `SCAN` removes every expired key it passes, and Redis
/// announces each.
///
/// The guarantee: every expiry is reported once to every process whose feed was connected
/// to the node holding the key when Redis removed it, within the interval plus one `SCAN`
/// pass. Notifications are fire-and-forget: a process whose connection is down at that
/// moment never hears of it (another subscribed process does), and a burst beyond the
/// buffer is logged as lost. Only the id: the key is gone, so neither the owner nor the
/// data can be given. Each watching process costs the server one `SCAN` pass of the
/// store's keys per interval: raise the interval for large stores. Like every call of the
/// store, the feed takes any key of the database that reads as `{prefix}{id}` for one of
/// its sessions: stores sharing a database need prefixes neither of which starts with the
/// other (`app1:` and `app2:`, not `sess:` and `sess:v2-`).
#[async_trait]
impl ExpiryFeed for RedisStore {
    async fn watch_expired(&self, options: WatchOptions) -> Result<ExpiredSessions> {
        let (target, connect_timeout) = self.target();
        let clustered = target.topology == Topology::Cluster;
        let keys = self.keys().clone();
        match self.client() {
            #[cfg(feature = "fred")]
            Client::Fred => {
                let subscriber =
                    crate::fred_expiry::FredSubscriber::new(target, connect_timeout, keys)?;
                watch(subscriber, clustered, self.clone(), options).await
            }
            #[cfg(feature = "redis")]
            Client::RedisRs => {
                let subscriber =
                    crate::redis_rs_expiry::RedisRsSubscriber::new(target, connect_timeout, keys)?;
                watch(subscriber, clustered, self.clone(), options).await
            }
        }
    }
}

/// One client library's connections that hear `expired` keyevents.
#[async_trait]
pub(crate) trait Subscriber: Send + Sync + 'static {
    /// A subscribed connection to one node.
    type Node: Send + 'static;

    /// The addresses (`host:port`) of every reachable node of the Cluster, primaries and
    /// replicas.
    async fn cluster_nodes(&self) -> Result<Vec<String>>;

    /// Connects to `address` (`None`: the configured server), makes sure it publishes
    /// expiries, and subscribes.
    async fn subscribe(&self, address: Option<&str>) -> Result<Self::Node>;

    /// Delivers the node's expiries (resubscribing after a reconnection) until nobody
    /// listens.
    async fn forward(&self, node: Self::Node, sink: &ExpirySink);
}

/// The expiry of the session whose key is `key`, if it is one of this store's.
pub(crate) fn expired_key(keys: &Keys, key: &[u8]) -> Option<Expired> {
    keys.session_id(key).map(|id| Expired::new(id, None))
}

async fn watch<S: Subscriber>(
    subscriber: S,
    clustered: bool,
    store: RedisStore,
    options: WatchOptions,
) -> Result<ExpiredSessions> {
    let subscriber = Arc::new(subscriber);
    if !clustered {
        let node = subscriber.subscribe(None).await?;
        return Ok(ExpiredSessions::spawn(move |sink| async move {
            tokio::join!(
                subscriber.forward(node, &sink),
                store.sweep_every(options, &sink)
            );
        }));
    }
    let mut nodes = Vec::new();
    for address in subscriber.cluster_nodes().await? {
        let node = subscriber.subscribe(Some(&address)).await?;
        nodes.push((address, node));
    }
    Ok(ExpiredSessions::spawn(move |sink| async move {
        tokio::join!(
            membership(subscriber, nodes, options, &sink),
            store.sweep_every(options, &sink)
        );
    }))
}

/// Keeps one subscribed connection per node of the Cluster, checking the membership every
/// interval (a promoted replica is already subscribed; a new node joins within the
/// interval), until nobody listens.
async fn membership<S: Subscriber>(
    subscriber: Arc<S>,
    nodes: Vec<(String, S::Node)>,
    options: WatchOptions,
    sink: &ExpirySink,
) {
    let start = |node: S::Node| {
        let (subscriber, sink) = (subscriber.clone(), sink.clone());
        tokio::spawn(async move { subscriber.forward(node, &sink).await })
    };
    let mut running: HashMap<String, JoinHandle<()>> = nodes
        .into_iter()
        .map(|(address, node)| (address, start(node)))
        .collect();
    let mut ticks = tokio::time::interval(options.get_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = sink.closed() => break,
        }
        let Ok(current) = subscriber.cluster_nodes().await else {
            continue;
        };
        running.retain(|address, task| {
            let keep = current.contains(address) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for address in current {
            if running.contains_key(&address) {
                continue;
            }
            match subscriber.subscribe(Some(&address)).await {
                Ok(node) => {
                    running.insert(address, start(node));
                }
                Err(error) => {
                    tracing::warn!(%error, node = %address, "expiry feed: cannot watch a cluster node yet; retrying")
                }
            }
        }
    }
    for task in running.values() {
        task.abort();
    }
}

impl RedisStore {
    /// One `SCAN` pass of the store's keys every interval until nobody listens.
    async fn sweep_every(&self, options: WatchOptions, sink: &ExpirySink) {
        let pattern = self.keys().scan_pattern();
        let mut ticks = tokio::time::interval(options.get_interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = sink.closed() => return,
            }
            if let Err(error) = self.conn().scan(&pattern).await {
                tracing::warn!(%error, "expiry feed: a sweep failed; the next one starts over");
            }
        }
    }
}

/// The addresses in a `CLUSTER NODES` listing of the nodes that are reachable.
pub(crate) fn parse_cluster_nodes(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            if flags
                .split(',')
                .any(|flag| matches!(flag, "fail" | "noaddr" | "handshake"))
            {
                return None;
            }
            // `ip:port@cport[,hostname]`
            let address = address.split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            (!host.is_empty() && port != "0").then(|| address.to_owned())
        })
        .collect()
}

/// The `notify-keyspace-events` flags that publish `expired` keyevents, given the current
/// ones: `None` when they already do.
pub(crate) fn with_expiries(flags: &str) -> Option<String> {
    if flags.contains('E') && (flags.contains('x') || flags.contains('A')) {
        return None;
    }
    let mut wanted = flags.to_owned();
    for flag in ['E', 'x'] {
        if !wanted.contains(flag) {
            wanted.push(flag);
        }
    }
    Some(wanted)
}

/// The error of a server that won't publish expiries.
pub(crate) fn notifications_refused(name: &str, flags: &str, why: &str) -> Error {
    Error::Config(format!(
        "{name} doesn't publish key expiries (notify-keyspace-events is {flags:?}) and refused \
         to turn them on ({why}): set notify-keyspace-events to include `Ex` in the server's \
         configuration"
    ))
}

#[cfg(test)]
mod tests {
    use super::{parse_cluster_nodes, with_expiries};

    #[test]
    fn cluster_nodes_lists_reachable_primaries_and_replicas() {
        let listing = "\
a 127.0.0.1:17001@27001 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:17004@27004,host-b slave a 0 0 1 connected
c 127.0.0.1:17002@27002 master,fail - 0 0 2 connected 5461-10922
d :0@0 master,noaddr - 0 0 3 connected
";
        assert_eq!(
            parse_cluster_nodes(listing),
            ["127.0.0.1:17001", "127.0.0.1:17004"]
        );
    }

    #[test]
    fn notification_flags_gain_only_what_is_missing() {
        assert_eq!(with_expiries(""), Some("Ex".into()));
        assert_eq!(with_expiries("Kg"), Some("KgEx".into()));
        assert_eq!(with_expiries("Ex"), None);
        assert_eq!(with_expiries("AKE"), None);
    }
}

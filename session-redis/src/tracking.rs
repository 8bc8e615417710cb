//! The Redis store's [`InvalidationFeed`]: Redis client tracking in broadcast mode, so a
//! cache in front of the store hears of every write to a session key, by any process.

use session_core::{InvalidationFeed, Invalidations, Result, TrackOptions, async_trait};

use crate::config::Client;
use crate::store::RedisStore;

/// Tells which sessions change, from Redis' client tracking
/// (`CLIENT TRACKING on BCAST PREFIX {prefix}`, RESP3): Redis pushes the name of every key
/// under the prefix that any client writes, renames, deletes, or that expires or is
/// evicted, to a connection this feed keeps for nothing else. Session keys become
/// [`Invalidation::Changed`](session_core::Invalidation::Changed); owner indexes and keys
/// that aren't this store's sessions are passed over (like every call of the store, the
/// feed reads any key `{prefix}{id}` as a session: give stores sharing a database prefixes
/// neither of which starts with the other).
///
/// **Topologies.** Standalone: one connection. Sentinel: one connection to the primary
/// (after a failover the connection drops, and the feed is lost until it tracks the new
/// primary). Cluster: one connection per node, replicas too (a replica reports the writes
/// it replicates, so a promoted replica was tracked before it took over); every
/// heartbeat the feed reads `CLUSTER NODES`, and a node that joins makes the feed lost until
/// its tracking is on (so a write on a new node is missed at most until then), one marked
/// failed is let go.
///
/// **Lost and restored.** When a connection closes, errs, or doesn't answer a `PING`
/// within the heartbeat, the feed reports [`Invalidation::Lost`](session_core::Invalidation::Lost):
/// what was pushed meanwhile is gone. It reconnects every heartbeat and reports
/// [`Invalidation::Restored`](session_core::Invalidation::Restored) once tracking is on again on
/// every node. A connection closed by the server (`CLIENT KILL`, a restart) is noticed at
/// once; a silent one (a partition) within two heartbeats. A burst beyond the feed's buffer
/// reports lost and restored at once, so the cache drops everything.
///
/// **Not reported:** `FLUSHDB`/`FLUSHALL` (Redis pushes a null "everything" that fred 10
/// drops in RESP3 mode) and `SWAPDB` (found by an attack test, ignored there): a cache
/// keeps serving the sessions those replaced for its time-to-live. They are
/// whole-database admin commands, not session writes; clear the caches after one.
/// Needs the fred client; redis-rs fails with
/// [`Error::Config`](session_core::Error::Config). The tracking connection sends only
/// `HELLO`, `CLIENT SETNAME`, `CLIENT TRACKING` and `PING`, all safe to repeat, and never
/// a command of the store: nothing is sent twice that could apply twice. In `CLIENT LIST`
/// the connections are named `session-stores:tracking:{prefix}` (characters a name can't
/// hold as `_`).
#[async_trait]
impl InvalidationFeed for RedisStore {
    async fn watch_invalidations(&self, options: TrackOptions) -> Result<Invalidations> {
        match self.client() {
            #[cfg(feature = "fred")]
            Client::Fred => fred_tracking::watch(self, options).await,
            #[cfg(feature = "redis")]
            Client::RedisRs => {
                let _ = options;
                Err(session_core::Error::Config(
                    "watch_invalidations (Redis client tracking) needs the fred client: \
                     connect the store with .fred()"
                        .into(),
                ))
            }
        }
    }
}

#[cfg(feature = "fred")]
mod fred_tracking {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use fred::interfaces::TrackingInterface;
    use fred::prelude::{
        Client, ClientInterface, ClientLike, ClusterInterface, Config, Error as FredError,
        EventInterface, Server, ServerConfig,
    };
    use fred::types::{Builder, RespVersion, Value};
    use session_core::{Error, InvalidationSink, Invalidations, Result, TrackOptions};
    use tokio::sync::broadcast::Receiver;
    use tokio::sync::broadcast::error::RecvError;
    use tokio::task::JoinHandle;

    use crate::config::Topology;
    use crate::conn::BACKEND;
    use crate::expired::parse_cluster_nodes;
    use crate::fred_client::{config, config_err, map_err};
    use crate::keys::Keys;
    use crate::store::RedisStore;

    /// Invalidations a connection may hold before the feed reads them; a burst beyond it
    /// makes the cache drop everything (a gap), never a silent loss.
    const BUFFER: usize = 1 << 14;

    /// What the feed calls the connection of a standalone server or Sentinel primary.
    const SERVER: &str = "the server";

    /// Makes tracking connections.
    struct Tracker {
        base: Config,
        connect_timeout: Duration,
        heartbeat: Duration,
        keys: Keys,
    }

    /// One tracking connection and what it hears.
    struct Node {
        client: Client,
        invalidations: Receiver<fred::types::client::Invalidation>,
        errors: Receiver<(FredError, Option<Server>)>,
    }

    impl Drop for Node {
        fn drop(&mut self) {
            quit(&self.client);
        }
    }

    /// The Cluster client reading `CLUSTER NODES`, closed when the feed's task ends or is
    /// aborted.
    struct Discovery(Client);

    impl Drop for Discovery {
        fn drop(&mut self) {
            quit(&self.0);
        }
    }

    /// Closes `client`'s connection (fred's tasks would keep it open); a runtime shutting
    /// down closes it anyway.
    fn quit(client: &Client) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = client.clone();
            runtime.spawn(async move { client.quit().await });
        }
    }

    pub(super) async fn watch(store: &RedisStore, options: TrackOptions) -> Result<Invalidations> {
        let (target, connect_timeout) = store.target();
        let tracker = Arc::new(Tracker {
            base: config(target)?,
            connect_timeout,
            heartbeat: options.get_heartbeat(),
            keys: store.keys().clone(),
        });
        if target.topology != Topology::Cluster {
            let node = tracker.track(None).await?;
            return Ok(Invalidations::spawn(move |sink| async move {
                tracker.follow(SERVER, None, Some(node), &sink).await;
            }));
        }
        let discovery = Discovery(tracker.discovery().await?);
        let mut nodes = Vec::new();
        for address in cluster_nodes(&discovery.0).await? {
            let node = tracker.track(Some(&address)).await?;
            nodes.push((address, node));
        }
        Ok(Invalidations::spawn(move |sink| async move {
            membership(tracker, discovery, nodes, &sink).await;
        }))
    }

    impl Tracker {
        /// A RESP3 client for `address` (`None`: the configured server or Sentinel
        /// primary), without fred's reconnection: the feed reconnects itself, so it knows
        /// when tracking is off.
        fn client(&self, address: Option<&str>) -> Result<Client> {
            let mut config = self.base.clone();
            if let Some(address) = address {
                let (host, port) = crate::fred_expiry::host_port(address)?;
                config.server = ServerConfig::new_centralized(host, port);
            }
            config.version = RespVersion::RESP3;
            crate::fred_client::side_builder(config, self.connect_timeout, BUFFER)
                .build()
                .map_err(config_err)
        }

        /// A Cluster client for `CLUSTER NODES`.
        async fn discovery(&self) -> Result<Client> {
            let client = Builder::from_config(self.base.clone())
                .build()
                .map_err(config_err)?;
            client.init().await.map_err(map_err)?;
            Ok(client)
        }

        /// Connects to `address` and turns tracking on; from its reply on, every write
        /// under the prefix is pushed to it.
        async fn track(&self, address: Option<&str>) -> Result<Node> {
            let client = self.client(address)?;
            // Taken before connecting, so nothing pushed after tracking is on is missed.
            let invalidations = client.invalidation_rx();
            let errors = client.error_rx();
            let started = tokio::time::timeout(self.connect_timeout, async {
                client.init().await?;
                client
                    .client_setname(connection_name(self.keys.prefix()))
                    .await?;
                client
                    .start_tracking(self.keys.prefix(), true, false, false, false)
                    .await
            })
            .await;
            let node = Node {
                client,
                invalidations,
                errors,
            };
            match started {
                Ok(Ok(())) => Ok(node),
                Ok(Err(error)) => Err(map_err(error)),
                Err(_) => Err(Error::transient(
                    BACKEND,
                    format!(
                        "invalidation feed: turning tracking on took over {:?}",
                        self.connect_timeout
                    ),
                )),
            }
        }

        /// Keeps `source` tracked until nobody listens: forwards what its connection hears,
        /// and when the connection is lost, reports it and reconnects every heartbeat.
        async fn follow(
            &self,
            source: &str,
            address: Option<&str>,
            mut node: Option<Node>,
            sink: &InvalidationSink,
        ) {
            loop {
                let current = match node.take() {
                    Some(node) => node,
                    None => match self.track(address).await {
                        Ok(node) => {
                            if !sink.source_up(source) {
                                return;
                            }
                            node
                        }
                        Err(error) => {
                            tracing::warn!(%error, node = source, "invalidation feed: cannot track yet; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(self.heartbeat) => continue,
                                () = sink.closed() => return,
                            }
                        }
                    },
                };
                if !self.listen(source, current, sink).await || !sink.source_down(source) {
                    return;
                }
                tracing::warn!(
                    node = source,
                    "invalidation feed: lost its connection; caches drop everything until it is back"
                );
            }
        }

        /// Forwards `node`'s invalidations until its connection is lost (`true`) or nobody
        /// listens (`false`).
        async fn listen(&self, source: &str, mut node: Node, sink: &InvalidationSink) -> bool {
            let heartbeat = self.heartbeat;
            let client = node.client.clone();
            let alive = async move {
                let mut ticks = tokio::time::interval(heartbeat);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    match tokio::time::timeout(heartbeat, client.ping::<Value>(None)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return error.details().to_owned(),
                        Err(_) => return format!("no answer to PING within {heartbeat:?}"),
                    }
                }
            };
            tokio::pin!(alive);
            loop {
                tokio::select! {
                    biased;
                    invalidation = node.invalidations.recv() => match invalidation {
                        Ok(invalidation) if invalidation.keys.is_empty() => {
                            // "Everything changed" (a flush), where the client passes it on.
                            if !sink.source_gap(source) {
                                return false;
                            }
                        }
                        Ok(invalidation) => {
                            let ids = invalidation
                                .keys
                                .iter()
                                .filter_map(|key| self.keys.session_id(key.as_bytes()))
                                .collect();
                            if !sink.changed(ids) {
                                return false;
                            }
                        }
                        Err(RecvError::Lagged(lost)) => {
                            tracing::warn!(lost, node = source, "invalidation feed: a burst overflowed the buffer; caches drop everything");
                            if !sink.source_gap(source) {
                                return false;
                            }
                        }
                        Err(RecvError::Closed) => return true,
                    },
                    error = node.errors.recv() => {
                        let why = match error {
                            Ok((error, _)) => error.details().to_owned(),
                            Err(error) => error.to_string(),
                        };
                        tracing::warn!(node = source, why, "invalidation feed: connection error");
                        return true;
                    }
                    why = &mut alive => {
                        tracing::warn!(node = source, why, "invalidation feed: connection silent");
                        return true;
                    }
                    () = sink.closed() => return false,
                }
            }
        }
    }

    /// Keeps one tracking connection per node of the Cluster, checking the membership every
    /// heartbeat, until nobody listens.
    async fn membership(
        tracker: Arc<Tracker>,
        discovery: Discovery,
        nodes: Vec<(String, Node)>,
        sink: &InvalidationSink,
    ) {
        let start = |address: String, node: Option<Node>| {
            let (tracker, sink) = (tracker.clone(), sink.clone());
            tokio::spawn(async move { tracker.follow(&address, Some(&address), node, &sink).await })
        };
        let mut running: HashMap<String, JoinHandle<()>> = nodes
            .into_iter()
            .map(|(address, node)| (address.clone(), start(address, Some(node))))
            .collect();
        let mut ticks = tokio::time::interval(tracker.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = sink.closed() => break,
            }
            let Ok(current) = cluster_nodes(&discovery.0).await else {
                continue;
            };
            let gone: Vec<String> = running
                .keys()
                .filter(|address| !current.contains(address))
                .cloned()
                .collect();
            for address in gone {
                if let Some(task) = running.remove(&address) {
                    task.abort();
                    // Wait for it, so it can't mark the node down after this marks it up.
                    let _ = task.await;
                }
                tracing::info!(node = %address, "invalidation feed: a node left the cluster");
                sink.source_up(&address);
            }
            for address in current {
                if running.contains_key(&address) {
                    continue;
                }
                // Not tracked yet: writes on it would go unheard until its tracking is on.
                sink.source_down(&address);
                running.insert(address.clone(), start(address, None));
            }
        }
        for task in running.values() {
            task.abort();
        }
    }

    async fn cluster_nodes(discovery: &Client) -> Result<Vec<String>> {
        let listing: String = discovery.cluster_nodes().await.map_err(map_err)?;
        Ok(parse_cluster_nodes(&listing))
    }

    /// The name the tracking connections go by in `CLIENT LIST`, so an operator (or a
    /// test) can tell which connection tracks which prefix: `session-stores:tracking:`
    /// and the prefix, with what a name can't hold (spaces, control characters) as `_`.
    pub(super) fn connection_name(prefix: &str) -> String {
        let prefix: String = prefix
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        format!("session-stores:tracking:{prefix}")
    }
}

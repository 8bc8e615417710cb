//! The expiry feed on fred: the `expired` keyevent notifications of every node.

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::{
    ClientLike, ClusterInterface, Config, ConfigInterface, EventInterface, PubsubInterface,
    ReconnectPolicy, ServerConfig,
};
use fred::types::{Builder, KeyspaceEvent};
use futures::StreamExt as _;
use session_core::{Error, Expired, ExpiredSessions, ExpirySink, Result, WatchOptions};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::config::{Target, Topology};
use crate::fred_client::{config, config_err, map_err};
use crate::keys::Keys;

/// Notifications one node's connection may hold before its reader takes them; a burst of
/// expiries beyond it is reported lost (with a warning), not silently.
const NOTIFICATION_BUFFER: usize = 1 << 14;

/// Starts the feed: one subscribed connection to a standalone server or a Sentinel
/// primary (fred follows a failover), or one to every node of a Cluster, replicas
/// included (a replica reports nothing until it is promoted, and then at once),
/// rediscovered every interval; and a sweep of the store's keys every interval (see
/// [`Watcher::sweep`]).
pub(crate) async fn watch(
    target: &Target,
    connect_timeout: Duration,
    keys: Keys,
    options: WatchOptions,
) -> Result<ExpiredSessions> {
    let base = config(target)?;
    let watcher = Watcher {
        db: base.database.unwrap_or(0),
        base,
        connect_timeout,
        keys,
    };
    if target.topology != Topology::Cluster {
        let node = watcher
            .subscribe(watcher.base.clone(), "the server")
            .await?;
        let sweeper = watcher.client(watcher.base.clone())?;
        sweeper.init().await.map_err(map_err)?;
        return Ok(ExpiredSessions::spawn(move |sink| async move {
            tokio::join!(
                watcher.forward(node, &sink),
                watcher.sweep_every(&sweeper, options, &sink)
            );
            let _ = sweeper.quit().await;
        }));
    }
    let discovery = watcher.client(watcher.base.clone())?;
    discovery.init().await.map_err(map_err)?;
    let mut nodes = HashMap::new();
    for address in cluster_nodes(&discovery).await? {
        let node = watcher
            .subscribe(node_config(&watcher.base, &address)?, &address)
            .await?;
        nodes.insert(address, node);
    }
    Ok(ExpiredSessions::spawn(move |sink| async move {
        watcher.cluster(discovery, nodes, options, sink).await;
    }))
}

/// What every node's connection shares.
struct Watcher {
    base: Config,
    db: u8,
    connect_timeout: Duration,
    keys: Keys,
}

/// One node's subscribed connection, and its notifications.
struct Node {
    client: fred::prelude::Client,
    events: tokio::sync::broadcast::Receiver<KeyspaceEvent>,
    resubscriber: JoinHandle<fred::prelude::FredResult<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.resubscriber.abort();
        // Close the connection (fred's tasks would keep it open); a runtime shutting down
        // closes it anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move { client.quit().await });
        }
    }
}

impl Watcher {
    fn channel(&self) -> String {
        format!("__keyevent@{}__:expired", self.db)
    }

    fn client(&self, config: Config) -> Result<fred::prelude::Client> {
        let timeout = self.connect_timeout;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
            })
            .with_performance_config(|p| {
                p.broadcast_channel_capacity = NOTIFICATION_BUFFER;
                p.default_command_timeout = timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
        builder.build().map_err(config_err)
    }

    /// Connects to `name`, makes sure it publishes expiries, and subscribes; after every
    /// reconnection (a restart, a Sentinel failover) it does both again.
    async fn subscribe(&self, config: Config, name: &str) -> Result<Node> {
        let client = self.client(config)?;
        // Taken before connecting, so nothing published after the SUBSCRIBE is missed.
        let events = client.keyspace_event_rx();
        client.init().await.map_err(map_err)?;
        enable_notifications(&client, name).await?;
        let channel = self.channel();
        client.subscribe(&channel).await.map_err(map_err)?;
        let again = client.clone();
        let resubscriber = client.on_reconnect(move |_| {
            let (client, channel) = (again.clone(), channel.clone());
            async move {
                if let Err(error) = enable_notifications(&client, "a reconnected node").await {
                    tracing::warn!(%error, "expiry feed: cannot enable notifications after a reconnection");
                }
                if let Err(error) = client.subscribe(&channel).await {
                    tracing::warn!(%error, "expiry feed: cannot subscribe again after a reconnection");
                }
                Ok(())
            }
        });
        Ok(Node {
            client,
            events,
            resubscriber,
        })
    }

    /// Delivers one node's notifications until the node's connection is dropped or nobody
    /// listens.
    async fn forward(&self, mut node: Node, sink: &ExpirySink) {
        loop {
            let event = tokio::select! {
                event = node.events.recv() => event,
                () = sink.closed() => return,
            };
            match event {
                Ok(event) if event.operation == "expired" && event.db == self.db => {
                    let Some(id) = self.keys.session_id(event.key.as_bytes()) else {
                        continue;
                    };
                    if !sink.send(Expired::new(id, None)) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(lost)) => tracing::warn!(
                    lost,
                    "expiry feed: a burst of expiries overflowed the notification buffer; \
                     those expiries are not reported"
                ),
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Sweeps every interval until nobody listens.
    async fn sweep_every(
        &self,
        client: &fred::prelude::Client,
        options: WatchOptions,
        sink: &ExpirySink,
    ) {
        let mut ticks = tokio::time::interval(options.get_interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.sweep(client, options).await,
                () = sink.closed() => return,
            }
        }
    }

    /// One `SCAN` pass over this store's keys (on every primary of a Cluster). Redis'
    /// expiry cycle samples keys at random and gives up while few of those it samples have
    /// expired, so in a keyspace of mostly live keys an expired one can linger for many
    /// seconds unreported; `SCAN` deletes every expired key it passes (and Redis publishes
    /// each), which bounds the delay by the interval plus one pass.
    async fn sweep(&self, client: &fred::prelude::Client, options: WatchOptions) {
        let pattern = self.keys.scan_pattern();
        let batch = Some(options.get_batch());
        let mut keys = if client.is_clustered() {
            client.scan_cluster_buffered(pattern, batch, None).boxed()
        } else {
            client.scan_buffered(pattern, batch, None).boxed()
        };
        while let Some(step) = keys.next().await {
            if let Err(error) = step {
                tracing::warn!(%error, "expiry feed: a sweep failed; the next one starts over");
                return;
            }
        }
    }

    /// Keeps one subscribed connection per node of the Cluster, checking the membership
    /// every interval, until nobody listens.
    async fn cluster(
        self,
        discovery: fred::prelude::Client,
        nodes: HashMap<String, Node>,
        options: WatchOptions,
        sink: ExpirySink,
    ) {
        let watcher = std::sync::Arc::new(self);
        let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
        let start = |node: Node| {
            let (watcher, sink) = (watcher.clone(), sink.clone());
            tokio::spawn(async move { watcher.forward(node, &sink).await })
        };
        for (address, node) in nodes {
            running.insert(address, start(node));
        }
        let mut ticks = tokio::time::interval(options.get_interval());
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = sink.closed() => break,
            }
            watcher.sweep(&discovery, options).await;
            let Ok(current) = cluster_nodes(&discovery).await else {
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
                let node = match node_config(&watcher.base, &address) {
                    Ok(config) => watcher.subscribe(config, &address).await,
                    Err(error) => Err(error),
                };
                match node {
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
        let _ = discovery.quit().await;
    }
}

/// The addresses (`host:port`) of every reachable node, primaries and replicas.
async fn cluster_nodes(client: &fred::prelude::Client) -> Result<Vec<String>> {
    let listing: String = client.cluster_nodes().await.map_err(map_err)?;
    Ok(parse_cluster_nodes(&listing))
}

fn parse_cluster_nodes(listing: &str) -> Vec<String> {
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

/// The configuration of a direct connection to one cluster node, with the cluster's
/// credentials.
fn node_config(base: &Config, address: &str) -> Result<Config> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            Error::Config(format!(
                "a cluster node announced a bad address ({address})"
            ))
        })?;
    let mut config = base.clone();
    config.server = ServerConfig::new_centralized(host, port);
    Ok(config)
}

/// Makes sure `client`'s server publishes `expired` keyevents (`notify-keyspace-events`
/// holding `E` and `x`, or `A`), adding them to what is set if needed, as Spring Session
/// does; a server that refuses `CONFIG SET` (some managed services) is an
/// [`Error::Config`] saying what to set.
async fn enable_notifications(client: &fred::prelude::Client, name: &str) -> Result<()> {
    let current: HashMap<String, String> = client
        .config_get("notify-keyspace-events")
        .await
        .map_err(map_err)?;
    let flags = current.into_values().next().unwrap_or_default();
    if flags.contains('E') && (flags.contains('x') || flags.contains('A')) {
        return Ok(());
    }
    let mut wanted = flags.clone();
    for flag in ['E', 'x'] {
        if !wanted.contains(flag) {
            wanted.push(flag);
        }
    }
    client
        .config_set("notify-keyspace-events", wanted.as_str())
        .await
        .map_err(|err| {
            Error::Config(format!(
                "{name} doesn't publish key expiries (notify-keyspace-events is {flags:?}) and \
                 refused to turn them on ({}): set notify-keyspace-events to include `Ex` in \
                 the server's configuration",
                err.details()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::parse_cluster_nodes;

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
}

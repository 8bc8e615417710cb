//! The expiry feed's subscriptions on fred.

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::{
    Client, ClientLike, ClusterInterface, Config, ConfigInterface, EventInterface, FredResult,
    PubsubInterface, ReconnectPolicy, ServerConfig,
};
use fred::types::KeyspaceEvent;
use session_core::{Error, ExpirySink, Result, async_trait};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::config::Target;
use crate::expired::{
    Subscriber, expired_key, notifications_refused, parse_cluster_nodes, with_expiries,
};
use crate::fred_client::{config, config_err, map_err};
use crate::keys::Keys;

/// Notifications one node's connection may hold before its reader takes them; a burst of
/// expiries beyond it is reported lost (with a warning), not silently.
const NOTIFICATION_BUFFER: usize = 1 << 14;

/// fred connections: one per node, each resubscribing after fred reconnects it (a restart,
/// a Sentinel failover: fred follows the new primary).
pub(crate) struct FredSubscriber {
    base: Config,
    db: u8,
    connect_timeout: Duration,
    keys: Keys,
    /// A Cluster client for `CLUSTER NODES` (connected on first use).
    discovery: tokio::sync::OnceCell<Client>,
}

/// One node's subscribed connection, and its notifications.
pub(crate) struct Node {
    client: Client,
    events: Receiver<KeyspaceEvent>,
    resubscriber: JoinHandle<FredResult<()>>,
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

impl Drop for FredSubscriber {
    fn drop(&mut self) {
        if let (Some(client), Ok(runtime)) = (
            self.discovery.get().cloned(),
            tokio::runtime::Handle::try_current(),
        ) {
            runtime.spawn(async move { client.quit().await });
        }
    }
}

impl FredSubscriber {
    pub(crate) fn new(target: &Target, connect_timeout: Duration, keys: Keys) -> Result<Self> {
        let base = config(target)?;
        Ok(Self {
            db: base.database.unwrap_or(0),
            base,
            connect_timeout,
            keys,
            discovery: tokio::sync::OnceCell::new(),
        })
    }

    fn client(&self, config: Config) -> Result<Client> {
        let mut builder =
            crate::fred_client::side_builder(config, self.connect_timeout, NOTIFICATION_BUFFER);
        builder.set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
        builder.build().map_err(config_err)
    }

    fn channel(&self) -> String {
        format!("__keyevent@{}__:expired", self.db)
    }
}

#[async_trait]
impl Subscriber for FredSubscriber {
    type Node = Node;

    async fn cluster_nodes(&self) -> Result<Vec<String>> {
        let discovery = self
            .discovery
            .get_or_try_init(|| async {
                let client = self.client(self.base.clone())?;
                client.init().await.map_err(map_err)?;
                Ok::<_, session_core::Error>(client)
            })
            .await?;
        let listing: String = discovery.cluster_nodes().await.map_err(map_err)?;
        Ok(parse_cluster_nodes(&listing))
    }

    async fn subscribe(&self, address: Option<&str>) -> Result<Node> {
        let mut config = self.base.clone();
        if let Some(address) = address {
            let (host, port) = host_port(address)?;
            config.server = ServerConfig::new_centralized(host, port);
        }
        let name = address.unwrap_or("the server").to_owned();
        let client = self.client(config)?;
        // Taken before connecting, so nothing published after the SUBSCRIBE is missed.
        let events = client.keyspace_event_rx();
        client.init().await.map_err(map_err)?;
        enable_notifications(&client, &name).await?;
        let channel = self.channel();
        client.subscribe(&channel).await.map_err(map_err)?;
        let again = client.clone();
        let resubscriber = client.on_reconnect(move |_| {
            let (client, channel, name) = (again.clone(), channel.clone(), name.clone());
            async move {
                if let Err(error) = enable_notifications(&client, &name).await {
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

    async fn forward(&self, mut node: Node, sink: &ExpirySink) {
        loop {
            let event = tokio::select! {
                event = node.events.recv() => event,
                () = sink.closed() => return,
            };
            match event {
                Ok(event) if event.operation == "expired" && event.db == self.db => {
                    if let Some(expired) = expired_key(&self.keys, event.key.as_bytes())
                        && !sink.send(expired)
                    {
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
}

/// Makes sure `client`'s server publishes `expired` keyevents, adding the flags if needed
/// (as Spring Session does).
async fn enable_notifications(client: &Client, name: &str) -> Result<()> {
    let current: HashMap<String, String> = client
        .config_get("notify-keyspace-events")
        .await
        .map_err(map_err)?;
    let flags = current.into_values().next().unwrap_or_default();
    let Some(wanted) = with_expiries(&flags) else {
        return Ok(());
    };
    client
        .config_set("notify-keyspace-events", wanted.as_str())
        .await
        .map_err(|err| notifications_refused(name, &flags, err.details()))
}

/// `address` (`host:port`) split, or an [`Error::Config`].
pub(crate) fn host_port(address: &str) -> Result<(&str, u16)> {
    address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            Error::Config(format!(
                "a cluster node announced a bad address ({address})"
            ))
        })
}

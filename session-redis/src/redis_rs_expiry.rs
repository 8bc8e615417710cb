//! The expiry feed's subscriptions on redis-rs.

use std::time::Duration;

use futures::StreamExt as _;
use redis::aio::PubSubStream;
use session_core::{Error, ExpirySink, Result, async_trait};

use crate::config::Target;
use crate::expired::{
    Subscriber, expired_key, notifications_refused, parse_cluster_nodes, with_expiries,
};
use crate::keys::Keys;

/// How long a node's subscription waits before connecting again after it dropped.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// redis-rs connections: one per node, reconnected and resubscribed when they drop.
pub(crate) struct RedisRsSubscriber {
    /// Standalone: the server's URL; Cluster: the seed URLs.
    urls: Vec<String>,
    db: u32,
    connect_timeout: Duration,
    keys: Keys,
}

/// One node's subscription.
pub(crate) struct Node {
    /// `None`: the configured server.
    address: Option<String>,
    messages: PubSubStream,
}

impl RedisRsSubscriber {
    pub(crate) fn new(target: &Target, connect_timeout: Duration, keys: Keys) -> Result<Self> {
        if target.topology == crate::config::Topology::Sentinel {
            return Err(Error::Config(
                "watch_expired on Sentinel is supported with the fred client only \
                 (RedisStoreBuilder::fred)"
                    .into(),
            ));
        }
        let db = target
            .urls
            .first()
            .and_then(|url| url.split_once("://"))
            .and_then(|(_, rest)| {
                rest.rsplit_once('@')
                    .map_or(rest, |(_, host)| host)
                    .split_once('/')
            })
            .map_or(Ok(0), |(_, db)| {
                let db = db.split('?').next().unwrap_or_default();
                if db.is_empty() { Ok(0) } else { db.parse() }
            })
            .map_err(|_| Error::Config("the database in a Redis URL must be a number".into()))?;
        Ok(Self {
            urls: target.urls.clone(),
            db,
            connect_timeout,
            keys,
        })
    }

    /// The URL of `address` (`host:port`) with the seed's scheme and credentials, or the
    /// configured server's.
    fn url(&self, address: Option<&str>) -> String {
        let seed = self.urls.first().map(String::as_str).unwrap_or_default();
        let Some(address) = address else {
            return seed.to_owned();
        };
        let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
        let (auth, _) = rest.rsplit_once('@').unwrap_or(("", rest));
        let at = if auth.is_empty() { "" } else { "@" };
        format!("{scheme}://{auth}{at}{address}")
    }

    async fn timed<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.connect_timeout, call).await {
            Ok(done) => done.map_err(|err| Error::transient(crate::conn::BACKEND, err)),
            Err(_) => Err(Error::Timeout {
                backend: crate::conn::BACKEND,
                operation: "watch_expired",
                after: self.connect_timeout,
            }),
        }
    }

    fn channel(&self) -> String {
        format!("__keyevent@{}__:expired", self.db)
    }
}

#[async_trait]
impl Subscriber for RedisRsSubscriber {
    type Node = Node;

    async fn cluster_nodes(&self) -> Result<Vec<String>> {
        let mut last = Error::Config("no Redis Cluster seed URL".into());
        for url in &self.urls {
            let listing = async {
                let client = redis::Client::open(url.as_str())
                    .map_err(|err| Error::Config(err.to_string()))?;
                let mut connection = self
                    .timed(client.get_multiplexed_async_connection())
                    .await?;
                self.timed(
                    redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query_async::<String>(&mut connection),
                )
                .await
            };
            match listing.await {
                Ok(listing) => return Ok(parse_cluster_nodes(&listing)),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    async fn subscribe(&self, address: Option<&str>) -> Result<Node> {
        let url = self.url(address);
        let client =
            redis::Client::open(url.as_str()).map_err(|err| Error::Config(err.to_string()))?;
        let name = address.unwrap_or("the server");
        let mut connection = self
            .timed(client.get_multiplexed_async_connection())
            .await?;
        let current: Vec<String> = self
            .timed(
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("notify-keyspace-events")
                    .query_async(&mut connection),
            )
            .await?;
        let flags = current.get(1).cloned().unwrap_or_default();
        if let Some(wanted) = with_expiries(&flags) {
            self.timed(
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("notify-keyspace-events")
                    .arg(&wanted)
                    .query_async::<()>(&mut connection),
            )
            .await
            .map_err(|err| notifications_refused(name, &flags, &err.to_string()))?;
        }
        let mut pubsub = self.timed(client.get_async_pubsub()).await?;
        self.timed(pubsub.subscribe(self.channel())).await?;
        Ok(Node {
            address: address.map(str::to_owned),
            messages: pubsub.into_on_message(),
        })
    }

    async fn forward(&self, mut node: Node, sink: &ExpirySink) {
        loop {
            let message = tokio::select! {
                message = node.messages.next() => message,
                () = sink.closed() => return,
            };
            match message {
                Some(message) => {
                    if let Some(expired) = expired_key(&self.keys, message.get_payload_bytes())
                        && !sink.send(expired)
                    {
                        return;
                    }
                }
                // The connection dropped: what expires until it is back is not heard here.
                None => loop {
                    tokio::select! {
                        () = tokio::time::sleep(RECONNECT_DELAY) => {}
                        () = sink.closed() => return,
                    }
                    match self.subscribe(node.address.as_deref()).await {
                        Ok(again) => {
                            node = again;
                            break;
                        }
                        Err(error) => tracing::debug!(%error, "expiry feed: reconnecting"),
                    }
                },
            }
        }
    }
}

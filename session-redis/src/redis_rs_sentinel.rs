//! redis-rs on a Sentinel deployment: the primary asked of the sentinels, and asked again
//! once its connection fails.
//!
//! redis-rs's own `SentinelClient` resolves the primary once per connection it makes; a
//! multiplexed connection never reconnects, and a `ConnectionManager` reconnects to the
//! address it started with, which after a failover is the old primary (down, or a replica).
//! So the connection is dropped on any failure that may mean "this is no longer the
//! primary" and the next call resolves it again. The failed call itself is never sent
//! again (it may have run).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, IntoConnectionInfo, RedisError};
use session_core::{Error, Result};

/// The parts of a `redis+sentinel://` URL (the form fred takes, see the crate docs).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SentinelUrl {
    /// The monitored service (`sentinelServiceName`).
    pub(crate) service: String,
    /// Each sentinel as a `redis://` URL, with the sentinels' credentials.
    pub(crate) sentinels: Vec<String>,
    /// The primary's credentials and database, as a `redis://` URL of the first sentinel.
    pub(crate) data: String,
}

fn config(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

/// Splits `url` (`redis-sentinel://[user:pass@]host:port[/db]?sentinelServiceName=..&node=..`,
/// the scheme already normalised by `parse_target`).
pub(crate) fn parse(url: &str) -> Result<SentinelUrl> {
    let rest = match url.split_once("://") {
        Some(("redis-sentinel", rest)) => rest,
        Some(("rediss-sentinel", _)) => {
            return Err(config(
                "TLS to Sentinel is supported with the fred client only \
                 (RedisStoreBuilder::fred); redis-rs is built here without TLS",
            ));
        }
        _ => return Err(config("a Sentinel URL starts with redis+sentinel://")),
    };
    let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (auth, host_db) = address.rsplit_once('@').unwrap_or(("", address));
    let (host, db) = host_db.split_once('/').unwrap_or((host_db, ""));
    let (mut service, mut nodes, mut user, mut password) = (None, Vec::new(), "", "");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("sentinelServiceName", name) => service = Some(name.to_owned()),
            ("node", node) => nodes.push(node),
            ("sentinelUsername", name) => user = name,
            ("sentinelPassword", secret) => password = secret,
            _ => {}
        }
    }
    let service = service.filter(|s| !s.is_empty()).ok_or_else(|| {
        config("a Sentinel URL names its service: add ?sentinelServiceName=<name>")
    })?;
    let sentinel_auth = match (user, password) {
        ("", "") => String::new(),
        (user, password) => format!("{user}:{password}@"),
    };
    let at = if auth.is_empty() { "" } else { "@" };
    Ok(SentinelUrl {
        service,
        sentinels: std::iter::once(host)
            .chain(nodes)
            .map(|node| format!("redis://{sentinel_auth}{node}"))
            .collect(),
        data: format!("redis://{auth}{at}{host}/{db}"),
    })
}

/// The primary of one Sentinel service, connected on demand.
///
/// One redis-rs `SentinelClient` per sentinel, asked one at a time with a timeout each:
/// redis-rs's own client asks its sentinels in order and waits without a timeout, so one
/// hung sentinel (stopped, or cut off without a reset) would stall every lookup although
/// the others answer. The one that answered last is asked first next time.
pub(crate) struct SentinelPrimary {
    sentinels: Vec<tokio::sync::Mutex<SentinelClient>>,
    /// Index of the sentinel to ask first.
    first: std::sync::atomic::AtomicUsize,
    /// How long one sentinel may take to name the primary and connect to it.
    per_sentinel: Duration,
    /// One lookup at a time: the others wait for it and take its connection.
    resolving: tokio::sync::Mutex<()>,
    current: Mutex<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
}

impl SentinelPrimary {
    /// Checks the URL and asks the sentinels for the primary once (so a wrong URL or
    /// service fails at connect time).
    pub(crate) async fn connect(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Arc<Self>> {
        let parts = parse(url)?;
        let data = parts
            .data
            .as_str()
            .into_connection_info()
            .map_err(|err| config(format!("invalid Sentinel URL: {err}")))?;
        let node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(data.redis_settings().clone());
        let sentinels = parts
            .sentinels
            .into_iter()
            .map(|sentinel| {
                SentinelClient::build(
                    vec![sentinel],
                    parts.service.clone(),
                    Some(node.clone()),
                    SentinelServerType::Master,
                )
                .map(tokio::sync::Mutex::new)
                .map_err(|err| config(format!("invalid Sentinel URL: {err}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let primary = Arc::new(Self {
            per_sentinel: connect_timeout / 2,
            sentinels,
            first: std::sync::atomic::AtomicUsize::new(0),
            resolving: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(response_timeout)),
        });
        primary.connection().await?;
        Ok(primary)
    }

    /// The connection to the primary, resolving it through the sentinels when there is none.
    pub(crate) async fn connection(&self) -> Result<MultiplexedConnection> {
        if let Some(connection) = self.cached() {
            return Ok(connection);
        }
        // Boxed: redis-rs's sentinel lookup is a deeply nested future, and each caller's
        // future would otherwise carry its type (deep enough to overflow the compiler's
        // recursion limit in an application's handler).
        Box::pin(self.resolve()).await
    }

    async fn resolve(&self) -> Result<MultiplexedConnection> {
        let _turn = self.resolving.lock().await;
        // Another caller may have resolved it while this one waited for its turn.
        if let Some(connection) = self.cached() {
            return Ok(connection);
        }
        let count = self.sentinels.len();
        let first = self.first.load(std::sync::atomic::Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in (first..first + count).map(|i| i % count) {
            let mut sentinel = self.sentinels[i].lock().await;
            let asked = sentinel.get_async_connection_with_config(&self.config);
            match tokio::time::timeout(self.per_sentinel, asked).await {
                Ok(Ok(connection)) => {
                    self.first.store(i, std::sync::atomic::Ordering::Relaxed);
                    *self.current.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(connection.clone());
                    return Ok(connection);
                }
                Ok(Err(err)) => failures.push(format!("sentinel {}: {err}", i + 1)),
                Err(_) => failures.push(format!(
                    "sentinel {}: no answer within {:?}",
                    i + 1,
                    self.per_sentinel
                )),
            }
        }
        Err(Error::transient(
            crate::conn::BACKEND,
            format!(
                "no primary found through the sentinels: {}",
                failures.join("; ")
            ),
        ))
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After `err`, forgets the connection when the error may mean the primary moved: the
    /// connection failed or timed out, or the node now refuses writes as a replica.
    pub(crate) fn after_error(&self, err: &RedisError) {
        let moved = err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.code() == Some("READONLY");
        if moved {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_sentinels_service_and_data_node() {
        let url = parse(
            "redis-sentinel://u:p@10.0.0.1:26379/3?sentinelServiceName=main&node=10.0.0.2:26379\
             &node=10.0.0.3:26379&sentinelUsername=s&sentinelPassword=q",
        )
        .unwrap();
        assert_eq!(
            url,
            SentinelUrl {
                service: "main".into(),
                sentinels: vec![
                    "redis://s:q@10.0.0.1:26379".into(),
                    "redis://s:q@10.0.0.2:26379".into(),
                    "redis://s:q@10.0.0.3:26379".into(),
                ],
                data: "redis://u:p@10.0.0.1:26379/3".into(),
            }
        );
    }

    #[test]
    fn a_url_without_service_or_with_tls_is_a_config_error() {
        for url in [
            "redis-sentinel://h:26379",
            "redis-sentinel://h:26379?sentinelServiceName=",
            "rediss-sentinel://h:26379?sentinelServiceName=m",
        ] {
            assert!(matches!(parse(url), Err(Error::Config(_))), "{url}");
        }
    }
}

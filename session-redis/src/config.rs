//! Options, the builder and URL parsing, shared by both clients.

use std::time::Duration;

use session_core::{Error, Result, StoreOptions};

use crate::durability::Durability;
use crate::format::Format;
use crate::store::RedisStore;

/// The key prefix used when none is set.
pub const DEFAULT_PREFIX: &str = "sess:";
/// The connection pool size used when none is set (fred; redis-rs multiplexes one
/// connection per node).
///
/// One: fred pipelines the commands of concurrent callers on a connection and writes them
/// out in batches only while some are queued behind each other. Spread over four
/// connections, each command found its connection's queue empty and went out in a write of
/// its own (Redis read ~1.7 commands per read call instead of ~7); on the benchmark's
/// read-modify-write at concurrency 64 that cost a third of the throughput.
pub const DEFAULT_POOL_SIZE: usize = 1;
/// The oldest Redis server this crate accepts (`SET ... PXAT`, `GETDEL`, `ZADD GT`).
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// Which client library talks to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Client {
    /// [fred](https://docs.rs/fred) (feature `fred`, the default).
    #[cfg(feature = "fred")]
    Fred,
    /// [redis-rs](https://docs.rs/redis) (feature `redis`).
    #[cfg(feature = "redis")]
    RedisRs,
}

impl Default for Client {
    fn default() -> Self {
        #[cfg(feature = "fred")]
        return Self::Fred;
        #[cfg(all(not(feature = "fred"), feature = "redis"))]
        return Self::RedisRs;
    }
}

/// The deployment the URL(s) describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server (or a primary behind a proxy).
    Standalone,
    /// A Redis Cluster, reached through one or more seed nodes.
    Cluster,
    /// A primary found through Sentinel.
    Sentinel,
}

/// Parsed connection target: the topology and the URLs in the form the clients want.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) topology: Topology,
    /// Standalone and sentinel: one URL; cluster: the seed nodes, as `redis://` or
    /// `rediss://` URLs.
    pub(crate) urls: Vec<String>,
}

/// Splits `input` on commas and decides the topology; see the crate docs for the accepted
/// forms.
pub(crate) fn parse_target(input: &str) -> Result<Target> {
    let parts: Vec<&str> = input
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(Error::Config("no Redis URL given".into()));
    }
    let mut topology = None;
    let mut urls = Vec::with_capacity(parts.len());
    for part in &parts {
        let Some((scheme, rest)) = part.split_once("://") else {
            return Err(Error::Config(format!(
                "a Redis URL starts with redis://, rediss://, redis+cluster:// or \
                 redis+sentinel://; got one without a scheme ({} characters)",
                part.len()
            )));
        };
        let (kind, base) = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "valkey" => (Topology::Standalone, "redis"),
            "rediss" | "valkeys" => (Topology::Standalone, "rediss"),
            "redis+cluster" | "redis-cluster" | "valkey+cluster" | "valkey-cluster" => {
                (Topology::Cluster, "redis")
            }
            "rediss+cluster" | "rediss-cluster" => (Topology::Cluster, "rediss"),
            "redis+sentinel" | "redis-sentinel" => (Topology::Sentinel, "redis-sentinel"),
            "rediss+sentinel" | "rediss-sentinel" => (Topology::Sentinel, "rediss-sentinel"),
            other => {
                return Err(Error::Config(format!(
                    "unsupported Redis URL scheme `{other}`: use redis://, rediss://, \
                     redis+cluster:// or redis+sentinel://"
                )));
            }
        };
        topology = match (topology, kind) {
            (None, kind) => Some(kind),
            (Some(Topology::Sentinel), _) | (Some(_), Topology::Sentinel) => {
                return Err(Error::Config(
                    "a Sentinel URL lists its other sentinels as `node=` query parameters, \
                     not as more comma-separated URLs"
                        .into(),
                ));
            }
            (Some(Topology::Cluster), _) | (Some(_), Topology::Cluster) => Some(Topology::Cluster),
            (Some(same), _) => Some(same),
        };
        urls.push(format!("{base}://{rest}"));
    }
    let mut topology = topology.unwrap_or(Topology::Standalone);
    if urls.len() > 1 {
        topology = Topology::Cluster;
    }
    Ok(Target { topology, urls })
}

/// Builds a [`RedisStore`]; every setting has a default.
///
/// ```no_run
/// # async fn demo() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_redis::RedisStore;
///
/// let store = RedisStore::builder()
///     .url("redis://10.0.0.1:7000,redis://10.0.0.2:7000") // several URLs: a cluster
///     .prefix("myapp:sess:")
///     .timeout(Duration::from_secs(2))
///     .pool_size(2)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) pool_size: usize,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) options: StoreOptions,
    pub(crate) client: Client,
    pub(crate) format: Format,
    pub(crate) durability: Durability,
    pub(crate) owner_path: Option<String>,
}

impl std::fmt::Debug for RedisStoreBuilder {
    /// Leaves the URL out: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .field("client", &self.client)
            .field("format", &self.format)
            .field("durability", &self.durability)
            .field("owner_path", &self.owner_path)
            .finish_non_exhaustive()
    }
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: DEFAULT_PREFIX.into(),
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: None,
            options: StoreOptions::default(),
            client: Client::default(),
            format: Format::default(),
            durability: Durability::default(),
            owner_path: None,
        }
    }
}

impl RedisStoreBuilder {
    /// Where Redis is (default `redis://127.0.0.1:6379`); see the crate docs for the forms
    /// accepted: one URL, several comma-separated URLs (a cluster), `redis+cluster://`,
    /// `redis+sentinel://`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The seed nodes of a cluster, one URL each.
    pub fn cluster_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls: Vec<String> = urls
            .into_iter()
            .map(|url| {
                let url = url.as_ref();
                match url.split_once("://") {
                    Some(("redis" | "valkey", rest)) => format!("redis+cluster://{rest}"),
                    Some(("rediss" | "valkeys", rest)) => format!("rediss+cluster://{rest}"),
                    _ => url.to_owned(),
                }
            })
            .collect();
        self.url = urls.join(",");
        self
    }

    /// The prefix of every key (default `sess:`). Sessions live under `{prefix}{id}`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many connections fred keeps (default [`DEFAULT_POOL_SIZE`], one, which pipelines
    /// best). More connections can help when single calls are slow on the server (large
    /// values, `destroy_by_owner` of many sessions) and others should not queue behind them.
    /// redis-rs multiplexes one connection per node and ignores this.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long connecting may take (default: the store timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long one store call may take, connection retries included (default 5 s);
    /// shorthand for `StoreOptions::timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// The options every store shares (payload limit, timeout, corrupt-record policy).
    pub fn options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }

    /// Uses the fred client (the default when feature `fred` is on).
    #[cfg(feature = "fred")]
    pub fn fred(mut self) -> Self {
        self.client = Client::Fred;
        self
    }

    /// Uses the redis-rs client.
    #[cfg(feature = "redis")]
    pub fn redis_rs(mut self) -> Self {
        self.client = Client::RedisRs;
        self
    }

    /// Uses the given client.
    pub fn client(mut self, client: Client) -> Self {
        self.client = client;
        self
    }

    /// What the session keys hold (default [`Format::Native`]).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Reads and writes sessions exactly as express-session with connect-redis does, so a
    /// Node app and this store share them: shorthand for
    /// `.format(Format::ExpressSession)`. Keep the prefix the Node app uses (connect-redis's
    /// default is `sess:`, as here). See the crate docs, "Sharing sessions with
    /// express-session".
    pub fn express_session(self) -> Self {
        self.format(Format::ExpressSession)
    }

    /// In the express-session format, where the owner is in data Node writes, such as
    /// `user.id` or `passport.user` (see [`session_core::OwnerPath`]): a session's owner
    /// is the value there (else the one Rust stored), and `list_by_owner` and
    /// `destroy_by_owner` also find the sessions Node created and Rust never wrote, which
    /// no owner index lists, by walking every session (`SCAN`, every primary of a
    /// Cluster): a cost in proportion to the number of sessions, within the call's
    /// timeout. See the crate docs, "Owners in Node's data". Connecting fails with
    /// [`Error::Config`](session_core::Error::Config) for a malformed path or the native
    /// format (which keeps the owner itself).
    pub fn owner_path(mut self, path: &str) -> Self {
        self.owner_path = Some(path.to_owned());
        self
    }

    /// When a write counts as done (default [`Durability::Primary`]: once the primary has
    /// it). [`Durability::Replicated`] makes every write wait (`WAIT`, in the same round
    /// trip) until that many replicas have it, so a failover that promotes one of them
    /// keeps it. Standalone with replicas, Sentinel and, with fred, Cluster; redis-rs on a
    /// Cluster fails to connect with [`Error::Config`] under this setting.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Connects, checks the server version (at least [`MIN_REDIS_VERSION`]) and loads nothing
    /// else: scripts are loaded on first use.
    ///
    /// Fails with [`Error::Config`] for a bad URL or a too old server, and with a retryable
    /// error when the server can't be reached in time.
    pub async fn connect(self) -> Result<RedisStore> {
        RedisStore::connect(self).await
    }

    pub(crate) fn effective_connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(self.options.timeout)
    }
}

/// Parses `redis_version:x.y.z` out of `INFO server` and checks it.
pub(crate) fn check_version(infos: &[String]) -> Result<()> {
    // A cluster client may answer with one entry per node, interleaved with node names.
    let versions: Vec<&str> = infos
        .iter()
        .flat_map(|info| info.lines())
        .filter_map(|line| line.trim().strip_prefix("redis_version:"))
        .collect();
    if versions.is_empty() {
        return Err(Error::Config(
            "INFO server has no redis_version; is this a Redis server?".into(),
        ));
    }
    for version in versions {
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if found < MIN_REDIS_VERSION {
            return Err(Error::Config(format!(
                "Redis {version} is too old: session-redis needs {}.{} or newer \
                 (SET ... PXAT, GETDEL, ZADD GT)",
                MIN_REDIS_VERSION.0, MIN_REDIS_VERSION.1
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies() {
        let t = parse_target("redis://127.0.0.1:6379/2").unwrap();
        assert_eq!(t.topology, Topology::Standalone);
        let t = parse_target("redis://a:1, redis://b:2,redis://c:3").unwrap();
        assert_eq!(t.topology, Topology::Cluster);
        assert_eq!(t.urls, ["redis://a:1", "redis://b:2", "redis://c:3"]);
        let t = parse_target("redis+cluster://a:1").unwrap();
        assert_eq!(
            (t.topology, t.urls[0].as_str()),
            (Topology::Cluster, "redis://a:1")
        );
        let t = parse_target("redis+sentinel://s:26379?sentinelServiceName=m").unwrap();
        assert_eq!(t.topology, Topology::Sentinel);
        assert!(parse_target("http://x").is_err());
        assert!(parse_target("").is_err());
        assert!(parse_target("localhost:6379").is_err());
    }

    #[test]
    fn versions() {
        let ok = ["# Server\r\nredis_version:7.0.15\r\n".to_owned()];
        assert!(check_version(&ok).is_ok());
        let old = ["redis_version:6.0.9\r\n".to_owned()];
        assert!(matches!(check_version(&old), Err(Error::Config(_))));
        assert!(check_version(&["redis_version:6.2.0".to_owned()]).is_ok());
        let cluster = [
            "127.0.0.1:7000".to_owned(),
            "redis_version:7.2.4".to_owned(),
        ];
        assert!(check_version(&cluster).is_ok());
        assert!(check_version(&["127.0.0.1:7000".to_owned()]).is_err());
    }
}

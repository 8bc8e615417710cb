//! Shared set-up for the cross-backend tests: finding a server for each backend.
//!
//! Each backend's tests call [`server_url`]: a URL from the backend's environment variable
//! when set; otherwise, when a Docker daemon is reachable, a container started with
//! testcontainers (upstream images, or the ones `SESSION_STORES_*_IMAGE` names, such as
//! those `scripts/services docker` builds from Debian packages); otherwise a [`Skip`] saying
//! what to set. The conformance runner turns a skip into a failure when `CI` is set.
//!
//! `scripts/test` starts local servers with `scripts/services` and sets the variables.

use session_core::SessionId;
use std::sync::OnceLock;

mod containers;
pub mod docker;
pub mod express_apps;
pub mod history;
pub mod linearizable;
pub mod node;
pub mod proxy;
pub mod servers;
mod support;
pub mod targets;
pub mod toxiproxy;
pub mod workload;

pub use session_core::conformance::Skip;
pub use support::{free_port, in_an_hour, wait_until};

/// A backend the tests need a server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A standalone Redis server.
    Redis,
    /// A Redis Cluster (no container fallback: set the variable).
    RedisCluster,
    /// A Redis primary behind Sentinel, as a `redis+sentinel://` URL (no container fallback:
    /// set the variable).
    RedisSentinel,
    /// A PostgreSQL server.
    Postgres,
    /// A MongoDB-protocol server (FerretDB or MongoDB).
    Mongo,
    /// A MySQL or MariaDB server (no container fallback: set the variable).
    Mysql,
}

impl Backend {
    const ALL: [Backend; 6] = [
        Self::Redis,
        Self::RedisCluster,
        Self::RedisSentinel,
        Self::Postgres,
        Self::Mongo,
        Self::Mysql,
    ];

    /// The environment variable holding the server's URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Redis => "SESSION_STORES_REDIS_URL",
            Self::RedisCluster => "SESSION_STORES_REDIS_CLUSTER_URL",
            Self::RedisSentinel => "SESSION_STORES_REDIS_SENTINEL_URL",
            Self::Postgres => "SESSION_STORES_POSTGRES_URL",
            Self::Mongo => "SESSION_STORES_MONGO_URL",
            Self::Mysql => "SESSION_STORES_MYSQL_URL",
        }
    }

    /// The environment variable naming a Docker image (`name:tag`) to run this backend's
    /// server from, instead of the upstream one (see `scripts/services docker`).
    pub fn image_var(self) -> &'static str {
        match self {
            Self::Redis => "SESSION_STORES_REDIS_IMAGE",
            Self::RedisCluster => "SESSION_STORES_REDIS_CLUSTER_IMAGE",
            Self::RedisSentinel => "SESSION_STORES_REDIS_SENTINEL_IMAGE",
            Self::Postgres => "SESSION_STORES_POSTGRES_IMAGE",
            Self::Mongo => "SESSION_STORES_MONGO_IMAGE",
            Self::Mysql => "SESSION_STORES_MYSQL_IMAGE",
        }
    }

    /// The image [`Self::image_var`] names, when set.
    pub fn custom_image(self) -> Option<String> {
        std::env::var(self.image_var())
            .ok()
            .filter(|image| !image.trim().is_empty())
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|b| *b == self).unwrap_or(0)
    }
}

/// The URL of a server for `backend`, found once per test binary.
pub fn server_url(backend: Backend) -> Result<String, Skip> {
    static FOUND: [OnceLock<Result<String, Skip>>; 6] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    FOUND[backend.index()].get_or_init(|| find(backend)).clone()
}

fn find(backend: Backend) -> Result<String, Skip> {
    if let Ok(url) = std::env::var(backend.env_var())
        && !url.trim().is_empty()
    {
        return Ok(url);
    }
    if !docker_reachable() {
        return Err(Skip(format!(
            "no {backend:?} server: set {} (or run scripts/test, which starts one), or make a \
             Docker daemon reachable for testcontainers",
            backend.env_var()
        )));
    }
    containers::start(backend)
}

fn docker_reachable() -> bool {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        return !host.is_empty();
    }
    std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok()
}

/// Options for conformance runs against a MongoDB-protocol server: a longer per-call timeout.
///
/// On FerretDB the store serialises writes to one session (session-mongo's lease locks,
/// because FerretDB's filtered writes are not atomic), so the suite's 32 writers on one
/// session queue behind each other for several seconds on a loaded 2-core machine, and a
/// queued call counts against its timeout. The suite checks correctness, not latency; the
/// fault tests keep their short timeouts.
pub fn mongo_suite_options(options: session_core::StoreOptions) -> session_core::StoreOptions {
    let timeout = options.timeout.max(std::time::Duration::from_secs(30));
    session_core::StoreOptions { timeout, ..options }
}

/// `database`, the MongoDB database a test binary keeps its collections in, emptied on the
/// first call of each test process (best effort, within 10 s): every store of a test gets
/// a collection of its own, and FerretDB on SQLite slows down with every collection it
/// holds (a run on a database grown over a day of runs took twice as long and missed
/// short deadlines). Call it before the process's first store on `database`.
pub async fn mongo_test_database(url: &str, database: &'static str) -> &'static str {
    static EMPTIED: tokio::sync::Mutex<Vec<&'static str>> =
        tokio::sync::Mutex::const_new(Vec::new());
    let mut emptied = EMPTIED.lock().await;
    if !emptied.contains(&database) {
        let drop = async {
            let client = session_mongo::mongodb::Client::with_uri_str(url).await?;
            client.database(database).drop().await
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drop).await;
        emptied.push(database);
    }
    database
}

/// `<prefix>_` and 12 random characters (lowercase letters, digits, `_`): a table, schema,
/// collection or key-prefix name no other store of this run or an earlier one uses.
pub fn unique_name(prefix: &str) -> String {
    let random = SessionId::generate().expose()[..12]
        .to_ascii_lowercase()
        .replace('-', "_");
    format!("{prefix}_{random}")
}

/// A `sqlite://` URL of a new database file in the temp dir, `<purpose>-<random>.db` in a
/// directory of this project's test files. The first call of a process deletes files there
/// older than a day, so runs don't pile them up (a test of another process still running is
/// younger than that).
pub fn sqlite_test_url(purpose: &str) -> String {
    static SWEPT: OnceLock<()> = OnceLock::new();
    let dir = std::env::temp_dir().join("session-stores-sqlite");
    SWEPT.get_or_init(|| {
        let day = std::time::Duration::from_secs(24 * 3600);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > day));
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    });
    std::fs::create_dir_all(&dir).expect("creating the SQLite test directory in the temp dir");
    let name = SessionId::generate().expose()[..12].replace(['-', '_'], "x");
    format!("sqlite://{}/{purpose}-{name}.db", dir.display())
}

/// Fresh stores of every backend, for the cross-crate scenarios (demo, adapters).
pub mod backends {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use session_core::SessionStore;
    use session_memory::MemoryStore;

    use super::{Backend, Skip, server_url};

    type StoreFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn SessionStore>, Skip>> + Send>>;

    /// Makes a fresh, empty store of one backend, or says why it can't.
    pub type StoreFactory = fn() -> StoreFuture;

    /// Every backend a scenario runs on: the one place a backend plugs in.
    pub const ALL: &[(&str, StoreFactory)] = &[
        ("memory", memory),
        ("redis", redis),
        ("postgres", postgres),
        ("mongo", mongo),
        ("sqlite", sqlite),
        ("mysql", mysql),
    ];

    /// A name no other store in this run or an earlier one uses.
    fn namespace() -> String {
        super::unique_name("it")
    }

    fn memory() -> StoreFuture {
        Box::pin(async { Ok(Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>) })
    }

    fn redis() -> StoreFuture {
        Box::pin(async {
            let url = server_url(Backend::Redis)?;
            let store = session_redis::RedisStore::builder()
                .url(url)
                .prefix(format!("{}:", namespace()))
                .connect()
                .await
                .expect("a Redis server was given but the store could not connect");
            Ok(Arc::new(store) as Arc<dyn SessionStore>)
        })
    }

    fn postgres() -> StoreFuture {
        Box::pin(async {
            let url = server_url(Backend::Postgres)?;
            let store = session_postgres::PostgresStore::builder()
                .schema("scenarios")
                .table(namespace())
                .max_connections(4)
                .connect(&url)
                .await
                .expect("a PostgreSQL server was given but the store could not connect");
            store.migrate().await.expect("migrating the sessions table");
            Ok(Arc::new(store) as Arc<dyn SessionStore>)
        })
    }

    fn mongo() -> StoreFuture {
        Box::pin(async {
            let url = server_url(Backend::Mongo)?;
            let config = session_mongo::MongoConfig {
                collection: Some(namespace()),
                expiry: session_mongo::ExpiryMode::Disabled,
                ..Default::default()
            };
            let store = session_mongo::MongoStore::connect(&url, config)
                .await
                .expect("a MongoDB server was given but the store could not connect");
            Ok(Arc::new(store) as Arc<dyn SessionStore>)
        })
    }

    fn sqlite() -> StoreFuture {
        Box::pin(async {
            let store = session_sqlite::SqliteStore::builder()
                .connect(&super::sqlite_test_url("scenarios"))
                .await
                .expect("opening a SQLite file in the temp dir");
            store.migrate().await.expect("migrating the sessions table");
            Ok(Arc::new(store) as Arc<dyn SessionStore>)
        })
    }

    fn mysql() -> StoreFuture {
        Box::pin(async {
            let url = server_url(Backend::Mysql)?;
            let store = session_mysql::MysqlStore::builder()
                .table(namespace())
                .max_connections(4)
                .connect(&url)
                .await
                .expect("a MySQL server was given but the store could not connect");
            store.migrate().await.expect("migrating the sessions table");
            Ok(Arc::new(store) as Arc<dyn SessionStore>)
        })
    }

    /// Runs `scenario` on a fresh store of every backend; a backend without a server is
    /// skipped loudly (a failure when `CI` is set).
    pub async fn on_every_backend<F, Fut>(test: &str, scenario: F)
    where
        F: Fn(Arc<dyn SessionStore>) -> Fut,
        Fut: Future<Output = ()>,
    {
        for (name, store) in ALL {
            match store().await {
                Ok(store) => scenario(store).await,
                Err(Skip(reason)) => {
                    session_core::conformance::skip(&format!("{test} on {name}"), &reason)
                }
            }
        }
    }
}

/// The README's examples, compiled as doctests so the README stays true.
#[doc = include_str!("../../README.md")]
mod readme {}

//! Opening any store by URL, the one place the URL schemes are read (the demo opens its
//! store here too).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use session_core::{
    ClaimExpired, Error, ExpiredSessions, Result, ScanSessions, StoreOptions, WatchOptions,
    async_trait,
};

use crate::redact::redacted;
use crate::setting::{self, Names};

/// What the URL schemes mean, for error messages.
const SCHEMES: &str = "memory, or a redis://, rediss://, redis+cluster://, redis+sentinel://, \
                       postgres://, mysql://, mariadb://, sqlite:// or mongodb:// URL";

/// A store opened from a URL.
pub struct Opened {
    /// The store, able to walk all its sessions.
    pub store: Arc<dyn ScanSessions>,
    /// The backend's name, as telemetry names database systems: `memory`, `redis`,
    /// `postgresql`, `mysql`, `sqlite` or `mongodb`.
    pub backend: &'static str,
    /// A batched purge of expired sessions, for the backends that keep expired records
    /// until purged (PostgreSQL, MySQL, SQLite, MongoDB); `None` where the server expires
    /// sessions by itself (Redis, the memory store).
    pub purge: Option<Purge>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("store", &self.store)
            .field("backend", &self.backend)
            .field("purge", &self.purge.is_some())
            .finish()
    }
}

/// Removes expired sessions a batch at a time: the store's own purge
/// ([`ClaimExpired::claim_expired`], the statement its expiry feed runs), so an operator's
/// purge and the applications' feeds split the expired sessions between them instead of
/// racing, and a purge of millions of rows never holds one long transaction.
#[derive(Clone)]
pub struct Purge(Arc<dyn PurgeBatch>);

impl Purge {
    fn of<S: ClaimExpired>(store: S) -> Self {
        Self(Arc::new(Claiming(store)))
    }

    /// Removes up to `size` (at least 1) expired sessions; how many it claimed. Fewer than
    /// `size` means none were left when it looked.
    pub async fn batch(&self, size: u32) -> Result<u64> {
        self.0.batch(size.max(1)).await
    }
}

impl fmt::Debug for Purge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Purge")
    }
}

#[async_trait]
trait PurgeBatch: Send + Sync {
    async fn batch(&self, size: u32) -> Result<u64>;
}

struct Claiming<S>(S);

#[async_trait]
impl<S: ClaimExpired> PurgeBatch for Claiming<S> {
    async fn batch(&self, size: u32) -> Result<u64> {
        let store = self.0.clone();
        let options = WatchOptions::default().batch(size);
        let (done, result) = tokio::sync::oneshot::channel();
        // The claim reports each session to a sink before its removal is final; the
        // receiver must live until the claim returns (a closed sink makes it give up and
        // leave the rows). Nobody needs the reports themselves: they are dropped with it.
        let reports = ExpiredSessions::spawn(move |sink| async move {
            let _ = done.send(store.claim_expired(options, &sink).await);
        });
        let claimed = result.await.map_err(|_| {
            Error::permanent("session-admin", "the purge task ended without an answer")
        });
        drop(reports);
        claimed?
    }
}

/// How [`OpenOptions::open`] opens a store. [`OpenOptions::new`] is what an application
/// wants (the demo's settings); [`OpenOptions::inspect`] what an operator's tool wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    timeout: Option<Duration>,
    migrate: bool,
    mongo_pruning: Option<Duration>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// As an application opens its store: the SQL stores create their table when missing,
    /// MongoDB prunes expired sessions every minute (the interval mode, which also works on
    /// MongoDB-protocol servers without TTL indexes), the stores' default timeout.
    pub fn new() -> Self {
        Self {
            timeout: None,
            migrate: true,
            mongo_pruning: Some(Duration::from_secs(60)),
        }
    }

    /// As an operator's tool opens a store it only looks at or cleans: no table is created
    /// (a mistyped URL fails instead of showing an empty store; a SQLite file that doesn't
    /// exist is refused rather than created) and nothing runs in the background.
    pub fn inspect() -> Self {
        Self {
            timeout: None,
            migrate: false,
            mongo_pruning: None,
        }
    }

    /// How long one store call may take, connecting included (default: the store's, 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the SQL stores create their table and indexes when missing.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Whether a MongoDB store prunes expired sessions itself, and how often (`None`: it
    /// doesn't; expired documents stay until a purge or the server's TTL index removes
    /// them).
    pub fn mongo_pruning(mut self, every: Option<Duration>) -> Self {
        self.mongo_pruning = every;
        self
    }

    fn store_options(&self) -> StoreOptions {
        let mut options = StoreOptions::default();
        if let Some(timeout) = self.timeout {
            options.timeout = timeout;
        }
        options
    }

    /// Opens the store `url` names:
    ///
    /// | URL | store |
    /// | --- | --- |
    /// | `memory` (or empty) | a new in-process store |
    /// | `redis://`, `rediss://`, `redis+cluster://` (or comma-separated nodes), `redis+sentinel://` | Redis |
    /// | `postgres://`, `postgresql://` | PostgreSQL |
    /// | `mysql://`, `mariadb://` | MySQL or MariaDB |
    /// | `sqlite://path/to/file.db`, `sqlite::memory:` | SQLite |
    /// | `mongodb://`, `mongodb+srv://` | MongoDB or FerretDB (database from the URL's path) |
    ///
    /// Where the sessions live inside the server, when the application chose other names
    /// than the stores' defaults, goes in query parameters of our own, taken out before the
    /// URL reaches the driver: `session_prefix` (Redis), `session_table` (the SQL stores),
    /// `session_schema` (PostgreSQL), `session_database` and `session_collection`
    /// (MongoDB). For example `postgres://app@db/app?session_schema=auth&session_table=web`.
    /// `session_format=express` (with `session_owner_path=passport.user`, where the app
    /// keeps the user) reads and writes what express-session stores with connect-redis,
    /// connect-pg-simple (table `session`) or connect-mongo (collection `sessions`).
    ///
    /// Errors never hold the URL's passwords (see [`redacted`](crate::redacted)); a URL
    /// this can't read is an [`Error::Config`].
    pub async fn open(&self, url: &str) -> Result<Opened> {
        let setting = setting::parse(url)?;
        let names = &setting.names;
        let url = setting.url.as_str();
        Ok(match setting.scheme.as_str() {
            "" | "memory" => {
                names.only("memory", &[])?;
                let store = session_memory::MemoryStore::builder()
                    .options(self.store_options())
                    .build();
                opened(store, "memory", None)
            }
            "redis" | "rediss" | "redis+cluster" | "redis-cluster" | "rediss+cluster"
            | "rediss-cluster" | "redis+sentinel" | "redis-sentinel" | "rediss+sentinel"
            | "rediss-sentinel" | "valkey" | "valkeys" | "valkey+cluster" | "valkey-cluster" => {
                names.only(
                    "redis",
                    &["session_prefix", "session_format", "session_owner_path"],
                )?;
                let mut builder = session_redis::RedisStore::builder()
                    .url(url)
                    .options(self.store_options());
                if let Some(prefix) = &names.prefix {
                    builder = builder.prefix(prefix.clone());
                }
                if express_format(names)? {
                    builder = builder.express_session();
                }
                if let Some(path) = &names.owner_path {
                    builder = builder.owner_path(path);
                }
                opened(builder.connect().await?, "redis", None)
            }
            "postgres" | "postgresql" => {
                names.only(
                    "postgresql",
                    &[
                        "session_table",
                        "session_schema",
                        "session_format",
                        "session_owner_path",
                    ],
                )?;
                let mut builder =
                    session_postgres::PostgresStore::builder().options(self.store_options());
                if express_format(names)? {
                    builder = builder.express_session();
                }
                if let Some(path) = &names.owner_path {
                    builder = builder.owner_path(path.clone());
                }
                if let Some(table) = &names.table {
                    builder = builder.table(table.clone());
                }
                if let Some(schema) = &names.schema {
                    builder = builder.schema(schema.clone());
                }
                let store = builder.connect(url).await?;
                if self.migrate {
                    store.migrate().await?;
                }
                let purge = Purge::of(store.clone());
                opened(store, "postgresql", Some(purge))
            }
            "mysql" | "mariadb" => {
                names.only("mysql", &["session_table"])?;
                let mut builder =
                    session_mysql::MysqlStore::builder().options(self.store_options());
                if let Some(table) = &names.table {
                    builder = builder.table(table.clone());
                }
                let store = builder
                    .connect(&url.replacen("mariadb:", "mysql:", 1))
                    .await?;
                if self.migrate {
                    store.migrate().await?;
                }
                let purge = Purge::of(store.clone());
                opened(store, "mysql", Some(purge))
            }
            "sqlite" => {
                names.only("sqlite", &["session_table"])?;
                if !self.migrate {
                    sqlite_file_exists(url)?;
                }
                let mut builder =
                    session_sqlite::SqliteStore::builder().options(self.store_options());
                if let Some(table) = &names.table {
                    builder = builder.table(table.clone());
                }
                let store = builder.connect(url).await?;
                if self.migrate {
                    store.migrate().await?;
                }
                let purge = Purge::of(store.clone());
                opened(store, "sqlite", Some(purge))
            }
            "mongodb" | "mongodb+srv" => {
                names.only(
                    "mongodb",
                    &[
                        "session_database",
                        "session_collection",
                        "session_format",
                        "session_owner_path",
                    ],
                )?;
                let store = self.open_mongo(url, names).await?;
                let purge = Purge::of(store.clone());
                opened(store, "mongodb", Some(purge))
            }
            scheme => {
                return Err(Error::Config(format!(
                    "the store URL {} has the scheme {scheme:?}: expected {SCHEMES}",
                    redacted(url)
                )));
            }
        })
    }

    /// A MongoDB store. Without pruning it opens in the mode that leaves expired documents
    /// alone; a collection whose `expires_at` index is a TTL index (the store's default
    /// mode on MongoDB, `ExpiryMode::Native`) refuses that with a configuration error, and
    /// is then opened in the native mode, which creates nothing there.
    async fn open_mongo(&self, url: &str, names: &Names) -> Result<session_mongo::MongoStore> {
        use session_mongo::{ExpiryMode, MongoConfig, MongoStore};
        let express = express_format(names)?;
        let config = |expiry| MongoConfig {
            database: names.database.clone(),
            collection: names.collection.clone(),
            expiry,
            options: self.store_options(),
            format: if express {
                session_mongo::Format::ExpressSession
            } else {
                session_mongo::Format::Native
            },
            owner_path: names.owner_path.clone(),
            ..Default::default()
        };
        match self.mongo_pruning {
            Some(every) => MongoStore::connect(url, config(ExpiryMode::Interval(every))).await,
            None => match MongoStore::connect(url, config(ExpiryMode::Disabled)).await {
                Err(Error::Config(first)) => MongoStore::connect(url, config(ExpiryMode::Native))
                    .await
                    .map_err(|_| Error::Config(first)),
                other => other,
            },
        }
    }
}

/// Whether `session_format` asks for the format shared with express-session.
fn express_format(names: &Names) -> Result<bool> {
    match names.format.as_deref() {
        None | Some("native") => Ok(false),
        Some("express") => Ok(true),
        Some(other) => Err(Error::Config(format!(
            "session_format={other}: give `native` (the default) or `express` (what \
             express-session stores with connect-redis, connect-pg-simple or connect-mongo)"
        ))),
    }
}

fn opened<S: ScanSessions + 'static>(
    store: S,
    backend: &'static str,
    purge: Option<Purge>,
) -> Opened {
    Opened {
        store: Arc::new(store),
        backend,
        purge,
    }
}

/// Refuses a SQLite URL naming a file that isn't there (sqlx would create it).
fn sqlite_file_exists(url: &str) -> Result<()> {
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return Ok(());
    }
    if std::path::Path::new(path).is_file() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "there is no SQLite database at {path:?} (the store URL {})",
            redacted(url)
        )))
    }
}

/// Opens the store `url` names as an application would ([`OpenOptions::new`]): see
/// [`OpenOptions::open`] for the URLs.
pub async fn open(url: &str) -> Result<Opened> {
    OpenOptions::new().open(url).await
}

//! Builds the targets of each backend: ours, the raw baseline and the peers, each in its own
//! key prefix, table or collection (all named `bench…`), dropped before and after the run.

use std::fmt;

use anyhow::{Context as _, Result};
use fred::prelude::{ClientLike, Config, Pool};
use mongodb::Database;
use session_core::{InvalidationFeed, TrackOptions};
use session_memory::{CachedStore, MemoryStore};
use session_mongo::{ExpiryMode, MongoConfig, MongoStore};
use session_postgres::PostgresStore;
use session_redis::{DEFAULT_POOL_SIZE, Durability, RedisStore, RedisStoreBuilder};
use session_telemetry::InstrumentedStore;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::peers::actix::Actix;
use crate::peers::{tower14::Tower as Tower14, tower15::Tower as Tower15};
use crate::raw::{MemoryKv, MongoKv, PostgresKv, RedisKv};
use crate::runner::{Job, job, job_dropped_at_teardown};
use crate::target::Ours;

/// The name of tower-sessions' MemoryStore in the output (the memory target compares to it).
pub const TOWER_MEMORY: &str = "tower-sessions MemoryStore";

/// The telemetry wrapper's payload-size sampling when a recorder is installed, as in the
/// demo.
const PAYLOAD_ONE_IN: u32 = 16;

/// The telemetry wrapper over the memory store (its overhead against the bare store).
pub const INSTRUMENTED_MEMORY: &str = "InstrumentedStore<session-memory>";

/// The telemetry wrapper over session-redis with fred (against `session-redis (fred)`).
pub const INSTRUMENTED_REDIS: &str = "InstrumentedStore<session-redis (fred)>";

/// The cache over session-redis with the client-tracking feed (against
/// `CachedStore<session-redis>`, which only expires its entries).
pub const TRACKED_REDIS: &str = "CachedStore<session-redis> (tracked)";

/// Peers that are not benchmarked, and why (shown in the output).
pub const EXCLUDED: &[(&str, &str)] = &[(
    "tower-sessions-mongodb-store",
    "its newest release (0.11) is built on mongodb 2.7, bson 2 and tower-sessions-core 0.11: \
     no release for the mongodb 3 driver or tower-sessions 0.14/0.15, so it would compile a \
     second, older MongoDB driver next to ours; left out",
)];

/// A backend: where sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// In this process.
    Memory,
    /// Redis (standalone).
    Redis,
    /// A Redis primary behind Sentinel, with a replica: session-redis under each
    /// [`Durability`] setting, against raw fred on the same primary.
    RedisSentinel,
    /// PostgreSQL.
    Postgres,
    /// MongoDB, or a MongoDB-protocol server such as FerretDB.
    Mongo,
    /// SQLite (a file; no server).
    Sqlite,
    /// MySQL or MariaDB.
    Mysql,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::RedisSentinel => "redis-sentinel",
            Self::Postgres => "postgres",
            Self::Mongo => "mongo",
            Self::Sqlite => "sqlite",
            Self::Mysql => "mysql",
        })
    }
}

/// The servers' URLs.
#[derive(Debug, Clone, Default)]
pub struct Urls {
    /// Redis standalone.
    pub redis: Option<String>,
    /// Redis behind Sentinel (`redis+sentinel://`).
    pub redis_sentinel: Option<String>,
    /// PostgreSQL.
    pub postgres: Option<String>,
    /// MongoDB.
    pub mongo: Option<String>,
    /// SQLite (`sqlite://file`).
    pub sqlite: Option<String>,
    /// MySQL/MariaDB.
    pub mysql: Option<String>,
}

impl Urls {
    /// The URL `backend` needs, `Ok(None)` for memory; an error naming the setting when unset.
    pub fn of(&self, backend: Backend) -> Result<Option<&str>, String> {
        let (url, var) = match backend {
            Backend::Memory => return Ok(None),
            Backend::Redis => (&self.redis, "SESSION_STORES_REDIS_URL / --redis-url"),
            Backend::RedisSentinel => (
                &self.redis_sentinel,
                "SESSION_STORES_REDIS_SENTINEL_URL / --redis-sentinel-url",
            ),
            Backend::Postgres => (
                &self.postgres,
                "SESSION_STORES_POSTGRES_URL / --postgres-url",
            ),
            Backend::Mongo => (&self.mongo, "SESSION_STORES_MONGO_URL / --mongo-url"),
            Backend::Sqlite => (&self.sqlite, "--sqlite-url"),
            Backend::Mysql => (&self.mysql, "SESSION_STORES_MYSQL_URL / --mysql-url"),
        };
        url.as_deref()
            .map(Some)
            .ok_or_else(|| format!("no server: set {var}"))
    }
}

/// Every target of `backend` (connecting to `url`), after dropping leftovers of earlier runs;
/// `recorded`: whether a metrics recorder is installed (the telemetry wrapper then records
/// payload sizes too, as an app with an exporter would).
pub async fn jobs(
    backend: Backend,
    url: Option<&str>,
    sessions: usize,
    recorded: bool,
) -> Result<Vec<Box<dyn Job>>> {
    let url = url.unwrap_or_default();
    match backend {
        Backend::Memory => Ok(memory(sessions, recorded)),
        Backend::Redis => redis(url, recorded).await,
        Backend::RedisSentinel => redis_sentinel(url).await,
        Backend::Postgres => postgres(url).await,
        Backend::Mongo => mongo(url).await,
        Backend::Sqlite => sqlite(url).await,
        Backend::Mysql => mysql(url).await,
    }
}

/// Drops what the targets of `backend` left behind (tables, collections); Redis keys are
/// deleted one by one by the runner.
pub async fn teardown(backend: Backend, url: Option<&str>) -> Result<()> {
    let url = url.unwrap_or_default();
    match backend {
        Backend::Memory | Backend::Redis | Backend::RedisSentinel => Ok(()),
        Backend::Postgres => drop_tables(&pg_pool(url).await?).await,
        Backend::Mongo => Ok(mongo_database(url).await?.drop().await?),
        Backend::Sqlite => drop_sql_tables(&sqlite_pool(url).await?).await,
        Backend::Mysql => drop_sql_tables(&mysql_pool(url).await?).await,
    }
}

fn memory(sessions: usize, recorded: bool) -> Vec<Box<dyn Job>> {
    let capacity = 2 * sessions as u64 + 2_000;
    vec![
        job(Ours::new(
            // Room for every session (a --scale run holds up to millions): the bound is
            // not what this measures.
            MemoryStore::builder()
                .max_bytes((sessions as u64 * 4096).max(256 << 20))
                .build(),
            "session-memory MemoryStore",
            "memory",
        )),
        job(Ours::new(
            InstrumentedStore::builder(MemoryStore::new())
                .system("memory")
                .payload_sizes(if recorded { PAYLOAD_ONE_IN } else { 0 })
                .build(),
            INSTRUMENTED_MEMORY,
            "memory",
        )),
        job(MemoryKv::target()),
        job(Tower15::new(
            tower_sessions_memory_store::MemoryStore::default(),
            TOWER_MEMORY,
            "memory",
        )),
        job(Tower14::new(
            tower_sessions_moka_store::MokaStore::new(Some(capacity)),
            "tower-sessions-moka-store",
            "memory",
        )),
    ]
}

fn redis_store(url: &str, prefix: &str) -> RedisStoreBuilder {
    RedisStore::builder()
        .url(url)
        .prefix(format!("bench:{prefix}:"))
}

async fn fred_pool(url: &str) -> Result<Pool> {
    let pool = Pool::new(Config::from_url(url)?, None, None, None, DEFAULT_POOL_SIZE)?;
    pool.init().await.context("connecting fred")?;
    Ok(pool)
}

async fn redis(url: &str, recorded: bool) -> Result<Vec<Box<dyn Job>>> {
    let fred = redis_store(url, "fred").fred().connect().await?;
    let redis_rs = redis_store(url, "redis-rs").redis_rs().connect().await?;
    let cached = CachedStore::builder(redis_store(url, "cached").connect().await?).build();
    // The same cache evicting on Redis' client tracking: what the feed costs reads (its
    // own writes come back as invalidations, so a written session is read from Redis once
    // more) against the plain cache's 1 s staleness.
    let tracked = {
        let redis = redis_store(url, "tracked").connect().await?;
        let feed = redis.watch_invalidations(TrackOptions::default()).await?;
        CachedStore::builder(redis)
            .staleness(std::time::Duration::from_secs(60))
            .invalidations(feed)
            .build()
    };
    let instrumented =
        InstrumentedStore::builder(redis_store(url, "instrumented").connect().await?)
            .system("redis")
            .payload_sizes(if recorded { PAYLOAD_ONE_IN } else { 0 })
            .build();
    Ok(vec![
        job(Ours::new(fred, "session-redis (fred)", "redis")),
        job(Ours::new(redis_rs, "session-redis (redis-rs)", "redis")),
        job(Ours::new(cached, "CachedStore<session-redis>", "redis")),
        job(Ours::new(tracked, TRACKED_REDIS, "redis")),
        job(Ours::new(instrumented, INSTRUMENTED_REDIS, "redis")),
        job(RedisKv::connect(url, DEFAULT_POOL_SIZE, "bench:raw:").await?),
        job(Tower14::new(
            tower_sessions_redis_store::RedisStore::new(fred_pool(url).await?),
            "tower-sessions-redis-store (fred)",
            "redis",
        )),
        job(Actix::connect(url, "bench:actix:").await?),
    ])
}

/// `WAIT` for the Sentinel set's one replica after every write.
const REPLICATED: Durability = Durability::Replicated {
    replicas: 1,
    timeout: std::time::Duration::from_secs(1),
};

/// Each client under each durability setting; the raw baseline is fred's GET/SET on the
/// same primary (fred's own Sentinel URL scheme).
async fn redis_sentinel(url: &str) -> Result<Vec<Box<dyn Job>>> {
    let backend = "redis-sentinel";
    let store = |prefix, durability| redis_store(url, prefix).durability(durability);
    let raw_url = url.replacen("redis+sentinel://", "redis-sentinel://", 1);
    Ok(vec![
        job(Ours::new(
            store("fred", Durability::Primary).fred().connect().await?,
            "session-redis (fred)",
            backend,
        )),
        job(Ours::new(
            store("fred-replicated", REPLICATED)
                .fred()
                .connect()
                .await?,
            "session-redis (fred, Replicated 1)",
            backend,
        )),
        job(Ours::new(
            store("redis-rs", Durability::Primary)
                .redis_rs()
                .connect()
                .await?,
            "session-redis (redis-rs)",
            backend,
        )),
        job(Ours::new(
            store("redis-rs-replicated", REPLICATED)
                .redis_rs()
                .connect()
                .await?,
            "session-redis (redis-rs, Replicated 1)",
            backend,
        )),
        job(RedisKv::connect(&raw_url, DEFAULT_POOL_SIZE, "bench:raw-sentinel:").await?),
    ])
}

/// The tables the PostgreSQL targets use.
const PG_TABLES: [&str; 4] = ["bench_sessions", "bench_cached", "bench_raw", "bench_tower"];

async fn pg_pool(url: &str) -> Result<PgPool> {
    let max = session_postgres::DEFAULT_MAX_CONNECTIONS;
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .connect(url)
        .await?)
}

async fn drop_tables(pool: &PgPool) -> Result<()> {
    sqlx::query(&format!("DROP TABLE IF EXISTS {}", PG_TABLES.join(", ")))
        .execute(pool)
        .await?;
    Ok(())
}

async fn postgres_store(url: &str, table: &str) -> Result<PostgresStore> {
    let store = PostgresStore::builder().table(table).connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

async fn postgres(url: &str) -> Result<Vec<Box<dyn Job>>> {
    drop_tables(&pg_pool(url).await?).await?;
    let ours = postgres_store(url, PG_TABLES[0]).await?;
    let cached = CachedStore::builder(postgres_store(url, PG_TABLES[1]).await?).build();
    let tower = tower_sessions_sqlx_store::PostgresStore::new(pg_pool(url).await?)
        .with_table_name(PG_TABLES[3])
        .map_err(anyhow::Error::msg)?;
    tower.migrate().await?;
    Ok(vec![
        job(Ours::new(ours, "session-postgres", "postgres")),
        job(Ours::new(
            cached,
            "CachedStore<session-postgres>",
            "postgres",
        )),
        job(PostgresKv::create(pg_pool(url).await?, PG_TABLES[2]).await?),
        job(Tower14::new(
            tower,
            "tower-sessions-sqlx-store (postgres)",
            "postgres",
        )),
    ])
}

/// The database every MongoDB target lives in (dropped before and after).
const MONGO_DATABASE: &str = "session_bench";

async fn mongo_database(url: &str) -> Result<Database> {
    let client = mongodb::Client::with_uri_str(url).await?;
    Ok(client.database(MONGO_DATABASE))
}

/// The per-call timeout of the MongoDB stores. FerretDB 1.x on SQLite reads the whole
/// collection for every call, even by `_id`, so at concurrency 64 calls wait for seconds;
/// the default 5 s would turn the comparison into a count of timeouts (the raw client has
/// none).
const MONGO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

async fn mongo_store(url: &str, collection: &str) -> Result<MongoStore> {
    let config = MongoConfig {
        database: Some(MONGO_DATABASE.into()),
        collection: Some(collection.into()),
        expiry: ExpiryMode::Disabled,
        options: session_core::StoreOptions {
            timeout: MONGO_TIMEOUT,
            ..session_core::StoreOptions::default()
        },
        ..MongoConfig::default()
    };
    Ok(MongoStore::connect(url, config).await?)
}

async fn mongo(url: &str) -> Result<Vec<Box<dyn Job>>> {
    let database = mongo_database(url).await?;
    database.drop().await?;
    let ours = mongo_store(url, "bench_sessions").await?;
    let cached = CachedStore::builder(mongo_store(url, "bench_cached").await?).build();
    // The database is dropped at teardown: on FerretDB deleting 20,000 sessions one by one
    // would read the collection 40,000 times.
    Ok(vec![
        job_dropped_at_teardown(Ours::new(ours, "session-mongo", "mongo")),
        job_dropped_at_teardown(Ours::new(cached, "CachedStore<session-mongo>", "mongo")),
        job_dropped_at_teardown(MongoKv::create(database.collection("bench_raw")).await?),
    ])
}

/// The tables the SQLite and MySQL targets use.
const SQL_TABLES: [&str; 4] = ["bench_sessions", "bench_cached", "bench_raw", "bench_tower"];

async fn drop_sql_tables<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Result<()>
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    // One by one: SQLite drops one table per statement.
    for table in SQL_TABLES {
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Every SQLite target gets a pool like this one, so all run with the same settings: the
/// store's default connection count, WAL (readers don't wait for the writer), a busy
/// timeout instead of failing at once.
async fn sqlite_pool(url: &str) -> Result<sqlx::SqlitePool> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let options = <SqliteConnectOptions as std::str::FromStr>::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(5));
    Ok(SqlitePoolOptions::new()
        .max_connections(session_sqlite::DEFAULT_MAX_CONNECTIONS)
        .connect_with(options)
        .await?)
}

async fn sqlite_store(url: &str, table: &str) -> Result<session_sqlite::SqliteStore> {
    let store = session_sqlite::SqliteStore::builder()
        .table(table)
        .build(sqlite_pool(url).await?)?;
    store.migrate().await?;
    Ok(store)
}

async fn sqlite(url: &str) -> Result<Vec<Box<dyn Job>>> {
    drop_sql_tables(&sqlite_pool(url).await?).await?;
    let ours = sqlite_store(url, SQL_TABLES[0]).await?;
    let cached = CachedStore::builder(sqlite_store(url, SQL_TABLES[1]).await?).build();
    let tower = tower_sessions_sqlx_store::SqliteStore::new(sqlite_pool(url).await?)
        .with_table_name(SQL_TABLES[3])
        .map_err(anyhow::Error::msg)?;
    tower.migrate().await?;
    Ok(vec![
        job(Ours::new(ours, "session-sqlite", "sqlite")),
        job(Ours::new(cached, "CachedStore<session-sqlite>", "sqlite")),
        job(crate::raw_sql::sqlite(sqlite_pool(url).await?, SQL_TABLES[2]).await?),
        job(Tower14::new(
            tower,
            "tower-sessions-sqlx-store (sqlite)",
            "sqlite",
        )),
    ])
}

/// Every MySQL target gets a pool like this one (the store's default size).
async fn mysql_pool(url: &str) -> Result<sqlx::MySqlPool> {
    Ok(sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(session_mysql::DEFAULT_MAX_CONNECTIONS)
        .connect(url)
        .await?)
}

async fn mysql_store(url: &str, table: &str) -> Result<session_mysql::MysqlStore> {
    let store = session_mysql::MysqlStore::builder()
        .table(table)
        .build(mysql_pool(url).await?)?;
    store.migrate().await?;
    Ok(store)
}

async fn mysql(url: &str) -> Result<Vec<Box<dyn Job>>> {
    drop_sql_tables(&mysql_pool(url).await?).await?;
    let ours = mysql_store(url, SQL_TABLES[0]).await?;
    let cached = CachedStore::builder(mysql_store(url, SQL_TABLES[1]).await?).build();
    let tower = tower_sessions_sqlx_store::MySqlStore::new(mysql_pool(url).await?)
        .with_table_name(SQL_TABLES[3])
        .map_err(anyhow::Error::msg)?;
    tower.migrate().await?;
    Ok(vec![
        job(Ours::new(ours, "session-mysql", "mysql")),
        job(Ours::new(cached, "CachedStore<session-mysql>", "mysql")),
        job(crate::raw_sql::mysql(mysql_pool(url).await?, SQL_TABLES[2]).await?),
        job(Tower14::new(
            tower,
            "tower-sessions-sqlx-store (mysql)",
            "mysql",
        )),
    ])
}

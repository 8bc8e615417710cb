//! The `raw` baselines: the minimum equivalent work done directly with each backend's client
//! library, storing the session data as JSON under a random id.
//!
//! - memory: a `std::sync::Mutex<HashMap<String, String>>` of JSON strings (no expiry);
//! - Redis via fred: `GET`, `SET ... PX` of the JSON;
//! - PostgreSQL via sqlx: `SELECT data` by primary key (and `expires_at > now()`) and
//!   `INSERT ... ON CONFLICT (id) DO UPDATE` on `(id text primary key, data jsonb,
//!   expires_at timestamptz)`;
//! - SQLite and MySQL/MariaDB via sqlx: the same on `(id, data text, expires_at bigint)`
//!   (`raw_sql`);
//! - MongoDB via the official driver: `find_one` by `_id` and `replace_one` with upsert of
//!   `{_id, data, expires_at}` (a new session: `insert_one`, as the stores do; on FerretDB an
//!   upsert reads the whole collection, which made `create` quadratic).
//!
//! A read decodes the JSON and a write encodes it, as a store does.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context as _, Result, anyhow};
use async_trait::async_trait;
use fred::prelude::{ClientLike, Config, Expiration, KeysInterface, Pool};
use mongodb::Collection;
use mongodb::bson::{self, DateTime, Document, doc};
use session_core::SessionId;
use sqlx::PgPool;
use sqlx::types::Json;
use time::{Duration, OffsetDateTime};

use crate::target::{Info, Kind, Target, std_ttl};
use crate::workload::{Change, Data};

/// The name every raw target carries in the output.
pub const RAW: &str = "raw";

/// A fresh random id, the same form and cost as a store's.
fn new_id() -> String {
    SessionId::generate().expose().to_owned()
}

fn missing() -> anyhow::Error {
    anyhow!("session missing")
}

/// A key-value backend: the whole raw baseline is get, put and delete of JSON.
#[async_trait]
pub(crate) trait Kv: Send + Sync + 'static {
    /// The raw target's name and backend.
    fn info(&self) -> Info;
    /// The session's data, or `None` when missing.
    async fn read(&self, id: &str) -> Result<Option<Data>>;
    /// Stores `data` under `id` (upsert).
    async fn write(&self, id: &str, data: &Data, ttl: Duration) -> Result<()>;
    /// Stores `data` under a fresh `id` (no session holds it); by default [`Self::write`].
    async fn insert(&self, id: &str, data: &Data, ttl: Duration) -> Result<()> {
        self.write(id, data, ttl).await
    }
    /// Removes `id`.
    async fn remove(&self, id: &str) -> Result<()>;
}

/// A raw baseline over one [`Kv`] backend.
pub struct Raw<K>(K);

impl<K> Raw<K> {
    /// The raw target over `kv`.
    pub(crate) fn new(kv: K) -> Self {
        Self(kv)
    }
}

/// The ttl a read-modify-write writes back: the workload's one hour, as created.
const RMW_TTL: Duration = Duration::hours(1);

#[async_trait]
impl<K: Kv> Target for Raw<K> {
    type Id = String;

    fn info(&self) -> Info {
        self.0.info()
    }

    async fn create(&self, data: Data, ttl: Duration) -> Result<String> {
        let id = new_id();
        self.0.insert(&id, &data, ttl).await?;
        Ok(id)
    }

    async fn get(&self, id: &String) -> Result<()> {
        self.0.read(id).await?.ok_or_else(missing).map(drop)
    }

    async fn rmw(&self, id: &String, change: &Change) -> Result<()> {
        let mut data = self.0.read(id).await?.ok_or_else(missing)?;
        change.apply_map(&mut data);
        self.0.write(id, &data, RMW_TTL).await
    }

    async fn delete(&self, id: &String) -> Result<()> {
        self.0.remove(id).await
    }
}

/// The memory baseline: a mutex around a map of JSON strings.
#[derive(Default)]
pub struct MemoryKv(Mutex<HashMap<String, String>>);

impl MemoryKv {
    /// The raw memory target.
    pub fn target() -> Raw<Self> {
        Raw(Self::default())
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Kv for MemoryKv {
    fn info(&self) -> Info {
        Info::new(
            format!("{RAW} (Mutex<HashMap> of JSON)"),
            "memory",
            Kind::Raw,
        )
    }

    async fn read(&self, id: &str) -> Result<Option<Data>> {
        let json = self.map().get(id).cloned();
        Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
    }

    async fn write(&self, id: &str, data: &Data, _ttl: Duration) -> Result<()> {
        let json = serde_json::to_string(data)?;
        self.map().insert(id.to_owned(), json);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.map().remove(id);
        Ok(())
    }
}

/// The Redis baseline on a fred pool.
pub struct RedisKv {
    pool: Pool,
    prefix: String,
    /// The bench backend it is the baseline of.
    backend: &'static str,
}

impl RedisKv {
    /// Connects a fred pool of `pool_size` connections to the server at `url` (a standalone
    /// one, or fred's `redis-sentinel://`).
    pub async fn connect(url: &str, pool_size: usize, prefix: &str) -> Result<Raw<Self>> {
        let config = Config::from_url(url).context("Redis URL")?;
        let pool = Pool::new(config, None, None, None, pool_size)?;
        pool.init().await.context("connecting fred")?;
        let backend = if url.starts_with("redis-sentinel://") {
            "redis-sentinel"
        } else {
            "redis"
        };
        Ok(Raw(Self {
            pool,
            prefix: prefix.to_owned(),
            backend,
        }))
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }
}

#[async_trait]
impl Kv for RedisKv {
    fn info(&self) -> Info {
        Info::new(format!("{RAW} (fred GET/SET PX)"), self.backend, Kind::Raw)
    }

    async fn read(&self, id: &str) -> Result<Option<Data>> {
        let json: Option<String> = self.pool.get(self.key(id)).await?;
        Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
    }

    async fn write(&self, id: &str, data: &Data, ttl: Duration) -> Result<()> {
        let json = serde_json::to_string(data)?;
        let px = Expiration::PX(ttl.whole_milliseconds() as i64);
        let () = self
            .pool
            .set(self.key(id), json, Some(px), None, false)
            .await?;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let _: i64 = self.pool.del(self.key(id)).await?;
        Ok(())
    }
}

/// The PostgreSQL baseline on an sqlx pool and a table of its own.
pub struct PostgresKv {
    pool: PgPool,
    select: String,
    upsert: String,
    delete: String,
}

impl PostgresKv {
    /// The raw target on `pool`, (re)creating `table` (a trusted, plain identifier).
    pub async fn create(pool: PgPool, table: &str) -> Result<Raw<Self>> {
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
            .execute(&pool)
            .await?;
        sqlx::query(&format!(
            "CREATE TABLE {table} (id text PRIMARY KEY, data jsonb NOT NULL, \
             expires_at timestamptz NOT NULL)"
        ))
        .execute(&pool)
        .await?;
        Ok(Raw(Self {
            pool,
            select: format!("SELECT data FROM {table} WHERE id = $1 AND expires_at > now()"),
            upsert: format!(
                "INSERT INTO {table} (id, data, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data, \
                 expires_at = excluded.expires_at"
            ),
            delete: format!("DELETE FROM {table} WHERE id = $1"),
        }))
    }
}

#[async_trait]
impl Kv for PostgresKv {
    fn info(&self) -> Info {
        Info::new(
            format!("{RAW} (sqlx SELECT/INSERT ON CONFLICT)"),
            "postgres",
            Kind::Raw,
        )
    }

    async fn read(&self, id: &str) -> Result<Option<Data>> {
        let row: Option<(Json<Data>,)> = sqlx::query_as(&self.select)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(Json(data),)| data))
    }

    async fn write(&self, id: &str, data: &Data, ttl: Duration) -> Result<()> {
        sqlx::query(&self.upsert)
            .bind(id)
            .bind(Json(data))
            .bind(OffsetDateTime::now_utc() + ttl)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        sqlx::query(&self.delete)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The raw MongoDB document of a session.
fn mongo_document(id: &str, data: &Data, ttl: Duration) -> Result<Document> {
    let expires_at = DateTime::from_system_time(std::time::SystemTime::now() + std_ttl(ttl));
    Ok(doc! {
        "_id": id,
        "data": bson::to_document(data)?,
        "expires_at": expires_at,
    })
}

/// The MongoDB baseline on a collection of its own.
pub struct MongoKv(Collection<Document>);

impl MongoKv {
    /// The raw target on `collection` (dropped first).
    pub async fn create(collection: Collection<Document>) -> Result<Raw<Self>> {
        collection.drop().await?;
        Ok(Raw(Self(collection)))
    }
}

#[async_trait]
impl Kv for MongoKv {
    fn info(&self) -> Info {
        Info::new(
            format!("{RAW} (driver find/replace_one upsert)"),
            "mongo",
            Kind::Raw,
        )
    }

    async fn read(&self, id: &str) -> Result<Option<Data>> {
        let Some(mut document) = self.0.find_one(doc! { "_id": id }).await? else {
            return Ok(None);
        };
        let data = document.remove("data").ok_or_else(|| anyhow!("no data"))?;
        Ok(Some(bson::from_bson(data)?))
    }

    async fn write(&self, id: &str, data: &Data, ttl: Duration) -> Result<()> {
        self.0
            .replace_one(doc! { "_id": id }, mongo_document(id, data, ttl)?)
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn insert(&self, id: &str, data: &Data, ttl: Duration) -> Result<()> {
        self.0.insert_one(mongo_document(id, data, ttl)?).await?;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.0.delete_one(doc! { "_id": id }).await?;
        Ok(())
    }
}

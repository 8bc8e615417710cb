//! The raw baselines of SQLite and MySQL/MariaDB on sqlx: `SELECT data` by primary key (and
//! `expires_at > now`), an upsert, a `DELETE`, on `(id, data text, expires_at bigint)` with
//! the expiry in Unix milliseconds: the least a hand-written store would do. One generic
//! implementation; only the SQL differs per database.

use anyhow::Result;
use async_trait::async_trait;
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};
use time::{Duration, OffsetDateTime};

use crate::raw::{Kv, RAW, Raw};
use crate::target::{Info, Kind};
use crate::workload::Data;

/// The statements of one database's raw baseline.
struct Dialect {
    backend: &'static str,
    label: &'static str,
    create: &'static str,
    upsert: &'static str,
}

const SQLITE: Dialect = Dialect {
    backend: "sqlite",
    label: "sqlx SELECT/INSERT ON CONFLICT",
    create: "CREATE TABLE {t} (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at INTEGER NOT NULL)",
    upsert: "INSERT INTO {t} (id, data, expires_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE \
             SET data = excluded.data, expires_at = excluded.expires_at",
};

const MYSQL: Dialect = Dialect {
    backend: "mysql",
    label: "sqlx SELECT/INSERT ON DUPLICATE KEY",
    create: "CREATE TABLE {t} (id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY, \
             data LONGTEXT CHARACTER SET utf8mb4 NOT NULL, expires_at BIGINT NOT NULL) ENGINE=InnoDB",
    upsert: "INSERT INTO {t} (id, data, expires_at) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE \
             data = VALUES(data), expires_at = VALUES(expires_at)",
};

/// The raw baseline over an sqlx pool of SQLite or MySQL.
pub struct SqlKv<DB: Database> {
    pool: Pool<DB>,
    dialect: &'static Dialect,
    select: String,
    upsert: String,
    delete: String,
}

/// The raw SQLite target on `pool`, (re)creating `table` (a trusted, plain identifier).
pub async fn sqlite(pool: sqlx::SqlitePool, table: &str) -> Result<Raw<SqlKv<sqlx::Sqlite>>> {
    SqlKv::create(pool, &SQLITE, table).await
}

/// The raw MySQL/MariaDB target on `pool`, (re)creating `table`.
pub async fn mysql(pool: sqlx::MySqlPool, table: &str) -> Result<Raw<SqlKv<sqlx::MySql>>> {
    SqlKv::create(pool, &MYSQL, table).await
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl<DB> SqlKv<DB>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    async fn create(pool: Pool<DB>, dialect: &'static Dialect, table: &str) -> Result<Raw<Self>> {
        let sql = |s: &str| s.replace("{t}", table);
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
            .execute(&pool)
            .await?;
        sqlx::query(&sql(dialect.create)).execute(&pool).await?;
        Ok(Raw::new(Self {
            pool,
            dialect,
            select: sql("SELECT data FROM {t} WHERE id = ? AND expires_at > ?"),
            upsert: sql(dialect.upsert),
            delete: sql("DELETE FROM {t} WHERE id = ?"),
        }))
    }
}

#[async_trait]
impl<DB> Kv for SqlKv<DB>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    fn info(&self) -> Info {
        Info::new(
            format!("{RAW} ({})", self.dialect.label),
            self.dialect.backend,
            Kind::Raw,
        )
    }

    async fn read(&self, id: &str) -> Result<Option<Data>> {
        let row: Option<(String,)> = sqlx::query_as(&self.select)
            .bind(id)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(json,)| serde_json::from_str(&json)).transpose()?)
    }

    async fn write(&self, id: &str, data: &Data, ttl: Duration) -> Result<()> {
        sqlx::query(&self.upsert)
            .bind(id)
            .bind(serde_json::to_string(data)?)
            .bind(now_ms() + ttl.whole_milliseconds() as i64)
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

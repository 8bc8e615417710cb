//! How many bytes a backend holds, as the backend itself counts them, read before and after
//! a target creates its sessions: storage per session, for `--scale`. Redis: `used_memory`
//! (`INFO memory`); PostgreSQL: the database's size on disk (`pg_database_size`, tables,
//! indexes and TOAST, without WAL); the memory backend: this process's resident memory.
//! Other backends report none.

use anyhow::{Context, Result, anyhow};
use fred::prelude::{Client, ClientLike, Config};
use fred::types::InfoKind;
use sqlx::PgPool;

use crate::backends::Backend;

/// A reader of one backend's stored bytes.
pub enum StoredBytes {
    /// The bench process's resident set (the memory backend's stores live in it).
    Process,
    /// A Redis server's `used_memory`.
    Redis(Client),
    /// A PostgreSQL database's size.
    Postgres(PgPool),
}

impl StoredBytes {
    /// The reader for `backend` at `url`, or `None` where the backend has no such figure.
    pub async fn connect(backend: Backend, url: Option<&str>) -> Result<Option<Self>> {
        Ok(match (backend, url) {
            (Backend::Memory, _) => Some(Self::Process),
            (Backend::Redis, Some(url)) => {
                let client = Client::new(Config::from_url(url)?, None, None, None);
                client
                    .init()
                    .await
                    .context("connecting to Redis for INFO memory")?;
                Some(Self::Redis(client))
            }
            (Backend::Postgres, Some(url)) => Some(Self::Postgres(
                PgPool::connect(url)
                    .await
                    .context("connecting to PostgreSQL")?,
            )),
            _ => None,
        })
    }

    /// The bytes held now.
    pub async fn now(&self) -> Result<u64> {
        match self {
            Self::Process => resident_bytes(),
            Self::Redis(client) => {
                let info: String = client.info(Some(InfoKind::Memory)).await?;
                info_field(&info, "used_memory").context("INFO memory has no used_memory")
            }
            Self::Postgres(pool) => {
                let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(pool)
                    .await?;
                Ok(u64::try_from(bytes).unwrap_or(0))
            }
        }
    }
}

/// This process's resident set size, from `/proc/self/statm` (Linux).
fn resident_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("unexpected /proc/self/statm: {statm:?}"))?;
    Ok(pages * 4096)
}

/// The integer value of `key` in an `INFO` reply.
fn info_field(info: &str, key: &str) -> Option<u64> {
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_info_field() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n";
        assert_eq!(info_field(info, "used_memory"), Some(1_048_576));
        assert_eq!(info_field(info, "used_memory_rss"), None);
    }

    #[test]
    fn reads_this_process_resident_set() {
        assert!(resident_bytes().unwrap() > 0);
    }
}

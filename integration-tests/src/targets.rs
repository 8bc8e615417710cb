//! The network stores the fault tests and the soak run put under stress, connected to any
//! URL with any options.

use std::sync::Arc;

use session_core::{ScanSessions, SessionId, SessionStore, StoreOptions};

use crate::Backend;
use crate::linearizable::Partitions;

/// A network store and, for Redis, its client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// session-redis with fred.
    RedisFred,
    /// session-redis with redis-rs.
    RedisRs,
    /// session-postgres.
    Postgres,
    /// session-mongo (FerretDB here, or MongoDB).
    Mongo,
    /// session-mysql (MariaDB here, or MySQL).
    Mysql,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 5] = [
        Self::RedisFred,
        Self::RedisRs,
        Self::Postgres,
        Self::Mongo,
        Self::Mysql,
    ];

    /// The backend whose server it talks to.
    pub fn backend(self) -> Backend {
        match self {
            Self::RedisFred | Self::RedisRs => Backend::Redis,
            Self::Postgres => Backend::Postgres,
            Self::Mongo => Backend::Mongo,
            Self::Mysql => Backend::Mysql,
        }
    }

    /// How the recorded workload runs on this store: owner-wide calls and moves are one
    /// atomic step on Redis (one server) and PostgreSQL; on MongoDB a move is two writes and
    /// a revocation goes session by session (its docs say so), so those are not watched.
    pub fn partitions(self) -> Partitions {
        let atomic = self != Self::Mongo;
        Partitions {
            owner_calls: atomic,
            moves_atomic: atomic,
            ..Partitions::default()
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::RedisFred => "redis-fred",
            Self::RedisRs => "redis-rs",
            Self::Postgres => "postgres",
            Self::Mongo => "mongo",
            Self::Mysql => "mysql",
        }
    }

    /// A store on a fresh namespace (key prefix, table or collection) of the server at `url`.
    pub async fn connect(
        self,
        url: &str,
        options: StoreOptions,
    ) -> Result<Arc<dyn SessionStore>, session_core::Error> {
        Ok(self.connect_scanning(url, options).await?)
    }

    /// [`Self::connect`], as a store that can also be walked ([`ScanSessions`]).
    pub async fn connect_scanning(
        self,
        url: &str,
        options: StoreOptions,
    ) -> Result<Arc<dyn ScanSessions>, session_core::Error> {
        let namespace = format!(
            "stress_{}",
            SessionId::generate().expose()[..12]
                .to_ascii_lowercase()
                .replace('-', "_")
        );
        let store: Arc<dyn ScanSessions> = match self {
            Self::RedisFred | Self::RedisRs => {
                let builder = session_redis::RedisStore::builder()
                    .url(url)
                    .prefix(format!("{namespace}:"))
                    .options(options);
                let builder = if self == Self::RedisFred {
                    builder.fred()
                } else {
                    builder.redis_rs()
                };
                Arc::new(builder.connect().await?)
            }
            Self::Postgres => {
                let store = session_postgres::PostgresStore::builder()
                    .schema("stress")
                    .table(namespace)
                    .options(options)
                    .max_connections(8)
                    .connect(url)
                    .await?;
                store.migrate().await?;
                Arc::new(store)
            }
            Self::Mysql => {
                let store = session_mysql::MysqlStore::builder()
                    .table(namespace)
                    .options(options)
                    .max_connections(8)
                    .connect(url)
                    .await?;
                store.migrate().await?;
                Arc::new(store)
            }
            Self::Mongo => {
                let config = session_mongo::MongoConfig {
                    database: Some(crate::mongo_test_database(url, "stress").await.into()),
                    collection: Some(namespace),
                    expiry: session_mongo::ExpiryMode::Disabled,
                    options,
                    ..Default::default()
                };
                Arc::new(session_mongo::MongoStore::connect(url, config).await?)
            }
        };
        Ok(store)
    }
}

/// `url` with its host and port replaced by `host_port` (user, path and query kept).
pub fn with_host_port(url: &str, host_port: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let user = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!(
        "{}{user}{host_port}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    )
}

/// The `host:port` of `url`.
pub fn host_port(url: &str) -> &str {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten_around_their_authority() {
        let pg = "postgres://u:p@127.0.0.1:15432/db?sslmode=disable";
        assert_eq!(host_port(pg), "127.0.0.1:15432");
        assert_eq!(
            with_host_port(pg, "127.0.0.1:9"),
            "postgres://u:p@127.0.0.1:9/db?sslmode=disable"
        );
        assert_eq!(host_port("redis://127.0.0.1:16379"), "127.0.0.1:16379");
        assert_eq!(
            with_host_port("mongodb://127.0.0.1:27017", "127.0.0.1:9"),
            "mongodb://127.0.0.1:9"
        );
    }
}

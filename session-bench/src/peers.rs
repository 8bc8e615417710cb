//! The peer stores from crates.io, each driven through its own store trait:
//! tower-sessions stores through `tower_sessions_core::SessionStore` (create, load, save),
//! actix-session's `RedisSessionStore` through `actix_session::storage::SessionStore`
//! (save, load, update).
//!
//! Peers have no compare-and-swap and no touch, so they run `create`, `rmw` and `get`.

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use time::Duration;

use crate::target::{Info, Kind, Target};
use crate::workload::{Change, Data};

fn missing() -> anyhow::Error {
    anyhow!("session missing")
}

/// Implements [`Target`] for the stores of one tower-sessions-core version (the moka, Redis
/// and sqlx stores are built on 0.14, the memory store on 0.15; the API is the same).
macro_rules! tower_target {
    ($module:ident, $core:ident) => {
        /// A tower-sessions store on
        #[doc = concat!("`", stringify!($core), "`.")]
        pub mod $module {
            use super::*;
            use $core::SessionStore;
            use $core::session::{Id, Record};

            /// A tower-sessions store under test.
            #[derive(Debug)]
            pub struct Tower<S> {
                store: S,
                name: String,
                backend: &'static str,
            }

            impl<S: SessionStore> Tower<S> {
                /// Wraps `store` under `name` on `backend`.
                pub fn new(store: S, name: impl Into<String>, backend: &'static str) -> Self {
                    Self {
                        store,
                        name: name.into(),
                        backend,
                    }
                }

                async fn load(&self, id: &Id) -> Result<Record> {
                    let record = self.store.load(id).await.map_err(|e| anyhow!("{e}"))?;
                    record.ok_or_else(missing)
                }
            }

            #[async_trait]
            impl<S: SessionStore> Target for Tower<S> {
                type Id = Id;

                fn info(&self) -> Info {
                    Info::new(self.name.clone(), self.backend, Kind::Peer)
                }

                async fn create(&self, data: Data, ttl: Duration) -> Result<Id> {
                    let mut record = Record {
                        id: Id::default(),
                        data: data.into_iter().collect(),
                        expiry_date: time::OffsetDateTime::now_utc() + ttl,
                    };
                    self.store
                        .create(&mut record)
                        .await
                        .map_err(|e| anyhow!("{e}"))?;
                    Ok(record.id)
                }

                async fn get(&self, id: &Id) -> Result<()> {
                    self.load(id).await.map(drop)
                }

                async fn rmw(&self, id: &Id, change: &Change) -> Result<()> {
                    let mut record = self.load(id).await?;
                    change.apply(&mut record.data);
                    self.store.save(&record).await.map_err(|e| anyhow!("{e}"))
                }

                async fn delete(&self, id: &Id) -> Result<()> {
                    self.store.delete(id).await.map_err(|e| anyhow!("{e}"))
                }
            }
        }
    };
}

tower_target!(tower14, tower_sessions_core_014);
tower_target!(tower15, tower_sessions_core_015);

/// actix-session's Redis store (redis-rs `ConnectionManager`), keys under a prefix.
pub mod actix {
    use std::collections::HashMap;

    use actix_session::storage::{RedisSessionStore, SessionKey, SessionStore};

    use super::*;

    /// The session-state map actix-session stores: values are JSON texts.
    type State = HashMap<String, String>;

    /// The time-to-live a read-modify-write writes back (the workload's one hour).
    const RMW_TTL: Duration = Duration::hours(1);

    /// actix-session's `RedisSessionStore` under test.
    pub struct Actix(RedisSessionStore);

    impl Actix {
        /// Connects to `url`, keys under `prefix`.
        pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
            let prefix = prefix.to_owned();
            let store = RedisSessionStore::builder(url)
                .cache_keygen(move |key| format!("{prefix}{key}"))
                .build()
                .await?;
            Ok(Self(store))
        }

        async fn load(&self, key: &str) -> Result<State> {
            let state = self.0.load(&session_key(key)?).await?;
            state.ok_or_else(missing)
        }
    }

    fn session_key(key: &str) -> Result<SessionKey> {
        SessionKey::try_from(key.to_owned()).map_err(|e| anyhow!("{e}"))
    }

    fn to_state(data: Data) -> Result<State> {
        data.into_iter()
            .map(|(key, value)| Ok((key, serde_json::to_string(&value)?)))
            .collect()
    }

    #[async_trait]
    impl Target for Actix {
        type Id = String;

        fn info(&self) -> Info {
            Info::new("actix-session RedisSessionStore", "redis", Kind::Peer)
        }

        async fn create(&self, data: Data, ttl: Duration) -> Result<String> {
            let key = self.0.save(to_state(data)?, &ttl).await?;
            Ok(key.as_ref().to_owned())
        }

        async fn get(&self, key: &String) -> Result<()> {
            self.load(key).await.map(drop)
        }

        async fn rmw(&self, key: &String, change: &Change) -> Result<()> {
            let mut state = self.load(key).await?;
            state.insert(change.key.to_owned(), serde_json::to_string(&change.value)?);
            self.0.update(session_key(key)?, state, &RMW_TTL).await?;
            Ok(())
        }

        async fn delete(&self, key: &String) -> Result<()> {
            self.0.delete(&session_key(key)?).await
        }
    }
}

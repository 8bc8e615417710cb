//! A Redis session store for session-stores: standalone, Redis Cluster and Sentinel, over
//! the [fred](https://docs.rs/fred) client (feature `fred`, default) or
//! [redis-rs](https://docs.rs/redis) (feature `redis`). Both clients behave the same, take
//! the same options and read and write the same keys; both features may be on at once.
//!
//! ```no_run
//! use session_core::{Record, SessionStore, now};
//! use session_redis::RedisStore;
//! use std::time::Duration;
//!
//! # async fn demo() -> session_core::Result<()> {
//! // The common case: one URL, the default client (fred), prefix `sess:`.
//! let store = RedisStore::from_url("redis://127.0.0.1:6379").await?;
//!
//! // Or choose: a cluster through two seed nodes, redis-rs, a 2 s timeout per call.
//! # #[cfg(feature = "redis")]
//! let cluster = RedisStore::builder()
//!     .url("redis://10.0.0.1:7000,redis://10.0.0.2:7000")
//!     .redis_rs()
//!     .prefix("shop:sess:")
//!     .timeout(Duration::from_secs(2))
//!     .connect()
//!     .await?;
//!
//! let mut session = Record::new(now() + time::Duration::minutes(30));
//! session.set_owner(Some("user-42".into()));
//! store.create(&mut session).await?;
//! assert_eq!(store.list_by_owner("user-42").await?.len(), 1);
//! # Ok(()) }
//! ```
//!
//! # URLs
//!
//! [`RedisStore::from_url`] and [`RedisStoreBuilder::url`] accept:
//!
//! - `redis://[user:password@]host[:port][/db]` (or `rediss://`, `valkey://`): one server.
//! - several such URLs separated by commas, or `redis+cluster://host:port` (also
//!   `redis-cluster://`): a Redis Cluster; the URLs are seed nodes, the rest is discovered.
//! - `redis+sentinel://host:26379?sentinelServiceName=mymaster&node=host2:26379` (also
//!   `redis-sentinel://`): the primary of a Sentinel deployment (fred only; redis-rs
//!   fails with [`Error::Config`](session_core::Error::Config)).
//!
//! TLS (`rediss://`) needs a TLS feature of the client, which this build does not enable.
//! The server must be Redis 6.2 or newer ([`MIN_REDIS_VERSION`]: `SET ... PXAT`, `GETDEL`,
//! `ZADD GT`); connecting checks `INFO server` and fails with `Error::Config` otherwise.
//!
//! # Key layout
//!
//! - `{prefix}{id}` (prefix default `sess:`): a string holding
//!   [`session_core::codec::encode`]'s JSON, expiring at the record's `expires_at` to the
//!   millisecond (`SET ... PXAT`). Redis removes expired sessions itself, so
//!   `delete_expired` returns 0.
//! - `{prefix}owner:{<owner>}`: a sorted set per owner, member = session id, score = expiry
//!   in ms; the key itself expires with its latest member (`PEXPIREAT`).
//!
//! # Cluster design
//!
//! Session keys are spread over all slots and an owner's index lives in its own slot, so no
//! script touches more than one key, and the same code runs on every topology:
//!
//! - `get`, `set` (`SET PXAT`), `insert` (`SET NX PXAT`), `destroy` (`GETDEL`) are single
//!   commands; `update` (compare-and-swap on the stored `version`) and `touch` (moves the
//!   expiry, capped at the stored deadline, by rewriting only the JSON's `expires_at` on the
//!   server: the data never crosses the wire) are single-key Lua scripts, so both are atomic.
//! - The owner index is written **before** the session (insert, set, update, rename), so
//!   it may point at a missing session but never misses a live one; listing skips entries
//!   whose session is gone, expired or owned by someone else, and entries are pruned once
//!   their expiry passes. `touch` raises the index score after moving the session's expiry;
//!   if that second step fails the call returns the (retryable) error and the next touch
//!   repairs it.
//! - `rename` (and so `cycle_id`) is not atomic across slots. It reads the source, copies it
//!   to the new key with `SET NX PXAT` (never overwriting a live target), then deletes the
//!   source only if it still holds exactly the value copied (compare-and-delete). If the
//!   source changed in between, the copy is deleted (again only if unchanged) and the move
//!   starts over; if it was destroyed, the move reports `SourceMissing`. So an acknowledged
//!   write is never lost and a destroyed session never comes back. A crash between the copy
//!   and the delete leaves the session under both ids until it expires (never under none).
//! - `destroy_by_owner` lists and compare-and-deletes until a pass finds nothing, so a
//!   session that a concurrent `cycle_id` moved to an id not yet listed is still revoked.
//! - `count` scans `{prefix}*` on every primary and counts session keys only.
//!
//! Every call runs under [`StoreOptions::timeout`](session_core::StoreOptions); client
//! failures become retryable [`Error::Backend`](session_core::Error::Backend) errors
//! (connection, timeout, cluster down, loading...) or permanent ones, keeping the client's
//! error as the source.

#[cfg(not(any(feature = "fred", feature = "redis")))]
compile_error!("session-redis needs at least one client feature: `fred` or `redis`");

mod config;
mod conn;
#[cfg(feature = "fred")]
mod fred_client;
mod keys;
#[cfg(feature = "redis")]
mod redis_rs_client;
mod scripts;
mod store;

pub use config::{
    Client, DEFAULT_POOL_SIZE, DEFAULT_PREFIX, MIN_REDIS_VERSION, RedisStoreBuilder, Topology,
};
pub use store::RedisStore;

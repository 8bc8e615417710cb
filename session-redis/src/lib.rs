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
//!   `redis-sentinel://`; `sentinelUsername`/`sentinelPassword` for the sentinels' own
//!   login): the primary of a Sentinel deployment, on both clients. fred follows a failover
//!   itself once its connection to the old primary breaks (killed, or closed by Sentinel as
//!   it turns that node into a replica; a primary deposed while the sentinels cannot reach
//!   it keeps fred's connection until then); with redis-rs the store drops its connection on
//!   any error that may mean the primary moved (connection lost, timeout, `READONLY`) and
//!   asks the sentinels again on the next call. Either way the call that failed is not sent
//!   again (it may have run). TLS to Sentinel (`rediss+sentinel://`) and `watch_expired` on
//!   Sentinel are fred only; redis-rs fails with
//!   [`Error::Config`](session_core::Error::Config).
//!
//! TLS (`rediss://`) needs a TLS feature of the client, which this build does not enable.
//! The server must be Redis 6.2 or newer ([`MIN_REDIS_VERSION`]: `SET ... PXAT`, `GETDEL`,
//! `ZADD GT`); connecting checks `INFO server` and fails with `Error::Config` otherwise.
//!
//! # Key layout
//!
//! - `{prefix}{id}` (prefix default `sess:`): a string holding
//!   [`session_core::codec::encode`]'s JSON (or, in the express-session format, the
//!   session object express-session stores: see below), expiring at the record's `expires_at` to the
//!   millisecond (`SET ... PXAT`). Redis removes expired sessions itself, so
//!   `delete_expired` returns 0.
//! - Stores sharing a database need prefixes neither of which starts with the other
//!   (`app1:` and `app2:`, not `sess:` and `sess:v2-`): a key `sess:v2-<id>` reads as the
//!   session `v2-<id>` of the store prefixed `sess:` (ids may hold `-`, `_` and letters),
//!   for every call and for the expiry feed alike.
//! - `{prefix}owner:{<owner>}`: a sorted set per owner, member = session id, score = expiry
//!   in ms; the key itself expires with its latest member (`PEXPIREAT`).
//!
//! # How each call works, and what it guarantees
//!
//! - `get` (`GET`), `insert` (`SET NX PXAT`) and `destroy` (`GETDEL`) are single commands;
//!   `set` (one more than the larger of the stored and the caller's version), `update`
//!   (compare-and-swap on the stored version) and `touch` (moves the expiry, capped at the
//!   stored deadline, by rewriting only the JSON's `expires_at` on the server: the data never
//!   crosses the wire) are single-key Lua scripts. All are atomic on every topology.
//! - **The owner index** is written **before** the session by every write, touch and
//!   rename, with a score at least the session's expiry, and entries leave only once their
//!   score passes: so it may point at a missing session (listing skips those) but never
//!   misses a live one. (An entry is never removed earlier: a writer indexes before it
//!   writes, and removing an entry whose session looks missing could drop the entry of a
//!   write still in flight.)
//! - **On one server** (standalone or Sentinel), `rename` (so `cycle_id`), `list_by_owner`
//!   and `destroy_by_owner` are each one script over every key involved (the index and the
//!   sessions it lists, re-checked inside the script), so each is atomic: "log out
//!   everywhere" sees every session of the owner as of one instant, including one being
//!   renamed, and deletes it whatever its version (a session kept busy goes too).
//! - **On a Redis Cluster** keys live on different nodes, so those three run one key at a
//!   time. `rename` reads the source, copies it to the new key with `SET NX PXAT` (never
//!   overwriting a live target), then deletes the source only if it still holds exactly the
//!   value copied (compare-and-delete); if the source changed in between, the copy is
//!   deleted (again only if unchanged) and the move starts over; if it was destroyed, the
//!   move reports `SourceMissing`. So an acknowledged write is never lost and a destroyed
//!   session never comes back; a crash between copy and delete leaves the session under both
//!   ids until it expires, never under none. `destroy_by_owner` deletes, by owner and
//!   whatever the version, every session the index lists, pass after pass until a pass
//!   finds none. **Weaker than on one server:** a session that a concurrent `cycle_id` moves
//!   at that very moment can escape a pass and survive under its new id, and a listing may
//!   show the session under both ids or miss it while it moves. Call `destroy_by_owner`
//!   again after such a race, or run one server (with Sentinel for failover) where that
//!   matters.
//! - `count` scans `{prefix}*` on every primary and counts session keys only.
//! - [`ScanSessions`](session_core::ScanSessions) (`scan`) walks the same keys page by page
//!   (`SCAN ... MATCH {prefix}* COUNT n`, on a Cluster one primary after another, ordered by
//!   the lowest hash slot each serves), then reads each session key found: owner indexes
//!   and other apps' keys are passed over, a value that doesn't decode is counted as
//!   corrupt and left alone. Its cursor (`<node>:<SCAN cursor>`) holds while the deployment
//!   does; after a failover or resharding mid-scan, start over to be sure of every session.
//! - **Corrupt records**: the scripts refuse what the decoder refuses in the metadata
//!   (format, version, times, owner, data an object), so `update`, `touch` and `rename`
//!   leave such a value as it is. Damage inside the data (a number beyond `f64`'s range)
//!   is not looked for on the server, where a full decode of every value would cost each
//!   write ~30 µs of Redis's one thread: `get` reports it, the writes don't.
//! - A move on a Cluster in the express-session format carries over a `touch` (an expiry
//!   change only) that lands while it copies: the compare-and-delete returns the source's
//!   expiry, which the copy then gets.
//!
//! No command is ever sent twice by the client (fred's and redis-rs's automatic resends are
//! off: a compare-and-swap sent again after a lost reply could apply twice); the store sends
//! again only a command the server refused without running it (`MOVED`, `ASK`, `TRYAGAIN`,
//! `CLUSTERDOWN`, `LOADING`, `READONLY`, `BUSY`...) or the client never sent, until the
//! call's timeout.
//!
//! Every call runs under [`StoreOptions::timeout`](session_core::StoreOptions); client
//! failures become retryable [`Error::Backend`](session_core::Error::Backend) errors
//! (connection, timeout, cluster down, loading...) or permanent ones, keeping the client's
//! error as the source.
//!
//! # Replication and failover
//!
//! Redis replicates asynchronously: by default ([`Durability::Primary`]) a write is done
//! once the primary has it, and a failover before a replica copied it loses it. Under
//! [`Durability::Replicated`] each write carries a `WAIT` in the same round trip and is
//! done only once that many replicas have it:
//!
//! ```no_run
//! # async fn demo() -> session_core::Result<()> {
//! use std::time::Duration;
//! use session_redis::{Durability, RedisStore};
//!
//! let store = RedisStore::builder()
//!     .url("redis+sentinel://10.0.0.1:26379?sentinelServiceName=sessions&node=10.0.0.2:26379")
//!     .durability(Durability::Replicated { replicas: 1, timeout: Duration::from_millis(500) })
//!     .connect()
//!     .await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! # Sharing sessions with express-session
//!
//! [`RedisStoreBuilder::express_session`] (or `.format(`[`Format::ExpressSession`]`)`) makes
//! the store read and write exactly what [express-session] with [connect-redis] keeps, so
//! a Node app and a Rust app on the same Redis share logins. Use the Node app's prefix
//! (connect-redis's default is `sess:`, as here) and its cookie secrets with
//! [`session_core::SignedCookie`] (same cookie name, `connect.sid` by default).
//!
//! ```no_run
//! # async fn demo() -> session_core::Result<()> {
//! use session_core::SignedCookie;
//! use session_redis::RedisStore;
//!
//! let store = RedisStore::builder()
//!     .url("redis://127.0.0.1:6379")
//!     .express_session()
//!     .connect()
//!     .await?;
//! // The first secret signs, every one verifies (express-session's `secret` array).
//! let cookies = SignedCookie::new(["new secret", "keyboard cat"])?;
//! # let _ = (store, cookies); Ok(()) }
//! ```
//!
//! **The value** under `{prefix}{id}` is express-session's session object as JSON: its
//! `cookie` object first, the record's data as the other top-level fields, and this store's
//! metadata in one namespaced field, [`EXPRESS_META_FIELD`] (`__session_stores`), which
//! express-session ignores and writes back unchanged:
//!
//! ```json
//! {"cookie":{"originalMaxAge":3600000,"expires":"2026-11-23T13:09:21.835Z","httpOnly":true,"path":"/","sameSite":"lax"},
//!  "cart":[1,2],"user":"alice",
//!  "__session_stores":{"version":3,"created_at":1795435761835,"deadline":1795442961835,"owner":"u1",
//!    "digest":"5f1c…(40 hex digits)"}}
//! ```
//!
//! - **The cookie object belongs to the store and is hidden from
//!   [`Record::data`](session_core::Record::data)**: data is every top-level field but `cookie` and
//!   `__session_stores`, so a record reads back exactly as written, and a data key named
//!   `cookie` or `__session_stores` is an [`Error::Encode`](session_core::Error::Encode).
//!   Every Rust write (`set`, `update`) keeps the stored cookie object as it is (Node's
//!   `maxAge`, `domain`, `secure`...), only setting its `expires` to the new expiry as
//!   JavaScript's `Date.toJSON()` writes it (`2026-11-23T13:09:21.835Z`); a browser-session
//!   cookie (`expires: null`) stays one. This happens on the server, in the write's script:
//!   the cookie is found in the stored JSON at `{"cookie":{`, where express-session and
//!   this store put it (a value with its cookie elsewhere gets the default one).
//! - **A session created by Rust** gets express-session's cookie for a one-off `maxAge`:
//!   `{"originalMaxAge":<ms from now to expires_at>,"expires":"<expires_at>","httpOnly":true,
//!   "path":"/","sameSite":"lax"}`.
//! - **A session created by Node** has no metadata until Rust first reads it: that read
//!   appends it in place (`created_at` the time of the read, the version the value already
//!   had, the key's expiry kept; trailing whitespace after the object goes), and Node
//!   carries it from then on, so `created_at` stays what it was first seen as. (A Node save
//!   racing that very first read may drop it; the next read adds it again, with a later
//!   time.) It has no owner and no deadline until Rust sets them.
//! - **Every value Node stores reads back, and goes back as Node wrote it.** A string with
//!   half an emoji (a lone UTF-16 surrogate, which `JSON.stringify` writes as `\ud83d`)
//!   reads as U+FFFD (a Rust string can't hold it); data nests up to
//!   [`MAX_SHARED_DATA_DEPTH`](session_core::codec::MAX_SHARED_DATA_DEPTH) (512) levels
//!   rather than a native record's 96. A write puts every field the caller left alone back
//!   as the stored text it was read with ([`session_core::FieldTexts`]), byte for byte, so a
//!   Rust change to one field never alters another as Node sees it (the half emoji, `1e+21`,
//!   Node's escapes); only a field Rust changed is written as serde_json writes it.
//! - Node drops data keys that clash with its `Session`'s own properties (`id`, `req`,
//!   `cookie`, and methods such as `save` or `touch`), and `JSON.parse` rounds integers
//!   above 2^53: keep data Node reads to plain JSON.
//! - A value that is not an express-session session (not a JSON object, no `cookie`
//!   object, malformed metadata) is an [`Error::Decode`](session_core::Error::Decode)
//!   naming the id, for reads and scripts alike.
//!
//! **Expiry.** The key's expiry in Redis is the truth for both sides, because connect-redis's
//! `touch` only runs `EXPIRE` and leaves `cookie.expires` in the JSON stale. So reads take
//! `expires_at` from the key (one script: `GET` plus `PEXPIRETIME`, exact to the
//! millisecond; on Redis 6.2, which lacks it, the server's `TIME` plus `PTTL`, within a
//! millisecond), falling back on `cookie.expires` for a key without expiry; writes store
//! with `PXAT expires_at` and the matching `cookie.expires`; `touch` is a `PEXPIREAT` only
//! (the value is not rewritten), capped at the metadata's deadline, read on the server.
//! Node's touches don't know the deadline: a session Node keeps touching may outlive it in
//! Redis, but Rust reads it as expiring at the deadline, and no longer returns it past it.
//!
//! **Concurrency.** `update` is a compare-and-swap on a version that sees Node's writes
//! too, so [`session_core::modify`] loses neither a Rust write nor a Node write it did not
//! read. The metadata's `digest` seals the value as this store wrote it (SHA-1 of the whole
//! value, the digest's own digits read as zeros): while it holds, the version is the
//! metadata's `version`; once Node has written the session (express-session writes our
//! metadata back unchanged beside its change), it no longer does, and the version is one
//! derived from the value's bytes (2^52 and above). So a Rust write based on a read from
//! before Node's write fails with a conflict, and `modify` reads Node's write and applies
//! its change on top. Node's own writes stay last-writer-wins, as in express-session: a
//! Node request that read the session before a Rust write overwrites it when it saves.
//! Such a save of a stale copy, byte for byte (`resave: true` with a browser-session
//! cookie), brings an old sealed version back, and two Rust writers can then each write the
//! next version: so a record read as a sealed value also expects that value's seal
//! ([`object::read_seal`](session_core::express::object::read_seal); the update script
//! compares the stored seal's digits, which its version check has already verified), and an
//! `update` never succeeds over a value it did not read. After a `set` (whose script may
//! keep the stored cookie object, so the written seal is unknown here), and for a record
//! the caller built, the version alone decides.
//!
//! **Owners in Node's data.** Express apps keep the user nested in the session
//! (`req.session.user.id`; Passport: `req.session.passport.user`), where no owner index
//! sees it. With [`RedisStoreBuilder::owner_path`] (`.owner_path("passport.user")`) a
//! session's owner is the value there (a non-empty string, or an integer as its digits;
//! else the owner Rust stored), and `list_by_owner` / `destroy_by_owner` find every session
//! naming the owner, the ones Node created and Rust never wrote included, by a walk of every
//! session (`SCAN` of the prefix on every primary, each value read and decoded; a value
//! changed under the walk is read again and deleted only while it still names the owner).
//! Without an owner path, the owner index knows a session's expiry as Rust last wrote it, not
//! the later ones connect-redis' `touch` (an `EXPIRE`) gives it: a session Node alone keeps
//! alive past that is missed, so set an owner path (even one Node never writes: the walk then
//! judges by the owner Rust stored) where "log out everywhere" must reach those too. The guarantee: every such session that exists throughout the
//! call is listed, or removed; one Node creates during the call (a login after the logout
//! began) may stay. The cost grows with the number of sessions, not the owner's:
//! `session-bench --owner-sweep 100000` measures it (README), and the call's timeout
//! ([`StoreOptions::timeout`](session_core::StoreOptions)) must allow it.
//!
//! Everything else works as in the native format: the owner index (under the same prefix:
//! connect-redis's `length()` and `ids()` count its `{prefix}owner:{..}` keys too, `all()`
//! skips them), `cycle_id`, `destroy_by_owner`, clusters, both clients.
//!
//! [express-session]: https://www.npmjs.com/package/express-session
//! [connect-redis]: https://www.npmjs.com/package/connect-redis

#[cfg(not(any(feature = "fred", feature = "redis")))]
compile_error!("session-redis needs at least one client feature: `fred` or `redis`");

mod config;
mod conn;
mod durability;
mod expired;
mod format;
#[cfg(feature = "fred")]
mod fred_client;
#[cfg(feature = "fred")]
mod fred_expiry;
mod keys;
mod moves;
mod owner_sweep;
mod owners;
#[cfg(feature = "redis")]
mod redis_rs_client;
#[cfg(feature = "redis")]
mod redis_rs_expiry;
#[cfg(feature = "redis")]
mod redis_rs_sentinel;
mod scan;
mod scripts;
mod store;
mod tracking;

pub use config::{
    Client, DEFAULT_POOL_SIZE, DEFAULT_PREFIX, MIN_REDIS_VERSION, RedisStoreBuilder, Topology,
};
pub use durability::Durability;
pub use format::{EXPRESS_META_FIELD, Format};
pub use store::RedisStore;

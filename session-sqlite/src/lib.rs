//! A SQLite [`SessionStore`](session_core::SessionStore) on sqlx: one row per session in a
//! file (or in memory), compare-and-swap updates, atomic renames, batched purges; sessions
//! survive a restart with no server at all.
//!
//! ```no_run
//! use std::time::Duration;
//! use session_core::{Expiry, SessionStore, StoreOptions};
//! use session_sqlite::SqliteStore;
//!
//! # async fn run() -> session_core::Result<()> {
//! let store = SqliteStore::builder()
//!     .table("sessions") // default "sessions"
//!     .options(StoreOptions { timeout: Duration::from_secs(2), ..StoreOptions::default() })
//!     .max_connections(4)
//!     // A file, created if missing; "sqlite::memory:" for tests; or .build(your_pool)
//!     .connect("sqlite://data/sessions.db")
//!     .await?;
//! store.migrate().await?; // idempotent; or apply store.migration_sql() with your own tool
//! let pruner = store.spawn_pruner(Duration::from_secs(300))?; // deletes expired rows
//!
//! let mut session = Expiry::idle(time::Duration::minutes(30)).new_record();
//! session.insert("user_id", 42).ok();
//! store.create(&mut session).await?;
//! assert!(store.get(session.id()).await?.is_some());
//! pruner.stop().await;
//! # Ok(()) }
//! ```
//!
//! An in-memory database (`sqlite::memory:`) is private to its store: each connection to
//! `:memory:` would be a database of its own, so such a store's pool has exactly one
//! connection, kept open until the pool is dropped (and the sessions with it).
//!
//! # Schema
//!
//! [`SqliteStore::migration_sql`] shows it: a `STRICT` table with `id TEXT` primary key,
//! `data TEXT` (the JSON as written, so numbers read back exactly), `expires_at`,
//! `deadline`, `created_at` (`INTEGER` Unix milliseconds), `version INTEGER`, `owner TEXT`,
//! `format INTEGER` (the stored format of `session_core::codec`), an index on `expires_at`
//! and a partial index on `owner`. Names are validated (`[a-z_][a-z0-9_]*`, at most 63
//! bytes, not `sqlite_...`) and quoted; every statement is parameterised.
//!
//! # Consistency
//!
//! Every expiry comparison uses the application's clock, at millisecond precision, as on
//! every other backend, so a session ends at the same instant whichever backend holds it:
//! `session_core::now` bound into reads and transactions, or, in a write of one statement,
//! SQLite's own reading of the same clock (SQLite runs in this process). SQLite runs one
//! write transaction at a time per database, whichever connection or process sends it;
//! [`SqliteStore::migrate`] puts a file in WAL mode, so reads see the last committed state
//! without waiting for a writer. A store's own writers queue in the store (one at a time,
//! woken in order) rather than in SQLite's busy handler, which sleeps between tries. Each
//! call is atomic:
//!
//! - `get`, `list_by_owner`, `count` and each page of a
//!   [`ScanSessions`](session_core::ScanSessions) scan (a keyset page along the primary key,
//!   `WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?`) are one `SELECT` each (one
//!   snapshot), with the clock read once the pool has handed the call a connection;
//!   `destroy` is one `DELETE`;
//! - every write that judges liveness reads the clock only once it holds the write lock, so
//!   a call that waited for another writer never judges a session by the time it started
//!   waiting (which would let `update` or `touch` revive a session that expired
//!   meanwhile): `insert`, `set`, `update` and `touch` are one autocommitted statement each,
//!   whose SQL reads the time (`unixepoch('subsec')`) as it runs, after taking the lock;
//!   `rename` and `destroy_by_owner` run in a `BEGIN IMMEDIATE` transaction, which takes the
//!   lock first, and read `session_core::now` once it holds it;
//! - `insert` and `set` are upserts (`set` stores one more than the larger of the stored
//!   and the caller's version, so a version is never reused); `update` is
//!   `UPDATE ... WHERE version = ?` (compare-and-swap);
//! - `rename` removes an expired row under the target, then changes the row's key in place
//!   (`UPDATE ... SET id = ?`); a live target fails the update with a unique violation
//!   (`TargetTaken`). Under the lock no other write sees the session between the two, so a
//!   concurrent "log out everywhere" (one `DELETE ... WHERE owner = ?`) finds it under one
//!   id or the other;
//! - `delete_expired` deletes in batches of [`SqliteStoreBuilder::purge_batch`] rows, each
//!   one statement, so writers get the lock between batches.
//!
//! A call that finds the database locked (another process's long transaction) waits up to
//! the busy timeout ([`SqliteStoreBuilder::busy_timeout`], default the call's timeout),
//! then fails with a retryable error (`SQLITE_BUSY`), or with
//! [`Error::Timeout`](session_core::Error::Timeout) when the call's timeout ends first;
//! no call waits past its timeout.
//!
//! `update`, `touch` and `rename` leave a row that doesn't decode (unknown format, a
//! version out of range, data not a JSON object, a time out of range) as it is, as if the
//! session were missing; `insert` reports its id taken, and `set` replaces it. What SQL
//! doesn't judge, damage inside valid JSON (a number beyond `f64`'s range, nesting deeper
//! than the decoder reads, bytes that aren't UTF-8, which SQLite never checks), shows only
//! on reading: such a row is an
//! [`Error::Decode`](session_core::Error::Decode) for `get`, but the writes treat it as the
//! session it claims to be.

mod error;
mod expired;
mod scan;
mod schema;
mod store;

pub use schema::DEFAULT_TABLE;
pub use store::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_PURGE_BATCH, PurgeStats, SqliteStore, SqliteStoreBuilder,
};

/// The sqlx this crate is built on, so callers build pools with the same version.
pub use sqlx;
/// The pool type [`SqliteStoreBuilder::build`] takes.
pub use sqlx::SqlitePool;

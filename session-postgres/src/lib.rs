//! A PostgreSQL [`SessionStore`](session_core::SessionStore) on sqlx: one row per session,
//! compare-and-swap updates, atomic renames, batched purges.
//!
//! ```no_run
//! use std::time::Duration;
//! use session_core::{Expiry, SessionStore, StoreOptions};
//! use session_postgres::PostgresStore;
//!
//! # async fn run() -> session_core::Result<()> {
//! let store = PostgresStore::builder()
//!     .schema("app") // default "public"
//!     .table("sessions") // default "sessions"
//!     .options(StoreOptions { timeout: Duration::from_secs(2), ..StoreOptions::default() })
//!     .max_connections(20)
//!     .connect("postgres://app:secret@localhost/app") // or .build(your_pg_pool)
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
//! # Schema
//!
//! [`PostgresStore::migration_sql`] shows it: `id text` primary key, `data json` (kept as
//! written: `jsonb` would turn the float `1e18` into an integer),
//! `expires_at`, `deadline`, `created_at` (`timestamptz`), `version bigint`, `owner text`,
//! `format integer` (the stored format of `session_core::codec`), an index on `expires_at`
//! and a partial index on `owner`. Names are validated (`[a-z_][a-z0-9_]*`, at most 63
//! bytes) and quoted; every statement is parameterised.
//!
//! # Consistency
//!
//! Every expiry comparison uses the application's clock (`session_core::now`, passed to each
//! statement), as on every other backend, so a session ends at the same instant whichever
//! backend holds it; hosts sharing a table should keep their clocks in sync. The clock is
//! read once the pool has handed the call a connection, so a call that waited for one
//! never judges a session by the time it started waiting. Every call is one statement,
//! atomic under READ COMMITTED because PostgreSQL re-checks a write's condition on the
//! newest version of a row it waited for:
//!
//! - `insert` and `set` are upserts (`set` stores one more than the larger of the stored
//!   and the caller's version, so a version is never reused);
//! - `update` is `UPDATE ... WHERE version = $n` (compare-and-swap);
//! - `rename` changes the row's key in place (`UPDATE ... SET id = $to`), so a concurrent
//!   "log out everywhere" (`DELETE ... WHERE owner = $o`) that waited for the row follows it
//!   to its new id, which a copy-then-delete would have hidden from it;
//! - `destroy_by_owner` is one `DELETE`, `list_by_owner` one `SELECT` (one snapshot).
//! - [`ScanSessions`](session_core::ScanSessions) pages are keyset pages along the primary
//!   key (`WHERE id > $cursor AND expires_at > $now ORDER BY id LIMIT n`), each one `SELECT`.
//!
//! `update`, `touch` and `rename` leave a row that doesn't decode (unknown format, a
//! version out of range, data not an object, a timestamp out of range) as it is, as if the
//! session were missing; `insert` reports its id taken, and `set` replaces it. What SQL
//! can't judge cheaply, damage inside the data (a number beyond `f64`'s range, which
//! PostgreSQL's `json` accepts, or nesting deeper than the decoder reads), shows only on
//! reading: such a row is an [`Error::Decode`](session_core::Error::Decode) for `get`, but
//! the writes treat it as the session it claims to be.
//!
//! # Sharing sessions with express-session
//!
//! [`PostgresStoreBuilder::express_session`] (or `.format(`[`Format::ExpressSession`]`)`)
//! makes the store read and write exactly connect-pg-simple's `session` table
//! (`sid`, `sess json`, `expire timestamp`), so an express-session app and a Rust service
//! share logins: versioned compare-and-swap that sees Node's writes, the cookie object
//! kept, expiry agreeing, owners found where Node keeps them
//! ([`PostgresStoreBuilder::owner_path`]). Set
//! [`PostgresStoreBuilder::express_time_zone`] to the Node connections' `TimeZone` (the
//! column has none). [`Format`] documents the format, its guarantees and its limits; the
//! native format stays the default.

mod error;
mod expired;
mod express;
mod scan;
mod schema;
mod store;

pub use express::Format;
pub use schema::{DEFAULT_SCHEMA, DEFAULT_TABLE};
pub use store::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_PURGE_BATCH, PostgresStore, PostgresStoreBuilder, PurgeStats,
};

/// The sqlx this crate is built on, so callers build pools with the same version.
pub use sqlx;
/// The pool type [`PostgresStoreBuilder::build`] takes.
pub use sqlx::PgPool;

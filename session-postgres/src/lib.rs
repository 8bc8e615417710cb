//! A PostgreSQL [`SessionStore`](session_core::SessionStore) on sqlx: one row per session,
//! expiry decided by the server's clock, compare-and-swap updates, batched purges.
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
//! let pruner = store.spawn_pruner(Duration::from_secs(300)); // deletes expired rows
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
//! [`PostgresStore::migration_sql`] shows it: `id text` primary key, `data jsonb`,
//! `expires_at`, `deadline`, `created_at` (`timestamptz`), `version bigint`, `owner text`,
//! `format integer` (the stored format of `session_core::codec`), an index on `expires_at`
//! and a partial index on `owner`. Names are validated (`[a-z_][a-z0-9_]*`, at most 63
//! bytes) and quoted; every statement is parameterised.
//!
//! # Consistency
//!
//! Every expiry comparison uses the server's `now()`, so clock skew between application
//! hosts doesn't matter. `insert` and `set` are single upserts, `update` is one
//! `UPDATE ... WHERE version = $n` (a compare-and-swap under READ COMMITTED, since
//! PostgreSQL re-checks the condition on the newest row version), and `rename` is one
//! short transaction that locks the source row first.

mod error;
mod schema;
mod store;

pub use schema::{DEFAULT_SCHEMA, DEFAULT_TABLE};
pub use store::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_PURGE_BATCH, PostgresStore, PostgresStoreBuilder, PurgeStats,
};

/// The sqlx this crate is built on, so callers build pools with the same version.
pub use sqlx;
/// The pool type [`PostgresStoreBuilder::build`] takes.
pub use sqlx::PgPool;

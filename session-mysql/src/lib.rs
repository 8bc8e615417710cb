//! A MySQL/MariaDB [`SessionStore`](session_core::SessionStore) on sqlx: one row per
//! session, compare-and-swap updates, atomic renames, batched purges.
//!
//! ```no_run
//! use std::time::Duration;
//! use session_core::{Expiry, SessionStore, StoreOptions};
//! use session_mysql::MysqlStore;
//!
//! # async fn run() -> session_core::Result<()> {
//! let store = MysqlStore::builder()
//!     .table("sessions") // default "sessions", in the URL's database
//!     .options(StoreOptions { timeout: Duration::from_secs(2), ..StoreOptions::default() })
//!     .max_connections(20)
//!     .connect("mysql://app:secret@localhost/app") // or .build(your_mysql_pool)
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
//! [`MysqlStore::migration_sql`] shows it: an InnoDB table, `id VARBINARY(128)` primary
//! key and `owner VARBINARY(3072)` (so ids and owners compare byte for byte: case and
//! trailing spaces matter, which `utf8mb4_bin`, a PAD SPACE collation, would ignore; a
//! longer owner is an [`Error::Encode`](session_core::Error::Encode)),
//! `data LONGTEXT` in `utf8mb4` (the JSON text as written: MySQL's
//! `JSON` type would turn the float `1e18` into an integer and reorder keys, and MariaDB's
//! `JSON_VALID` check stops at 32 levels of nesting), `expires_at`, `deadline`,
//! `created_at` as `BIGINT` Unix milliseconds (exact, the clock's own precision, free of
//! the session `time_zone`, and unlike `TIMESTAMP` not ending in 2038), `version BIGINT`,
//! `format INT` (the stored format of `session_core::codec`), and indexes on `expires_at`
//! and `owner`. The table name is validated (`[a-z_][a-z0-9_]*`, at most 64 bytes) and
//! quoted; every statement is parameterised.
//!
//! # Consistency
//!
//! Every expiry comparison uses the application's clock (`session_core::now`, passed to each
//! statement), as on every other backend; it is read once the pool has handed the call a
//! connection. Every call is a single autocommitted statement, or a short sequence of them
//! in which only one can change the session, so each is atomic without a transaction.
//! Under InnoDB's default REPEATABLE READ a plain `SELECT` reads a snapshot, but `UPDATE`,
//! `DELETE` and `INSERT` read the newest committed row and lock it (with gap locks on the
//! index range they scanned), so their conditions are judged on the row as it is:
//!
//! - `insert` is a plain `INSERT`; a duplicate key (error 1062, nothing written) means the
//!   id is taken, unless the row there has expired: it is deleted and the `INSERT` sent
//!   once more. When that `DELETE` finds no expired row, a `SELECT` tells a live row (the
//!   id is taken) from none (a concurrent destroy or purge removed it: the `INSERT` goes
//!   again), so `insert` never reports an id taken that was free throughout; `rename`
//!   treats an expired target the same way.
//! - `set` is an `UPDATE` that computes the version in the row (one more than the larger of
//!   the live stored and the caller's, so a version is never reused) and returns it through
//!   `LAST_INSERT_ID(..)`, else an `INSERT` when there was no row.
//! - `update` is `UPDATE ... WHERE version = ?` (compare-and-swap); `touch` an `UPDATE`.
//!   sqlx connects with `CLIENT_FOUND_ROWS`, so the affected-row count is the rows
//!   matched, also when the new values equal the old.
//! - `rename` changes the row's key in place (`UPDATE ... SET id = ?`), so a concurrent
//!   "log out everywhere" (`DELETE ... WHERE owner = ?`), which waits for the row's lock and
//!   then reads the newest version of the owner index, follows it to its new id. A live
//!   row under the target is a duplicate key: [`Rename::TargetTaken`](session_core::Rename);
//!   an expired one is deleted first.
//! - `destroy_by_owner` is one `DELETE`, `list_by_owner` one `SELECT` (one snapshot).
//! - [`ScanSessions`](session_core::ScanSessions) pages are keyset pages along the primary
//!   key (`WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?`), each one `SELECT`.
//!
//! Single statements rather than short transactions (`SELECT ... FOR UPDATE`, then a
//! write): a locking read of a missing key takes a gap lock, which two callers can hold at
//! once and then each wait for the other's to insert (a deadlock per racing `set`), and
//! every extra statement holds row locks across another round trip. Renames and
//! revocations still lock rows in opposite orders (primary key then owner index, and the
//! reverse), so InnoDB picks deadlock victims now and then: a victim (1213) was rolled
//! back whole, its outcome known, so the store runs the call again within its timeout.
//! Any other failure, a lost reply above all, is returned and never re-sent. Lock wait
//! timeouts (1205) are retryable errors; pools built from a URL set
//! `innodb_lock_wait_timeout` to the call timeout, so a statement the store gave up on
//! stops waiting at about the same time rather than applying much later.
//!
//! `update`, `touch` and `rename` leave a row that doesn't decode (unknown format, a
//! version out of range, data not an object, a time out of range, an owner that isn't
//! UTF-8) as it is, as if the session were missing; `insert` reports its id taken, and `set`
//! replaces it. Damage SQL can't judge cheaply, data that starts like an object but
//! doesn't parse, shows only on reading: such a row is an [`Error::Decode`](session_core::Error::Decode) for `get`.
//!
//! Session data must fit the server's `max_allowed_packet` (16 MiB on MariaDB, 64 MiB on
//! MySQL 8 by default), well above the default 1 MiB payload limit; a larger statement is
//! an [`Error::Encode`](session_core::Error::Encode).

mod error;
mod expired;
mod scan;
mod schema;
mod store;

pub use schema::DEFAULT_TABLE;
pub use store::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_PURGE_BATCH, MysqlStore, MysqlStoreBuilder, PurgeStats,
};

/// The sqlx this crate is built on, so callers build pools with the same version.
pub use sqlx;
/// The pool type [`MysqlStoreBuilder::build`] takes.
pub use sqlx::MySqlPool;

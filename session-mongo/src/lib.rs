//! A [`SessionStore`](session_core::SessionStore) on MongoDB (and MongoDB-protocol servers such as FerretDB), built on the
//! official `mongodb` driver.
//!
//! ```no_run
//! use session_core::{Expiry, SessionStore};
//! use session_mongo::{ExpiryMode, MongoConfig, MongoStore};
//! use time::Duration;
//!
//! # async fn run() -> session_core::Result<()> {
//! // Real MongoDB: the server expires sessions through a TTL index (the default mode).
//! let store = MongoStore::connect("mongodb://127.0.0.1:27017/app", MongoConfig::default()).await?;
//!
//! // FerretDB 1.x has no TTL indexes: prune from the application every minute instead.
//! let config = MongoConfig {
//!     expiry: ExpiryMode::Interval(std::time::Duration::from_secs(60)),
//!     ..MongoConfig::default()
//! };
//! let ferret = MongoStore::connect("mongodb://127.0.0.1:27017", config).await?;
//!
//! let mut session = Expiry::idle(Duration::minutes(30)).new_record();
//! session.insert("user_id", 42).ok();
//! ferret.create(&mut session).await?;
//! assert!(store.get(session.id()).await?.is_some());
//! # Ok(()) }
//! ```
//!
//! # Stored document
//!
//! One document per session in the configured collection (default `sessions` in the URL's
//! database, or `sessions`):
//!
//! | field | BSON | |
//! |---|---|---|
//! | `_id` | string | the session id (or its hash, behind `HashedIds`) |
//! | `data` | embedded document | the session data, queryable; see the mapping below |
//! | `expires_at` | date | when the session ends unless touched |
//! | `deadline` | date, or absent | the absolute deadline no touch passes |
//! | `created_at` | date | |
//! | `version` | int64 | the compare-and-swap counter |
//! | `owner` | string, or absent | for listing and revoking a user's sessions (indexed) |
//! | `format` | int32 | `session_core::codec::CURRENT_FORMAT` when written by this crate |
//!
//! JSON maps to BSON exactly: integers to Int64, floats to Double, and back to the same JSON.
//! An integer above `i64::MAX` is an [`Error::Encode`](session_core::Error::Encode) and nothing is written. Keys holding
//! `%`, `$`, `.` or NUL are stored percent-escaped (`%25`, `%24`, `%2E`, `%00`), since the
//! server refuses or misreads such field names; all other keys are stored as they are.
//!
//! # Expiry
//!
//! Whatever the [`ExpiryMode`], every read and write checks `expires_at > now` (the
//! application's clock), so an expired session is never returned, updated or touched, and
//! its id is free for a new session. The mode only decides who removes expired documents;
//! see [`ExpiryMode`].
//!
//! A conditional write carries that check in its filter, with `now` taken right before the
//! write is sent, so a session that expires while a call runs (between its read and its
//! write, on FerretDB) is not written back. There is no server clock to judge by (FerretDB
//! 1.x has no `$$NOW`): a write that takes longer to reach the server (waiting for a pooled
//! connection, in the network) than the session had left can still land just after its
//! expiry.
//!
//! # Without transactions
//!
//! On MongoDB every operation is a single-document write guarded by its filter, except
//! `insert` (on a duplicate `_id`, a conditional delete of an expired document under the
//! id, then the insert again), `set` (a compare-and-swap on the version it read, so a
//! version is never reused) and `rename` (insert the copy, then delete the original only
//! if it is exactly as copied; otherwise the copy is removed and the move retried). None
//! needs a multi-document transaction, which FerretDB doesn't have. FerretDB 1.x does not
//! apply a filtered write atomically, so there (detected, see [`WriteGuard`]) every write to
//! an existing session but `destroy` is serialised by a lease lock taken with an atomic
//! insert; a locked section runs in a task of its own, so a caller that times out or goes
//! away never leaves its lock behind.
//!
//! Neither `rename` nor `destroy_by_owner` is one atomic step here (session-core's trait
//! docs allow it and say so). A rename inserts its copy before deleting the original, so
//! while it runs the session can be read under both ids and a listing shows it twice
//! (`cycle_id`'s new id is known to nobody until it returns, so for it only listings can
//! tell). `destroy_by_owner` deletes the owner's documents pass after pass until a pass
//! finds none, session by session: its count can split between concurrent calls.
//!
//! With lease locks (FerretDB), `destroy_by_owner` also holds a lock of the owner
//! throughout, and a rename of a session that has an owner holds that owner's lock while it
//! moves it (taken after the session's own, without waiting; when busy, the rename waits
//! for it first and then takes the session's). So no session of the owner moves while a
//! revocation runs, and none is half moved: it removes every session of the owner that
//! lives throughout the call, one being moved or kept busy included, and counts each
//! once. Renames of one owner's sessions take turns. Without locks ([`WriteGuard::Server`],
//! MongoDB's default) each pass is one `deleteMany`, which is not a snapshot of the
//! collection: a session renamed at that very moment may survive (call it again).
//!
//! The store never sends a write twice; the driver's retryable writes do only where the
//! server applies a retried write once (see [`MongoStore::connect`]).
//!
//! # FerretDB's fast path
//!
//! FerretDB 1.x hands a filter to its storage backend only when it is exactly
//! `{_id: <string>}`; any other filter (even `{_id, expires_at}`) makes it read and decode
//! every document of the collection. So in [`WriteGuard::Locks`] mode the store reads by
//! that filter alone: holding the session's lock, it reads the document by `_id` and checks
//! version, expiry, deadline and shape here. Reads, `destroy`, and the deletes of `rename`
//! (the original), `insert` and the purges (an expired document) use `{_id}` alone (the
//! lock keeps the document from changing in between, since every write to an existing
//! session but `destroy` takes it). The writes that must not act on a document other than
//! the one read keep a filter on it, at the price of a scan: `update`'s replace filters on
//! `{_id, version}` (a replace delayed in the network past its lease must fail rather than
//! overwrite a later acknowledged update), `touch` on `{_id, deadline}` (after a `destroy`
//! and an `insert`, which take no lock, another session may live under the id), `set` on
//! the version and expiry it read; and each on `expires_at > now` when it found the
//! session live (one that expired since the read stays gone).
//! The collection-wide calls (`delete_expired`, `list_by_owner`, `destroy_by_owner`,
//! `count`) filter on other fields, once per call (per pass), and so does each page of a
//! [`ScanSessions`](session_core::ScanSessions) scan (keyset pages along `_id`).
//!
//! On MongoDB that `{_id}` query is an index lookup. On FerretDB's SQLite backend (1.24)
//! it is still a scan of the table inside SQLite, since the query's expression
//! (`->'$._id'`) is not the one the `_id` index is built on (`->"_id"`): about ten times
//! cheaper per document than a filter FerretDB decodes, but linear in the number of
//! sessions, for this store and for any other client alike.
//!
//! # Sharing sessions with express-session
//!
//! With [`MongoConfig::format`] set to [`Format::ExpressSession`] the store reads and writes
//! exactly the documents [connect-mongo] keeps for [express-session] (`{_id: <sid>,
//! expires: <date>, session: "<the session object as JSON>"}`, connect-mongo's default
//! `stringify: true`), so an express app and a Rust service on the same collection share
//! logins. [`Format`] says what is stored, which connect-mongo options it pairs with, and
//! what each side promises; the native format stays the default.
//!
//! [connect-mongo]: https://www.npmjs.com/package/connect-mongo
//! [express-session]: https://www.npmjs.com/package/express-session

mod config;
mod convert;
mod document;
mod errors;
mod expired;
mod express;
mod locks;
mod scan;
mod store;
mod writes;

/// The driver this crate is built on, re-exported so callers and tests use the same version
/// (for example `session_mongo::mongodb::bson::doc!` with [`MongoStore::collection`]).
pub use mongodb;

pub use config::{
    DEFAULT_COLLECTION, DEFAULT_DATABASE, EXPIRES_INDEX, ExpiryMode, LOCK_INDEX, MongoConfig,
    OWNER_INDEX, TTL_INDEX, WriteGuard,
};
pub use document::decode_document;
pub use express::{CONNECT_MONGO_TTL, CONNECT_MONGO_TTL_INDEX, Format};
pub use store::MongoStore;

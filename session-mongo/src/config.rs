//! Where and how a [`MongoStore`](crate::MongoStore)(crate::MongoStore) keeps its sessions.

use std::time::Duration;

use session_core::{Error, Result, StoreOptions};

/// The database used when neither the configuration nor the URL names one.
pub const DEFAULT_DATABASE: &str = "sessions";
/// The collection used unless configured otherwise.
pub const DEFAULT_COLLECTION: &str = "sessions";

/// Name of the TTL index [`ExpiryMode::Native`] creates on `expires_at`.
pub const TTL_INDEX: &str = "expires_at_ttl";
/// Name of the plain index the other modes create on `expires_at` (for purges and counts).
pub const EXPIRES_INDEX: &str = "expires_at_1";
/// Name of the index on `owner`.
pub const OWNER_INDEX: &str = "owner_1";
/// Name of the unique index of the lock collection ([`WriteGuard::Locks`]).
pub const LOCK_INDEX: &str = "lock_of_unique";

/// Who removes expired session documents. Expired sessions are never *returned* in any mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiryMode {
    /// The server removes them through a TTL index on `expires_at` (`expireAfterSeconds: 0`);
    /// MongoDB's TTL monitor runs about once a minute. The default, as in connect-mongo:
    /// on MongoDB it needs no task in the application, and the deletions happen once however
    /// many application instances run.
    ///
    /// Servers without TTL indexes (FerretDB 1.x) are detected at start-up and refused with
    /// an [`Error::Config`] that suggests [`ExpiryMode::Interval`], rather than silently
    /// keeping expired documents forever.
    #[default]
    Native,
    /// The store runs session-core's [`Pruner`](session_core::Pruner), calling
    /// [`delete_expired`](session_core::SessionStore::delete_expired) at this interval on the tokio runtime
    /// that created it, for as long as any clone of the store lives. For servers without TTL
    /// indexes, such as FerretDB.
    Interval(Duration),
    /// Nothing removes them automatically; call
    /// [`delete_expired`](session_core::SessionStore::delete_expired) yourself (a cron job, a
    /// [`Pruner`](session_core::Pruner) of your own).
    Disabled,
}

/// How conditional writes are made atomic.
///
/// On MongoDB a filtered `updateOne`/`deleteOne` is atomic, so a compare-and-swap is one
/// guarded write. FerretDB 1.x is not: it finds the matching documents, then writes them
/// back by `_id` in a separate step, so two compare-and-swaps on one version can both
/// "succeed" and one write is lost. On such servers the store serialises the writes to each
/// session with a lease lock: a document in the companion collection `<collection>_locks`,
/// taken by an insert that a unique index makes atomic, and released by deleting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteGuard {
    /// [`WriteGuard::Locks`] on FerretDB (detected through `buildInfo`), else
    /// [`WriteGuard::Server`].
    #[default]
    Auto,
    /// Single guarded writes; only for servers whose filtered writes are atomic (MongoDB).
    Server,
    /// Per-session lease locks around every write to an existing session but `destroy`
    /// (`set`, `update`, `touch`, `rename`, the purges), and a per-owner one that
    /// `destroy_by_owner` holds and a rename of an owned session takes while it moves it;
    /// under the lock the store reads by `_id` and checks version and expiry itself (see the
    /// crate docs for the filters its writes keep). Leases last twice the options' timeout
    /// and are judged by the application's clock, so instances sharing a collection need
    /// roughly synchronised clocks.
    Locks,
}

/// Where and how a [`MongoStore`](crate::MongoStore) keeps its sessions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MongoConfig {
    /// The database; `None`: the one named in the URL or client's default, else
    /// [`DEFAULT_DATABASE`]. Ignored by [`MongoStore::from_database`](crate::MongoStore::from_database).
    pub database: Option<String>,
    /// The collection; `None`: [`DEFAULT_COLLECTION`].
    pub collection: Option<String>,
    /// Who removes expired documents.
    pub expiry: ExpiryMode,
    /// Payload limit, timeout and corrupt-record policy.
    pub options: StoreOptions,
    /// How conditional writes are made atomic (default: detected).
    pub write_guard: WriteGuard,
    /// What a session document holds: this crate's own (the default), or connect-mongo's
    /// for sharing sessions with an express app (see the crate docs).
    pub format: crate::Format,
    /// In the express-session format, where the data Node writes names the session's owner
    /// (`"passport.user"`, `"user.id"`), for `list_by_owner` / `destroy_by_owner`; `None`:
    /// the owner Rust stored. An [`Error::Config`] with the native format.
    pub owner_path: Option<String>,
}

pub(crate) fn check_database_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 63 || name.contains(['/', '\\', '.', ' ', '"', '$', '\0']) {
        return Err(Error::Config(format!(
            "{name:?} is not a valid MongoDB database name (1 to 63 characters, none of \
             /\\. \"$ or NUL)"
        )));
    }
    Ok(())
}

pub(crate) fn check_collection_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['$', '\0']) || name.starts_with("system.") {
        return Err(Error::Config(format!(
            "{name:?} is not a valid collection name for sessions (non-empty, no `$` or NUL, \
             not in the `system.` namespace)"
        )));
    }
    Ok(())
}

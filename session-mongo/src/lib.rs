//! A [`SessionStore`] on MongoDB (and MongoDB-protocol servers such as FerretDB), built on the
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
//! An integer above `i64::MAX` is an [`Error::Encode`] and nothing is written. Keys holding
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
//! # Without transactions
//!
//! On MongoDB every operation is a single-document write guarded by its filter, except
//! `insert` (on a duplicate `_id`, a conditional delete of an expired document under the
//! id, then the insert again) and `rename` (insert the copy, then delete the original only
//! if it is exactly as copied; otherwise the copy is removed and the move retried). Neither
//! needs a multi-document transaction, which FerretDB doesn't have. FerretDB 1.x does not
//! apply a filtered write atomically, so there (detected, see [`WriteGuard`]) every write to
//! an existing session is serialised by a lease lock taken with an atomic insert.
//!
//! # FerretDB's fast path
//!
//! FerretDB 1.x hands a filter to its storage backend only when it is exactly
//! `{_id: <string>}`; any other filter (even `{_id, expires_at}`) makes it read and decode
//! every document of the collection. So in [`WriteGuard::Locks`] mode every per-request call
//! uses that filter alone: holding the session's lock, the store reads the document by
//! `_id`, checks version, expiry and deadline here, and writes with `{_id}` (the lock keeps
//! the document from changing in between, since every write to an existing session,
//! `destroy` included, takes it). Only the collection-wide calls (`delete_expired`,
//! `list_by_owner`, `destroy_by_owner`, `count`) filter on other fields, once per call.
//! One exception: `update`'s replace keeps `{_id, version}`, because a replace delayed in
//! the network past its lease must fail rather than overwrite a later acknowledged update.
//!
//! On MongoDB that `{_id}` query is an index lookup. On FerretDB's SQLite backend (1.24)
//! it is still a scan of the table inside SQLite, since the query's expression
//! (`->'$._id'`) is not the one the `_id` index is built on (`->"_id"`): about ten times
//! cheaper per document than a filter FerretDB decodes, but linear in the number of
//! sessions, for this store and for any other client alike.

mod convert;

/// The driver this crate is built on, re-exported so callers and tests use the same version
/// (for example `session_mongo::mongodb::bson::doc!` with [`MongoStore::collection`]).
pub use mongodb;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt as _;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use session_core::codec::{CURRENT_FORMAT, StoredRecord};
use session_core::{
    Error, MAX_ID_ATTEMPTS, Pruner, Record, Rename, Result, SessionId, SessionStore, StoreOptions,
    async_trait, unix_millis,
};
use time::OffsetDateTime;

/// The backend name in errors.
const BACKEND: &str = "mongo";

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
    /// The store runs session-core's [`Pruner`], calling
    /// [`delete_expired`](SessionStore::delete_expired) at this interval on the tokio runtime
    /// that created it, for as long as any clone of the store lives. For servers without TTL
    /// indexes, such as FerretDB.
    Interval(Duration),
    /// Nothing removes them automatically; call
    /// [`delete_expired`](SessionStore::delete_expired) yourself (a cron job, a
    /// [`Pruner`] of your own).
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
    /// Per-session lease locks around every write to an existing session (`set`, `update`,
    /// `touch`, `destroy`, `rename`, the purges); under the lock the store reads by `_id`,
    /// checks version and expiry itself and writes by `_id` alone. Leases last twice the
    /// options' timeout and are judged by the application's clock, so instances sharing a
    /// collection need roughly synchronised clocks.
    Locks,
}

/// Where and how a [`MongoStore`] keeps its sessions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MongoConfig {
    /// The database; `None`: the one named in the URL or client's default, else
    /// [`DEFAULT_DATABASE`]. Ignored by [`MongoStore::from_database`].
    pub database: Option<String>,
    /// The collection; `None`: [`DEFAULT_COLLECTION`].
    pub collection: Option<String>,
    /// Who removes expired documents.
    pub expiry: ExpiryMode,
    /// Payload limit, timeout and corrupt-record policy.
    pub options: StoreOptions,
    /// How conditional writes are made atomic (default: detected).
    pub write_guard: WriteGuard,
}

/// A session store on one MongoDB collection. Cheap to clone; clones share the
/// connection pool and the pruning task.
#[derive(Clone)]
pub struct MongoStore {
    collection: Collection<Document>,
    /// The lease locks of [`WriteGuard::Locks`]; `None` with server-side atomic writes.
    locks: Option<Collection<Document>>,
    /// In-process queues in front of the lease locks, so this process's writers to one
    /// session take turns in order instead of polling the server against each other.
    queues: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    options: StoreOptions,
    expiry: ExpiryMode,
    /// The pruning task of [`ExpiryMode::Interval`]; it stops once every clone holding it
    /// is dropped. The store inside the task holds `None`, so there is no cycle.
    pruner: Option<Arc<Mutex<Option<Pruner>>>>,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.collection.namespace().db)
            .field("collection", &self.collection.name())
            .field("expiry", &self.expiry)
            .field("locks", &self.locks.is_some())
            .field("options", &self.options)
            .finish()
    }
}

impl MongoStore {
    /// Connects to the server at `url` and prepares the store (see [`Self::from_database`]).
    ///
    /// The driver's connect and server-selection timeouts are set to the options' timeout
    /// (unless the URL sets them), so a server that is down fails calls quickly with a
    /// retryable error instead of letting them hang.
    pub async fn connect(url: &str, config: MongoConfig) -> Result<Self> {
        let mut client_options = ClientOptions::parse(url)
            .await
            .map_err(|err| Error::Config(format!("invalid MongoDB URL: {err}")))?;
        let timeout = config.options.timeout;
        client_options.connect_timeout.get_or_insert(timeout);
        client_options
            .server_selection_timeout
            .get_or_insert(timeout);
        client_options
            .app_name
            .get_or_insert_with(|| "session-mongo".to_owned());
        let client = Client::with_options(client_options)
            .map_err(|err| Error::Config(format!("invalid MongoDB client options: {err}")))?;
        Self::from_client(&client, config).await
    }

    /// A store on an existing client: database from `config`, else the client's default
    /// database (from its URL), else [`DEFAULT_DATABASE`].
    ///
    /// Calls are bounded by the options' timeout; the client's own timeouts are left as
    /// they are.
    pub async fn from_client(client: &Client, config: MongoConfig) -> Result<Self> {
        let database = match &config.database {
            Some(name) => {
                check_database_name(name)?;
                client.database(name)
            }
            None => client
                .default_database()
                .unwrap_or_else(|| client.database(DEFAULT_DATABASE)),
        };
        Self::from_database(&database, config).await
    }

    /// A store on a collection of `database` (`config.database` is ignored). Creates the
    /// indexes (see [`Self::ensure_indexes`]) and, in [`ExpiryMode::Interval`], starts the
    /// pruning task on the current tokio runtime.
    pub async fn from_database(database: &Database, config: MongoConfig) -> Result<Self> {
        let name = config.collection.as_deref().unwrap_or(DEFAULT_COLLECTION);
        check_collection_name(name)?;
        if let ExpiryMode::Interval(every) = config.expiry
            && every.is_zero()
        {
            return Err(Error::Config(
                "ExpiryMode::Interval needs a non-zero interval".into(),
            ));
        }
        let locks = match config.write_guard {
            WriteGuard::Server => false,
            WriteGuard::Locks => true,
            WriteGuard::Auto => config
                .options
                .within_timeout(BACKEND, "connect", server_is_ferretdb(database))
                .await?
                .is_some(),
        };
        let mut store = Self {
            collection: database.collection(name),
            locks: locks.then(|| database.collection(&format!("{name}_locks"))),
            queues: Arc::default(),
            options: config.options,
            expiry: config.expiry,
            pruner: None,
        };
        store.ensure_indexes().await?;
        if let ExpiryMode::Interval(every) = store.expiry {
            let pruner = Pruner::spawn(Arc::new(store.clone()), every);
            store.pruner = Some(Arc::new(Mutex::new(Some(pruner))));
        }
        Ok(store)
    }

    /// Creates the indexes this store relies on, if missing (idempotent; the constructors
    /// call it): `owner`, and on `expires_at` a TTL index ([`ExpiryMode::Native`]) or a
    /// plain one (the other modes).
    ///
    /// Fails with [`Error::Config`] in native mode on a server without TTL indexes
    /// (FerretDB), and when an index of the other mode already exists (after a mode change:
    /// drop [`TTL_INDEX`] or [`EXPIRES_INDEX`] first).
    pub async fn ensure_indexes(&self) -> Result<()> {
        let native = self.expiry == ExpiryMode::Native;
        self.timed("ensure_indexes", async {
            if native {
                self.refuse_servers_without_ttl().await?;
            }
            let owner = IndexModel::builder()
                .keys(doc! { "owner": 1 })
                .options(IndexOptions::builder().name(OWNER_INDEX.to_owned()).build())
                .build();
            let expiry_options = if native {
                IndexOptions::builder()
                    .name(TTL_INDEX.to_owned())
                    .expire_after(Duration::ZERO)
                    .build()
            } else {
                IndexOptions::builder()
                    .name(EXPIRES_INDEX.to_owned())
                    .build()
            };
            let expires = IndexModel::builder()
                .keys(doc! { "expires_at": 1 })
                .options(expiry_options)
                .build();
            create_missing(&self.collection, vec![owner, expires], native).await?;
            if let Some(locks) = &self.locks {
                let unique = IndexModel::builder()
                    .keys(doc! { "lock_of": 1 })
                    .options(
                        IndexOptions::builder()
                            .name(LOCK_INDEX.to_owned())
                            .unique(true)
                            .build(),
                    )
                    .build();
                create_missing(locks, vec![unique], false).await?;
            }
            Ok(())
        })
        .await
    }

    /// FerretDB refuses `expireAfterSeconds`; say what to do instead of failing with a bare
    /// "not implemented".
    async fn refuse_servers_without_ttl(&self) -> Result<()> {
        let database = self
            .collection
            .client()
            .database(&self.collection.namespace().db);
        if let Some(version) = server_is_ferretdb(&database).await? {
            return Err(Error::Config(format!(
                "the server is FerretDB ({version}), which has no TTL indexes, so \
                 ExpiryMode::Native cannot expire sessions there; use \
                 ExpiryMode::Interval(..) to prune from the application"
            )));
        }
        Ok(())
    }

    /// The raw collection, for administration and tests (documents as described in the
    /// crate documentation). Writing to it bypasses every guarantee of the store.
    pub fn collection(&self) -> &Collection<Document> {
        &self.collection
    }

    /// The options the store was built with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The expiry mode the store was built with.
    pub fn expiry_mode(&self) -> ExpiryMode {
        self.expiry
    }

    /// Stops the pruning task of [`ExpiryMode::Interval`] (for every clone) and waits for a
    /// running purge to finish. Without it, the task stops once the last clone is dropped.
    pub async fn stop_pruner(&self) {
        let pruner = self
            .pruner
            .as_ref()
            .and_then(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(pruner) = pruner {
            pruner.stop().await;
        }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.options.within_timeout(BACKEND, operation, call).await
    }

    /// The document a write of `record` stores (its next version), checked against the
    /// payload limit before anything reaches the server.
    fn encode(&self, record: &Record) -> Result<Document> {
        let id = record.id();
        let encode_error = |reason: String| Error::Encode {
            id: id.clone(),
            reason,
        };
        let stored = StoredRecord::next_of(record);
        let version = i64::try_from(stored.version)
            .map_err(|_| encode_error(format!("version {} is above i64::MAX", stored.version)))?;
        let data = convert::data_to_bson(record.data()).map_err(encode_error)?;
        let mut document = doc! {
            "_id": id.expose(),
            "data": data,
            "expires_at": DateTime::from_millis(stored.expires_at),
            "created_at": DateTime::from_millis(stored.created_at),
            "version": version,
            // CURRENT_FORMAT is a small constant.
            "format": i32::try_from(CURRENT_FORMAT).unwrap_or(i32::MAX),
        };
        if let Some(deadline) = stored.deadline {
            document.insert("deadline", DateTime::from_millis(deadline));
        }
        if let Some(owner) = stored.owner {
            document.insert("owner", owner.into_owned());
        }
        let mut bytes = Vec::new();
        document
            .to_writer(&mut bytes)
            .map_err(|err| encode_error(format!("BSON encoding failed: {err}")))?;
        self.options.check_size(id, bytes.len())?;
        Ok(document)
    }

    /// Takes the lease lock of `id` ([`WriteGuard::Locks`]; [`Lock::NotNeeded`] without).
    /// While another writer holds it, waits (the caller's timeout bounds the wait), or
    /// returns [`Lock::Busy`] when `wait` is false.
    async fn lock(&self, id: &str, wait: bool) -> Result<Lock> {
        let Some(locks) = &self.locks else {
            return Ok(Lock::NotNeeded);
        };
        let lease = self
            .options
            .timeout
            .saturating_mul(2)
            .max(Duration::from_secs(1));
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let mut pause = Duration::from_millis(1);
        loop {
            let token = SessionId::generate();
            let now = unix_millis(session_core::now());
            let lock = doc! {
                "_id": token.expose(),
                "lock_of": id,
                "until": DateTime::from_millis(now.saturating_add(lease_ms)),
            };
            match locks.insert_one(lock).await {
                Ok(_) => return Ok(Lock::Held(token)),
                Err(err) if is_duplicate_key(&err) => {}
                Err(err) => return Err(backend_error(err)),
            }
            // A lease that ran out belongs to a writer that crashed or was cancelled. The
            // server deletes the stale lock by its own (token) `_id`, never a fresh one.
            let stale = doc! { "lock_of": id, "until": { "$lte": now_bson() } };
            if locks
                .delete_one(stale)
                .await
                .map_err(backend_error)?
                .deleted_count
                == 1
            {
                continue;
            }
            if !wait {
                return Ok(Lock::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(8));
        }
    }

    /// Releases what [`Self::lock`] took (best effort: a lost release expires with its lease).
    async fn unlock(&self, lock: Lock) {
        if let (Some(locks), Lock::Held(token)) = (&self.locks, lock)
            && let Err(err) = locks.delete_one(doc! { "_id": token.expose() }).await
        {
            tracing::warn!(error = %err, "releasing a session lock failed; its lease will expire");
        }
    }

    /// Runs `op` holding the lock of `id` (waiting for it), releasing it whatever happens.
    async fn locked<T>(&self, id: &str, op: impl Future<Output = Result<T>>) -> Result<T> {
        if self.locks.is_none() {
            return op.await;
        }
        let queue = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(queues.entry(id.to_owned()).or_default())
        };
        let result = async {
            let _turn = queue.lock().await;
            let lock = self.lock(id, true).await?;
            let result = op.await;
            self.unlock(lock).await;
            result
        }
        .await;
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this call still hold the queue: nobody else is waiting.
        if Arc::strong_count(&queue) == 2 {
            queues.remove(id);
        }
        result
    }

    /// Inserts `document` unless a live document holds its `_id`; `false` when one does.
    /// An expired document under the id is removed first (under the id's lock when locking),
    /// so expired sessions never block their id.
    async fn insert_document(
        &self,
        id: &SessionId,
        document: Document,
        wait: bool,
    ) -> Result<bool> {
        match self.collection.insert_one(document.clone()).await {
            Ok(_) => return Ok(true),
            Err(err) if is_duplicate_key(&err) => {}
            Err(err) => return Err(backend_error(err)),
        }
        let lock = self.lock(id.expose(), wait).await?;
        if lock == Lock::Busy {
            return Ok(false);
        }
        let result = async {
            if !self.delete_expired_one(id).await? {
                return Ok(false);
            }
            match self.collection.insert_one(document).await {
                Ok(_) => Ok(true),
                Err(err) if is_duplicate_key(&err) => Ok(false),
                Err(err) => Err(backend_error(err)),
            }
        }
        .await;
        self.unlock(lock).await;
        result
    }

    /// Deletes the document under `id` if it has expired; `true` when one was deleted.
    /// With locks (the caller holds `id`'s), a read by `_id`, the expiry checked here and a
    /// delete by `_id` alone, which FerretDB answers from the key; the lock keeps the
    /// document from changing in between. Without, one guarded delete.
    async fn delete_expired_one(&self, id: &SessionId) -> Result<bool> {
        if self.locks.is_some() {
            return self
                .delete_by_id_if(id.expose(), |d, now| !is_live(d, now))
                .await;
        }
        let expired = doc! { "_id": id.expose(), "expires_at": { "$lte": now_bson() } };
        let result = self
            .collection
            .delete_one(expired)
            .await
            .map_err(backend_error)?;
        Ok(result.deleted_count == 1)
    }

    /// With locks, the caller holding `id`'s: reads the document by `_id`, and deletes it by
    /// `_id` alone (FerretDB's fast path) if `matches` it; the lock keeps it as read.
    async fn delete_by_id_if(
        &self,
        id: &str,
        matches: impl Fn(&Document, DateTime) -> bool,
    ) -> Result<bool> {
        let now = now_bson();
        let current = self
            .collection
            .find_one(doc! { "_id": id })
            .await
            .map_err(backend_error)?;
        if !current.is_some_and(|document| matches(&document, now)) {
            return Ok(false);
        }
        let result = self
            .collection
            .delete_one(doc! { "_id": id })
            .await
            .map_err(backend_error)?;
        Ok(result.deleted_count == 1)
    }

    /// Whether a writer of this process holds or waits for `id`'s lock right now.
    fn queued(&self, id: &str) -> bool {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// The live document under `id` (only the `projection`'s fields, when given), looked up
    /// by `_id` alone with the expiry checked here: `{_id}` is the one filter every
    /// MongoDB-protocol server answers from the key, while FerretDB 1.x scans the whole
    /// collection for `{_id, expires_at: {$gt}}` (measured: 0.1 s against 1 s at 20,000
    /// sessions).
    async fn find_live(
        &self,
        id: &SessionId,
        projection: Option<Document>,
    ) -> Result<Option<Document>> {
        let now = now_bson();
        let mut find = self.collection.find_one(doc! { "_id": id.expose() });
        if let Some(mut projection) = projection {
            projection.insert("expires_at", 1);
            find = find.projection(projection);
        }
        let found = find.await.map_err(backend_error)?;
        Ok(found.filter(|document| is_live(document, now)))
    }

    fn decode(&self, id: &SessionId, document: Document) -> Result<Option<Record>> {
        self.options.on_corrupt(decode(id, document))
    }

    /// The records of a `find`; documents whose `_id` is not a session id are skipped with
    /// a warning, corrupt ones go through the corrupt-record policy.
    async fn find_records(&self, filter: Document) -> Result<Vec<Record>> {
        let documents: Vec<Document> = self
            .collection
            .find(filter)
            .await
            .map_err(backend_error)?
            .try_collect()
            .await
            .map_err(backend_error)?;
        let mut records = Vec::with_capacity(documents.len());
        for document in documents {
            let id = match document.get("_id") {
                Some(Bson::String(raw)) => SessionId::parse(raw).ok(),
                _ => None,
            };
            let Some(id) = id else {
                tracing::warn!(
                    collection = %self.collection.name(),
                    "skipping a document whose _id is not a session id"
                );
                continue;
            };
            records.extend(self.decode(&id, document)?);
        }
        Ok(records)
    }

    /// Deletes the documents matching `filter`. With locks, each one under its own lock and
    /// only if it still matches (`matches`, the same condition checked here on the document
    /// read by `_id`), since FerretDB's `deleteMany` deletes what matched when it looked,
    /// even if it was rewritten since; the read and the delete filter on `_id` alone, so
    /// only the one `find` scans. `skip_busy`: leave locked documents for later.
    async fn delete_matching(
        &self,
        filter: Document,
        matches: impl Fn(&Document, DateTime) -> bool + Send + Sync,
        skip_busy: bool,
    ) -> Result<u64> {
        if self.locks.is_none() {
            let result = self
                .collection
                .delete_many(filter)
                .await
                .map_err(backend_error)?;
            return Ok(result.deleted_count);
        }
        let ids: Vec<Document> = self
            .collection
            .find(filter.clone())
            .projection(doc! { "_id": 1 })
            .await
            .map_err(backend_error)?
            .try_collect()
            .await
            .map_err(backend_error)?;
        let mut deleted = 0;
        for found in ids {
            let Ok(id) = found.get_str("_id") else {
                continue;
            };
            let lock = self.lock(id, !skip_busy).await?;
            if lock == Lock::Busy {
                continue;
            }
            let result = self.delete_by_id_if(id, &matches).await;
            self.unlock(lock).await;
            deleted += u64::from(result?);
        }
        Ok(deleted)
    }

    /// One attempt of [`SessionStore::rename`], holding `from`'s lock when locking; `None`:
    /// the source changed meanwhile.
    async fn try_rename(&self, from: &SessionId, to: &SessionId) -> Result<Option<Rename>> {
        let Some(original) = self.find_live(from, None).await? else {
            return Ok(Some(Rename::SourceMissing));
        };
        let mut copy = original.clone();
        copy.insert("_id", to.expose());
        // Don't wait for `to`'s lock while holding `from`'s: a busy target counts as taken.
        if !self.insert_document(to, copy.clone(), false).await? {
            return Ok(Some(Rename::TargetTaken));
        }
        // The original goes only if it is exactly as copied: any write acknowledged since
        // the read (update, set, touch) or a destroy makes this match nothing. With locks,
        // we hold `from`'s, which every write to it takes, so it is as read: delete it by
        // `_id` alone (FerretDB's fast path).
        let original_filter = if self.locks.is_some() {
            doc! { "_id": from.expose() }
        } else {
            original
        };
        let removed = self
            .collection
            .delete_one(original_filter)
            .await
            .map_err(backend_error)?;
        if removed.deleted_count == 1 {
            return Ok(Some(Rename::Moved));
        }
        // Take the copy back (only ours, as copied) and let the caller read again: the
        // acknowledged write stays under `from`, a destroyed session stays destroyed. (With
        // locks only reached when our lease ran out; this whole-document filter scans.)
        self.collection
            .delete_one(copy)
            .await
            .map_err(backend_error)?;
        Ok(None)
    }

    /// [`SessionStore::touch`] for servers with atomic filtered updates: one update in the
    /// common case, a capped one when the deadline is before the wanted expiry.
    async fn touch_unlocked(&self, id: &SessionId, wanted: DateTime) -> Result<bool> {
        for _ in 0..MAX_ID_ATTEMPTS {
            let mut filter = live(id, now_bson());
            filter.insert(
                "$or",
                vec![
                    doc! { "deadline": null },
                    doc! { "deadline": { "$gte": wanted } },
                ],
            );
            let set = doc! { "$set": { "expires_at": wanted } };
            let result = self
                .collection
                .update_one(filter, set)
                .await
                .map_err(backend_error)?;
            if result.matched_count == 1 {
                return Ok(true);
            }
            // Otherwise the deadline (if the session lives) is before the wanted expiry: cap
            // at it, guarded on the deadline read so a concurrent rewrite retries.
            let Some(found) = self.find_live(id, Some(doc! { "deadline": 1 })).await? else {
                return Ok(false);
            };
            let deadline = match found.get("deadline") {
                Some(Bson::DateTime(deadline)) => *deadline,
                None | Some(Bson::Null) => continue, // rewritten meanwhile
                Some(_) => return Err(Error::decode(id, "field `deadline` is not a date")),
            };
            let mut filter = live(id, now_bson());
            filter.insert("deadline", deadline);
            let capped = doc! { "$set": { "expires_at": deadline.min(wanted) } };
            let result = self
                .collection
                .update_one(filter, capped)
                .await
                .map_err(backend_error)?;
            if result.matched_count == 1 {
                return Ok(true);
            }
        }
        // Rewritten concurrently at every attempt.
        Err(Error::Conflict { id: id.clone() })
    }

    /// [`SessionStore::touch`] under the session's lock: read the deadline, write the cap,
    /// both by `_id` alone (the lock keeps the document as read).
    async fn touch_locked(&self, id: &SessionId, wanted: DateTime) -> Result<bool> {
        let Some(found) = self.find_live(id, Some(doc! { "deadline": 1 })).await? else {
            return Ok(false);
        };
        let expires_at = match found.get("deadline") {
            Some(Bson::DateTime(deadline)) => (*deadline).min(wanted),
            None | Some(Bson::Null) => wanted,
            Some(_) => return Err(Error::decode(id, "field `deadline` is not a date")),
        };
        let set = doc! { "$set": { "expires_at": expires_at } };
        let result = self
            .collection
            .update_one(doc! { "_id": id.expose() }, set)
            .await
            .map_err(backend_error)?;
        Ok(result.matched_count == 1)
    }

    /// [`SessionStore::update`] with locks: holding `id`'s lock, read the version by `_id`,
    /// compare here, replace by `_id` and version. `Ok(false)`: a conflict.
    async fn update_locked(
        &self,
        id: &SessionId,
        version: i64,
        document: Document,
    ) -> Result<bool> {
        let current = |document: Option<Document>| {
            document.is_some_and(|document| match document.get("version") {
                Some(Bson::Int64(stored)) => *stored == version,
                Some(Bson::Int32(stored)) => i64::from(*stored) == version,
                _ => false,
            })
        };
        // A stale version conflicts at once, without queueing for the lock behind the
        // writer that is current; only worth a round trip when a writer of this process is
        // already at it (across processes, the lock's own wait covers it).
        if self.queued(id.expose())
            && !current(self.find_live(id, Some(doc! { "version": 1 })).await?)
        {
            return Ok(false);
        }
        self.locked(id.expose(), async {
            if !current(self.find_live(id, Some(doc! { "version": 1 })).await?) {
                return Ok(false);
            }
            // The version stays in the filter, though it costs FerretDB a scan: a replace
            // whose caller timed out can still reach the server after the lease ran out
            // and another writer moved on (TCP delivers it once a partition heals), and
            // then it must match nothing instead of overwriting an acknowledged update.
            let result = self
                .collection
                .replace_one(doc! { "_id": id.expose(), "version": version }, document)
                .await
                .map_err(backend_error)?;
            Ok(result.matched_count == 1)
        })
        .await
    }
}

/// A lease lock's state, from [`MongoStore::lock`].
#[derive(Debug, PartialEq, Eq)]
enum Lock {
    /// The server's filtered writes are atomic; no lock taken.
    NotNeeded,
    /// Taken under this token (the lock document's `_id`).
    Held(SessionId),
    /// Another writer holds it (only when not waiting).
    Busy,
}

#[async_trait]
impl SessionStore for MongoStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        self.timed("get", async {
            let found = self.find_live(id, None).await?;
            match found {
                Some(document) => self.decode(id, document),
                None => Ok(None),
            }
        })
        .await
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        let document = self.encode(record)?;
        let inserted = self
            .timed("insert", self.insert_document(record.id(), document, true))
            .await?;
        if inserted {
            record.set_version(record.version() + 1);
        }
        Ok(inserted)
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        let document = self.encode(record)?;
        let id = record.id().expose();
        self.timed(
            "set",
            self.locked(id, async {
                self.collection
                    .replace_one(doc! { "_id": id }, document)
                    .upsert(true)
                    .await
                    .map_err(backend_error)
            }),
        )
        .await?;
        record.set_version(record.version() + 1);
        Ok(())
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let document = self.encode(record)?;
        let Ok(version) = i64::try_from(record.version()) else {
            return Err(Error::Conflict {
                id: record.id().clone(),
            });
        };
        let updated = self
            .timed("update", async {
                if self.locks.is_some() {
                    return self.update_locked(record.id(), version, document).await;
                }
                let mut filter = live(record.id(), now_bson());
                filter.insert("version", version);
                let result = self
                    .collection
                    .replace_one(filter, document)
                    .await
                    .map_err(backend_error)?;
                Ok(result.matched_count == 1)
            })
            .await?;
        if !updated {
            return Err(Error::Conflict {
                id: record.id().clone(),
            });
        }
        record.set_version(record.version() + 1);
        Ok(())
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        let wanted = DateTime::from_millis(unix_millis(expires_at));
        self.timed("touch", async {
            if self.locks.is_some() {
                self.locked(id.expose(), self.touch_locked(id, wanted))
                    .await
            } else {
                self.touch_unlocked(id, wanted).await
            }
        })
        .await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        // Under the lock with locks: a writer holding it relies on the document staying as
        // it read it until its write by `_id`.
        self.timed(
            "destroy",
            self.locked(id.expose(), async {
                self.collection
                    .delete_one(doc! { "_id": id.expose() })
                    .await
                    .map_err(backend_error)
            }),
        )
        .await?;
        Ok(())
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        self.timed("rename", async {
            if from == to {
                let found = self.find_live(from, Some(doc! { "_id": 1 })).await?;
                return Ok(if found.is_some() {
                    Rename::Moved
                } else {
                    Rename::SourceMissing
                });
            }
            for _ in 0..MAX_ID_ATTEMPTS {
                let attempt = self
                    .locked(from.expose(), self.try_rename(from, to))
                    .await?;
                if let Some(outcome) = attempt {
                    return Ok(outcome);
                }
            }
            Err(Error::Conflict { id: from.clone() })
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.timed("delete_expired", async {
            let removed = self
                .delete_matching(
                    doc! { "expires_at": { "$lte": now_bson() } },
                    |document, now| !is_live(document, now),
                    true,
                )
                .await?;
            if let Some(locks) = &self.locks {
                // Leases of crashed writers; deleted by their own `_id`, so never a fresh one.
                locks
                    .delete_many(doc! { "until": { "$lte": now_bson() } })
                    .await
                    .map_err(backend_error)?;
            }
            Ok(removed)
        })
        .await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.timed("list_by_owner", async {
            self.find_records(doc! { "owner": owner, "expires_at": { "$gt": now_bson() } })
                .await
        })
        .await
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.timed("destroy_by_owner", async {
            self.delete_matching(
                doc! { "owner": owner, "expires_at": { "$gt": now_bson() } },
                |document, now| {
                    is_live(document, now)
                        && matches!(document.get("owner"), Some(Bson::String(o)) if o == owner)
                },
                false,
            )
            .await
        })
        .await
    }

    async fn count(&self) -> Result<u64> {
        self.timed("count", async {
            self.collection
                .count_documents(doc! { "expires_at": { "$gt": now_bson() } })
                .await
                .map_err(backend_error)
        })
        .await
    }
}

/// `Some(version)` when the server is FerretDB (its `buildInfo` has `ferretdbVersion`).
async fn server_is_ferretdb(database: &Database) -> Result<Option<String>> {
    let info = database
        .run_command(doc! { "buildInfo": 1 })
        .await
        .map_err(backend_error)?;
    Ok(info.get("ferretdbVersion").map(|version| match version {
        Bson::String(text) => text.clone(),
        other => other.to_string(),
    }))
}

/// Creates the indexes of `models` that `collection` doesn't have yet, by name (FerretDB
/// 1.24 drops the connection when asked to create existing indexes again).
async fn create_missing(
    collection: &Collection<Document>,
    models: Vec<IndexModel>,
    native: bool,
) -> Result<()> {
    let existing = match collection.list_index_names().await {
        Ok(names) => names,
        Err(err) if is_namespace_missing(&err) => Vec::new(),
        Err(err) => return Err(backend_error(err)),
    };
    let missing: Vec<IndexModel> = models
        .into_iter()
        .filter(|model| {
            let name = model.options.as_ref().and_then(|o| o.name.as_deref());
            !name.is_some_and(|name| existing.iter().any(|e| e == name))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    collection
        .create_indexes(missing)
        .await
        .map(drop)
        .map_err(|err| index_error(err, native))
}

fn is_namespace_missing(err: &mongodb::error::Error) -> bool {
    matches!(err.kind.as_ref(), ErrorKind::Command(command) if command.code == 26)
}

/// Now, by the application's clock (FerretDB 1.x has no `$$NOW`), as a BSON date.
fn now_bson() -> DateTime {
    DateTime::from_millis(unix_millis(session_core::now()))
}

/// The filter for the live document under `id`. The id is only ever a string value, never a
/// document, so nothing in it can act as a query operator (and [`SessionId`] holds no `$`).
fn live(id: &SessionId, now: DateTime) -> Document {
    doc! { "_id": id.expose(), "expires_at": { "$gt": now } }
}

/// Whether `document`'s `expires_at` is a date after `now` (the live filter, checked here).
fn is_live(document: &Document, now: DateTime) -> bool {
    matches!(document.get("expires_at"), Some(Bson::DateTime(at)) if *at > now)
}

/// Decodes a stored session document (as [`MongoStore`] writes it) into a record, or
/// [`Error::Decode`] naming `id`: for tools that read the
/// collection directly, and the fuzz target.
pub fn decode_document(id: &SessionId, document: Document) -> Result<Record> {
    decode(id, document)
}

/// A stored document as a record, or [`Error::Decode`] naming `id`.
fn decode(id: &SessionId, mut document: Document) -> Result<Record> {
    let bad = |reason: String| Error::decode(id, reason);
    let date = |document: &Document, field: &str| -> Result<Option<i64>> {
        match document.get(field) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::DateTime(at)) => Ok(Some(at.timestamp_millis())),
            Some(other) => Err(bad(format!(
                "field `{field}` is a BSON {:?}, expected a date",
                other.element_type()
            ))),
        }
    };
    let required = |value: Option<i64>, field: &str| {
        value.ok_or_else(|| Error::decode(id, format!("field `{field}` is missing")))
    };
    let integer = |field: &str| -> Result<i64> {
        match document.get(field) {
            Some(Bson::Int32(n)) => Ok(i64::from(*n)),
            Some(Bson::Int64(n)) => Ok(*n),
            None => Err(bad(format!("field `{field}` is missing"))),
            Some(other) => Err(bad(format!(
                "field `{field}` is a BSON {:?}, expected an integer",
                other.element_type()
            ))),
        }
    };
    let format = u32::try_from(integer("format")?)
        .map_err(|_| bad("field `format` is negative or too large".into()))?;
    let version = u64::try_from(integer("version")?)
        .map_err(|_| bad("field `version` is negative".into()))?;
    let expires_at = required(date(&document, "expires_at")?, "expires_at")?;
    let created_at = required(date(&document, "created_at")?, "created_at")?;
    let deadline = date(&document, "deadline")?;
    let owner = match document.remove("owner") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(owner)) => Some(Cow::Owned(owner)),
        Some(other) => {
            return Err(bad(format!(
                "field `owner` is a BSON {:?}, expected a string",
                other.element_type()
            )));
        }
    };
    let data = match document.get("data") {
        Some(Bson::Document(data)) => convert::data_from_bson(data).map_err(bad)?,
        None => return Err(bad("field `data` is missing".into())),
        Some(other) => {
            return Err(bad(format!(
                "field `data` is a BSON {:?}, expected an embedded document",
                other.element_type()
            )));
        }
    };
    StoredRecord {
        format,
        version,
        created_at,
        expires_at,
        deadline,
        owner,
        data: Cow::Owned(data),
    }
    .into_record(id)
}

fn check_database_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 63 || name.contains(['/', '\\', '.', ' ', '"', '$', '\0']) {
        return Err(Error::Config(format!(
            "{name:?} is not a valid MongoDB database name (1 to 63 characters, none of \
             /\\. \"$ or NUL)"
        )));
    }
    Ok(())
}

fn check_collection_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['$', '\0']) || name.starts_with("system.") {
        return Err(Error::Config(format!(
            "{name:?} is not a valid collection name for sessions (non-empty, no `$` or NUL, \
             not in the `system.` namespace)"
        )));
    }
    Ok(())
}

/// Server error codes after which the same call may succeed: failovers, shutdowns,
/// interruptions, network-level errors and exceeded time limits.
const RETRYABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Error labels the driver and server use for errors worth retrying.
const RETRYABLE_LABELS: &[&str] = &[
    "RetryableWriteError",
    "TransientTransactionError",
    "RetryableError",
    "SystemOverloadedError",
];

/// Whether a driver error may go away by itself.
fn is_transient(err: &mongodb::error::Error) -> bool {
    if RETRYABLE_LABELS
        .iter()
        .any(|label| err.contains_label(label))
    {
        return true;
    }
    match err.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::DnsResolve { .. } => true,
        ErrorKind::Command(command) => RETRYABLE_CODES.contains(&command.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => {
            RETRYABLE_CODES.contains(&concern.code)
        }
        _ => false,
    }
}

/// A driver error as a store error, retryable or not, with the driver error as its source.
fn backend_error(err: mongodb::error::Error) -> Error {
    if is_transient(&err) {
        Error::transient(BACKEND, err)
    } else {
        Error::permanent(BACKEND, err)
    }
}

fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    matches!(
        err.kind.as_ref(),
        ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == 11000
    )
}

/// Errors from creating indexes, with advice for the two a configuration causes.
fn index_error(err: mongodb::error::Error, native: bool) -> Error {
    let code = match err.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        _ => None,
    };
    match code {
        // NotImplemented, InvalidIndexSpecificationOption, CannotCreateIndex
        Some(238 | 197 | 67) if native => Error::Config(format!(
            "the server refused the TTL index ExpiryMode::Native needs ({err}); on servers \
             without TTL indexes (FerretDB 1.x) use ExpiryMode::Interval(..)"
        )),
        // IndexOptionsConflict, IndexKeySpecsConflict, IndexAlreadyExists
        Some(85 | 86 | 68) => Error::Config(format!(
            "an index on `expires_at` of another expiry mode exists ({err}); after changing \
             the mode, drop the index `{}` first",
            if native { EXPIRES_INDEX } else { TTL_INDEX }
        )),
        _ => backend_error(err),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn sample() -> Record {
        let mut record = Record::new(session_core::now() + time::Duration::hours(1));
        record
            .insert("user", json!({"id": 7, "$where": "x", "a.b": [1.5, null]}))
            .unwrap();
        record.set_owner(Some("user-7".into()));
        record.set_deadline(Some(session_core::now() + time::Duration::hours(2)));
        record
    }

    async fn store() -> MongoStore {
        // The driver connects lazily; nothing reaches a server in these tests.
        let options = ClientOptions::parse("mongodb://127.0.0.1:9").await.unwrap();
        let client = Client::with_options(options).unwrap();
        MongoStore {
            collection: client.database("test").collection("sessions"),
            locks: None,
            queues: Arc::default(),
            options: StoreOptions::default(),
            expiry: ExpiryMode::Disabled,
            pruner: None,
        }
    }

    #[tokio::test]
    async fn documents_round_trip_to_the_next_version() {
        let store = store().await;
        let record = sample();
        let document = store.encode(&record).unwrap();
        assert_eq!(document.get_str("_id").unwrap(), record.id().expose());
        assert_eq!(document.get_i64("version").unwrap(), 1);
        assert_eq!(document.get_i32("format").unwrap(), 1);
        assert!(document.get_document("data").unwrap().contains_key("user"));
        let mut expected = record.clone();
        expected.set_version(1);
        assert_eq!(decode(record.id(), document).unwrap(), expected);
    }

    #[tokio::test]
    async fn huge_integers_and_big_payloads_fail_before_the_server() {
        let mut store = store().await;
        let mut record = sample();
        record.insert("big", u64::MAX).unwrap();
        let err = store.encode(&record).unwrap_err();
        assert!(
            matches!(&err, Error::Encode { reason, .. } if reason.contains("data.big")),
            "{err}"
        );
        record.remove("big");
        store.options.max_payload_bytes = 100;
        assert!(matches!(
            store.encode(&record),
            Err(Error::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn wrong_shapes_are_decode_errors_naming_the_id() {
        let id = SessionId::generate();
        let now = now_bson();
        let good = doc! {
            "_id": id.expose(), "data": {}, "expires_at": now, "created_at": now,
            "version": 1_i64, "format": 1,
        };
        assert!(decode(&id, good.clone()).is_ok());
        for (field, value) in [
            ("data", Bson::String("garbage".into())),
            ("format", Bson::Int32(99)),
            ("expires_at", Bson::String("tomorrow".into())),
            ("version", Bson::Int64(-1)),
            ("owner", Bson::Int32(3)),
            ("deadline", Bson::Boolean(true)),
        ] {
            let mut bad = good.clone();
            bad.insert(field, value);
            let err = decode(&id, bad).unwrap_err();
            assert!(matches!(&err, Error::Decode { .. }), "{field}: {err}");
            assert_eq!(err.session_id(), Some(&id));
        }
        let mut missing = good;
        missing.remove("created_at");
        assert!(decode(&id, missing).is_err());
    }

    #[test]
    fn filters_hold_the_id_as_a_plain_string() {
        let id = SessionId::generate();
        let filter = live(&id, now_bson());
        assert_eq!(
            filter.get("_id"),
            Some(&Bson::String(id.expose().to_owned()))
        );
        assert!(SessionId::parse("{\"$ne\":null}aaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(SessionId::parse("$where_aaaaaaaaaaaaaaaaaaaaaa").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_database_name("sessions").is_ok());
        assert!(check_database_name("").is_err());
        assert!(check_database_name("a.b").is_err());
        assert!(check_collection_name("sessions.v2").is_ok());
        assert!(check_collection_name("$cmd").is_err());
        assert!(check_collection_name("system.users").is_err());
    }
}

//! [`MongoStore`]: its construction, indexes, reads, and the `SessionStore` methods, which
//! the writes of `writes.rs` and the locks of `locks.rs` serve.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt as _;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use session_core::{
    Error, OwnerPath, Pruner, Record, Rename, Result, SessionId, SessionStore, StoreOptions,
    async_trait, codec, rename_onto_itself, unix_millis,
};
use time::OffsetDateTime;

use crate::config::{
    DEFAULT_COLLECTION, DEFAULT_DATABASE, EXPIRES_INDEX, ExpiryMode, LOCK_INDEX, MongoConfig,
    OWNER_INDEX, TTL_INDEX, WriteGuard, check_collection_name, check_database_name,
};
use crate::document::{self, decode, is_live, now_bson};
use crate::errors::{BACKEND, backend_error, index_error, is_namespace_missing};
use crate::express::{self, CONNECT_MONGO_TTL_INDEX, Format};

/// A session store on one MongoDB collection. Cheap to clone; clones share the
/// connection pool and the pruning task.
#[derive(Clone)]
pub struct MongoStore {
    pub(crate) collection: Collection<Document>,
    /// The lease locks of [`WriteGuard::Locks`]; `None` with server-side atomic writes.
    pub(crate) locks: Option<Collection<Document>>,
    /// In-process queues in front of the lease locks, so this process's writers to one
    /// session take turns in order instead of polling the server against each other.
    pub(crate) queues: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    pub(crate) options: StoreOptions,
    expiry: ExpiryMode,
    /// What a session document holds.
    pub(crate) format: Format,
    /// Where the owner sits in the data Node writes (express-session format only).
    pub(crate) owner_path: Option<OwnerPath>,
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
            .field("format", &self.format)
            .field("owner_path", &self.owner_path)
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
    ///
    /// The driver's retryable writes are left as the URL says (on by default): the driver
    /// retries a write only on a replica set or sharded cluster, where the server recognises
    /// the second copy by its transaction number and applies the write once; on a standalone
    /// server or FerretDB it sends nothing twice, and a write whose reply is lost returns a
    /// retryable error (checked by `integration-tests/tests/lost_replies.rs`).
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
        let owner_path = config
            .owner_path
            .as_deref()
            .map(OwnerPath::parse)
            .transpose()?;
        if owner_path.is_some() && config.format == Format::Native {
            return Err(Error::Config(
                "owner_path reads the owner from data another program writes: use it with \
                 the express-session format (the native format stores the owner itself)"
                    .into(),
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
            format: config.format,
            owner_path,
            pruner: None,
        };
        store.ensure_indexes().await?;
        if let ExpiryMode::Interval(every) = store.expiry {
            let pruner = Pruner::spawn(Arc::new(store.clone()), every)?;
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
            if self.format == Format::ExpressSession {
                return self.ensure_express_indexes(native).await;
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
            self.ensure_lock_index().await
        })
        .await
    }

    /// The express-session format's indexes: connect-mongo's TTL index on `expires` in
    /// [`ExpiryMode::Native`] (the same name and keys, so either side may create it), none
    /// in the other modes (a plain index under that name would make a Node app with
    /// `autoRemove: 'native'` fail to create its own); the lock index.
    async fn ensure_express_indexes(&self, native: bool) -> Result<()> {
        if native {
            let ttl = IndexModel::builder()
                .keys(doc! { "expires": 1 })
                .options(
                    IndexOptions::builder()
                        .name(CONNECT_MONGO_TTL_INDEX.to_owned())
                        .expire_after(Duration::ZERO)
                        .build(),
                )
                .build();
            create_missing(&self.collection, vec![ttl], true).await?;
        }
        self.ensure_lock_index().await
    }

    /// The unique index of the lock collection, when the store locks.
    async fn ensure_lock_index(&self) -> Result<()> {
        {
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
        }
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

    pub(crate) async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.options.within_timeout(BACKEND, operation, call).await
    }

    /// The live document under `id` (only the `projection`'s fields, when given), looked up
    /// by `_id` alone with the expiry checked here: `{_id}` is the one filter every
    /// MongoDB-protocol server answers from the key, while FerretDB 1.x scans the whole
    /// collection for `{_id, expires_at: {$gt}}` (measured: 0.1 s against 1 s at 20,000
    /// sessions).
    pub(crate) async fn find_live(
        &self,
        id: &SessionId,
        projection: Option<Document>,
    ) -> Result<Option<Document>> {
        let now = now_bson();
        let mut find = self.collection.find_one(doc! { "_id": id.expose() });
        if let Some(mut projection) = projection {
            projection.insert(self.expires_field(), 1);
            find = find.projection(projection);
        }
        let found = find.await.map_err(backend_error)?;
        let live = self.is_live_fn();
        Ok(found.filter(|document| live(document, now)))
    }

    /// The field holding a document's expiry in the store's format.
    fn expires_field(&self) -> &'static str {
        match self.format {
            Format::Native => "expires_at",
            Format::ExpressSession => "expires",
        }
    }

    /// Whether a document of the store's format is live at a time (its expiry field).
    pub(crate) fn is_live_fn(&self) -> fn(&Document, mongodb::bson::DateTime) -> bool {
        match self.format {
            Format::Native => is_live,
            Format::ExpressSession => express::is_live,
        }
    }

    /// The filter of the documents expired at `now`, in the store's format.
    pub(crate) fn expired_filter(&self, now: mongodb::bson::DateTime) -> Document {
        match self.format {
            Format::Native => doc! { "expires_at": { "$lte": now } },
            Format::ExpressSession => express::expired_filter(now),
        }
    }

    /// The format the store reads and writes.
    pub fn format(&self) -> Format {
        self.format
    }

    pub(crate) fn decode(&self, id: &SessionId, document: Document) -> Result<Option<Record>> {
        self.options.on_corrupt(decode(id, document))
    }

    /// What a write that found a corrupt record returns: the decode error, or the caller's
    /// "as if missing" answer under [`CorruptPolicy::TreatAsMissing`](session_core::CorruptPolicy).
    pub(crate) fn corrupt<T>(&self, id: &SessionId, as_missing: T) -> Result<T> {
        let err = Error::decode(id, "the stored document is not a session record");
        self.options.on_corrupt(Err(err)).map(|_| as_missing)
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
}

#[async_trait]
impl SessionStore for MongoStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        if self.format == Format::ExpressSession {
            return self.timed("get", self.express_get(id)).await;
        }
        self.timed("get", async {
            match self.find_live(id, None).await? {
                Some(document) => self.decode(id, document),
                None => Ok(None),
            }
        })
        .await
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        if self.format == Format::ExpressSession {
            return self.express_insert(record).await;
        }
        let version = codec::check_writable(record)?;
        let document = document::encode(record, version, &self.options)?;
        let inserted = self
            .timed("insert", self.insert_document(record.id(), document, true))
            .await?;
        if inserted {
            record.set_version(version);
        }
        Ok(inserted)
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        if self.format == Format::ExpressSession {
            let (stored, seal) = self.timed("set", self.express_set(record)).await?;
            record.set_version(stored);
            session_core::express::object::set_written_seal(record, seal);
            return Ok(());
        }
        let version = codec::check_writable(record)?;
        let document = document::encode(record, version, &self.options)?;
        let stored = self
            .timed("set", self.set_document(record, document))
            .await?;
        record.set_version(stored);
        Ok(())
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let id = record.id().clone();
        let (version, found) = if self.format == Format::ExpressSession {
            let version = Record::version_after(&id, record.version())?;
            let (found, seal) = self.timed("update", self.express_update(record)).await?;
            if matches!(found, Found::Written) {
                session_core::express::object::set_written_seal(record, seal);
            }
            (version, found)
        } else {
            let version = codec::check_writable(record)?;
            let document = document::encode(record, version, &self.options)?;
            let expected = record.version() as i64;
            let found = self
                .timed("update", self.update_document(&id, expected, document))
                .await?;
            (version, found)
        };
        let conflict = Error::Conflict { id: id.clone() };
        match found {
            Found::Written => {
                record.set_version(version);
                Ok(())
            }
            Found::Missing => Err(conflict),
            Found::Corrupt => self.corrupt(&id, ()).and(Err(conflict)),
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        let wanted = mongodb::bson::DateTime::from_millis(unix_millis(expires_at));
        let touched = if self.format == Format::ExpressSession {
            self.timed("touch", self.express_touch(id, wanted)).await?
        } else {
            self.timed("touch", self.touch_document(id, wanted)).await?
        };
        match touched {
            Found::Written => Ok(true),
            Found::Missing => Ok(false),
            Found::Corrupt => self.corrupt(id, false),
        }
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        // No lock, even on FerretDB: every write under a lock either filters on what it read
        // (update: the version) or only matches an existing document (touch), or is a `set`,
        // which may recreate the session anyway; so a logout never waits for a lock.
        self.timed("destroy", async {
            self.collection
                .delete_one(doc! { "_id": id.expose() })
                .await
                .map_err(backend_error)
        })
        .await?;
        Ok(())
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        if from == to {
            return rename_onto_itself(self, from).await;
        }
        self.timed("rename", self.rename_document(from, to)).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.timed("delete_expired", self.purge()).await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        if self.format == Format::ExpressSession {
            return self.timed("list_by_owner", self.express_list(owner)).await;
        }
        self.timed("list_by_owner", async {
            self.find_records(doc! { "owner": owner, "expires_at": { "$gt": now_bson() } })
                .await
        })
        .await
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.timed("destroy_by_owner", self.revoke(owner)).await
    }

    async fn count(&self) -> Result<u64> {
        if self.format == Format::ExpressSession {
            return self.timed("count", self.express_count()).await;
        }
        self.timed("count", async {
            self.collection
                .count_documents(doc! { "expires_at": { "$gt": now_bson() } })
                .await
                .map_err(backend_error)
        })
        .await
    }

    fn timeout(&self) -> Duration {
        self.options.timeout
    }
}

/// What a conditional write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// It wrote.
    Written,
    /// No live session (for `update`: or another version).
    Missing,
    /// A document that doesn't decode: left as it is.
    Corrupt,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::document::{encode, live_and_decodable};
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

    #[test]
    fn documents_round_trip_to_the_next_version() {
        let record = sample();
        let document = encode(&record, 1, &StoreOptions::default()).unwrap();
        assert_eq!(document.get_str("_id").unwrap(), record.id().expose());
        assert_eq!(document.get_i64("version").unwrap(), 1);
        assert_eq!(document.get_i32("format").unwrap(), 1);
        assert!(document.get_document("data").unwrap().contains_key("user"));
        let mut expected = record.clone();
        expected.set_version(1);
        assert_eq!(decode(record.id(), document).unwrap(), expected);
    }

    #[test]
    fn huge_integers_and_big_payloads_fail_before_the_server() {
        let mut record = sample();
        record.insert("big", u64::MAX).unwrap();
        let err = encode(&record, 1, &StoreOptions::default()).unwrap_err();
        assert!(
            matches!(&err, Error::Encode { reason, .. } if reason.contains("data.big")),
            "{err}"
        );
        record.remove("big");
        record.insert("blob", "x".repeat(100)).unwrap();
        let small = StoreOptions {
            max_payload_bytes: 100,
            ..StoreOptions::default()
        };
        assert!(matches!(
            encode(&record, 1, &small),
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
        assert!(document::looks_decodable(&id, &good));
        let max = Record::MAX_VERSION as i64;
        let beyond = mongodb::bson::DateTime::from_millis(i64::MAX);
        for (field, value) in [
            ("data", Bson::String("garbage".into())),
            ("format", Bson::Int32(99)),
            ("format", Bson::Int64(0)),
            ("format", Bson::Double(1.0)),
            ("expires_at", Bson::String("tomorrow".into())),
            ("expires_at", Bson::DateTime(beyond)),
            ("created_at", Bson::Int64(0)),
            ("created_at", Bson::DateTime(beyond)),
            ("version", Bson::Int64(-1)),
            ("version", Bson::Int64(max + 1)),
            ("version", Bson::Double(1.0)),
            ("owner", Bson::Int32(3)),
            ("owner", Bson::Document(doc! {})),
            ("deadline", Bson::Boolean(true)),
            ("deadline", Bson::DateTime(beyond)),
        ] {
            let mut bad = good.clone();
            bad.insert(field, value.clone());
            assert!(
                !document::looks_decodable(&id, &bad),
                "{field}: {value:?} looks decodable"
            );
            let err = decode(&id, bad).unwrap_err();
            assert!(matches!(&err, Error::Decode { .. }), "{field}: {err}");
            assert_eq!(err.session_id(), Some(&id));
        }
        for missing in ["data", "format", "version", "expires_at", "created_at"] {
            let mut bad = good.clone();
            bad.remove(missing);
            assert!(!document::looks_decodable(&id, &bad), "{missing}");
            assert!(decode(&id, bad).is_err(), "{missing}");
        }
        // What the decoder accepts, so does the check.
        for (field, value) in [
            ("version", Bson::Int64(max)),
            ("version", Bson::Int32(0)),
            ("format", Bson::Int64(1)),
            ("owner", Bson::Null),
            ("owner", Bson::String("user-7".into())),
            ("deadline", Bson::Null),
            ("deadline", Bson::DateTime(now)),
        ] {
            let mut fine = good.clone();
            fine.insert(field, value.clone());
            assert!(document::looks_decodable(&id, &fine), "{field}: {value:?}");
            assert!(decode(&id, fine).is_ok(), "{field}: {value:?}");
        }
        // The data's contents too.
        let mut deep = good;
        deep.insert("data", doc! { "bad%escape": 1 });
        assert!(!document::looks_decodable(&id, &deep));
        assert!(decode(&id, deep).is_err());
    }

    #[test]
    fn the_date_range_is_the_decoders() {
        let id = SessionId::generate();
        let filter = live_and_decodable(&id, now_bson());
        let created = filter.get_document("created_at").unwrap();
        let earliest = created.get_datetime("$gte").unwrap().timestamp_millis();
        let latest = created.get_datetime("$lte").unwrap().timestamp_millis();
        assert!(session_core::from_unix_millis(earliest).is_some());
        assert!(session_core::from_unix_millis(earliest - 1).is_none());
        assert!(session_core::from_unix_millis(latest).is_some());
        assert!(session_core::from_unix_millis(latest + 1).is_none());
    }

    #[test]
    fn filters_hold_the_id_as_a_plain_string() {
        let id = SessionId::generate();
        let filter = live_and_decodable(&id, now_bson());
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

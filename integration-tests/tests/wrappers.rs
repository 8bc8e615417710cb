//! The store wrappers over every backend on real servers: the whole conformance suite
//! through `EncryptedStore`, `CachedStore` (the two-tier cache) and `InstrumentedStore`
//! (telemetry); for encryption also raw reads proving no plaintext reaches the server,
//! ciphertexts moved under another id, and key rotation.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use integration_tests::proxy::slow_store;
use integration_tests::{Backend, Skip, in_an_hour, server_url};
use serde_json::json;
use session_core::conformance::{Harness, NotApplicable, Unrun};
use session_core::{Error, HashedIds, Record, SessionId, SessionStore, StoreOptions, async_trait};
use session_encrypted::{EncryptedStore, EncryptionKey};
use session_memory::{CachedStore, MemoryStore};
use session_mongo::mongodb::bson::doc;
use session_mongo::{ExpiryMode, MongoConfig, MongoStore};
use session_postgres::PostgresStore;
use session_postgres::sqlx;
use session_redis::{Client, RedisStore};
use session_telemetry::InstrumentedStore;

/// The suite's key list: the first encrypts, the second is an "old" key that still decrypts.
fn test_keys() -> Vec<EncryptionKey> {
    vec![
        EncryptionKey::from_bytes(&[0x11; 32]).unwrap(),
        EncryptionKey::from_bytes(&[0x22; 32]).unwrap(),
    ]
}

// ---------------------------------------------------------------------------------------
// One harness, generic over how to make a fresh inner store

/// A backend to wrap: how to reach it, make a fresh store, and read what it really holds.
#[async_trait]
trait InnerBackend: Send + Sync + 'static {
    type Store: SessionStore + 'static;

    /// `Err` (from `integration_tests::server_url`) when there is no server.
    async fn available(&self) -> Result<(), Skip>;

    /// A fresh, empty store that sees no other test's sessions.
    async fn fresh(&self, options: StoreOptions) -> Self::Store;

    /// A fresh store whose server answers after `options.timeout` (see
    /// [`Harness::slow_store`]).
    async fn slow(&self, options: StoreOptions) -> Result<Self::Store, Unrun>;

    /// The data stored under `id` as the server holds it (bytes read around the store's
    /// codec where the backend allows), for checking that no plaintext is there.
    async fn raw_data(&self, store: &Self::Store, id: &SessionId) -> String;

    /// Writes, bypassing the store, a live record under `id` that the backend can't decode.
    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId);
}

/// The conformance harness: `EncryptedStore` over `B`'s fresh stores.
struct Encrypted<B>(B);

#[async_trait]
impl<B: InnerBackend> Harness for Encrypted<B> {
    type Store = EncryptedStore<B::Store>;

    async fn available(&self) -> Result<(), Skip> {
        self.0.available().await
    }

    async fn store(&self, options: StoreOptions) -> Self::Store {
        let (inner, limit) = Self::inner_options(options);
        EncryptedStore::new(self.0.fresh(inner).await, test_keys())
            .unwrap()
            .max_payload_bytes(limit)
    }

    /// A record the inner store can't decode, as on that store. (Ciphertexts the wrapper
    /// can't open are checked below: moved, tampered, sealed with a removed key.)
    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        self.0.write_corrupt(store.inner(), id).await;
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
        let (inner, limit) = Self::inner_options(options);
        Ok(EncryptedStore::new(self.0.slow(inner).await?, test_keys())
            .unwrap()
            .max_payload_bytes(limit))
    }
}

impl<B> Encrypted<B> {
    /// The inner store's options (room for the sealed form, about 4/3 of the data) and the
    /// wrapper's own limit on the data.
    fn inner_options(options: StoreOptions) -> (StoreOptions, usize) {
        let limit = options.max_payload_bytes;
        let inner = StoreOptions {
            max_payload_bytes: limit.saturating_mul(2).saturating_add(1024),
            ..options
        };
        (inner, limit)
    }
}

// ---------------------------------------------------------------------------------------
// The four backends

struct Memory;

#[async_trait]
impl InnerBackend for Memory {
    type Store = MemoryStore;

    async fn available(&self) -> Result<(), Skip> {
        Ok(())
    }

    async fn fresh(&self, options: StoreOptions) -> MemoryStore {
        MemoryStore::builder().options(options).build()
    }

    async fn slow(&self, _: StoreOptions) -> Result<MemoryStore, Unrun> {
        Err(Unrun::NotApplicable(NotApplicable(
            "an in-process store has no server to be slow".into(),
        )))
    }

    async fn raw_data(&self, store: &MemoryStore, id: &SessionId) -> String {
        let record = store.get(id).await.unwrap().unwrap();
        serde_json::to_string(record.data()).unwrap()
    }

    async fn write_corrupt(&self, store: &MemoryStore, id: &SessionId) {
        store.write_raw(id, "[1, 2]", in_an_hour()).await;
    }
}

struct Redis;

#[async_trait]
impl InnerBackend for Redis {
    type Store = RedisStore;

    async fn available(&self) -> Result<(), Skip> {
        server_url(Backend::Redis).map(drop)
    }

    async fn fresh(&self, options: StoreOptions) -> RedisStore {
        let url = server_url(Backend::Redis).unwrap();
        redis_at(&url, options).await
    }

    async fn slow(&self, options: StoreOptions) -> Result<RedisStore, Unrun> {
        let url = server_url(Backend::Redis).map_err(Unrun::Skip)?;
        Ok(slow_store(&url, options, |url, options| async move {
            redis_at(&url, options).await
        })
        .await)
    }

    /// A plain `GET` of the session's key with the redis crate, around the store.
    async fn raw_data(&self, store: &RedisStore, id: &SessionId) -> String {
        let url = server_url(Backend::Redis).unwrap();
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let value: Vec<u8> = redis::cmd("GET")
            .arg(store.key_for(id))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!value.is_empty(), "nothing stored under the session's key");
        String::from_utf8_lossy(&value).into_owned()
    }

    async fn write_corrupt(&self, store: &RedisStore, id: &SessionId) {
        store
            .raw_set(&store.key_for(id), b"\xff not json")
            .await
            .unwrap();
    }
}

async fn redis_at(url: &str, options: StoreOptions) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .client(Client::Fred)
        .prefix(format!(
            "test:enc:{}:sess:",
            &SessionId::generate().expose()[..16]
        ))
        .options(options)
        .connect()
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"))
}

struct Postgres;

/// The schema of this binary's tables; dropped once per run.
const PG_SCHEMA: &str = "encrypted_tests";

#[async_trait]
impl InnerBackend for Postgres {
    type Store = PostgresStore;

    async fn available(&self) -> Result<(), Skip> {
        server_url(Backend::Postgres).map(drop)
    }

    async fn fresh(&self, options: StoreOptions) -> PostgresStore {
        let url = server_url(Backend::Postgres).unwrap();
        postgres_at(&url, options).await
    }

    async fn slow(&self, options: StoreOptions) -> Result<PostgresStore, Unrun> {
        let url = server_url(Backend::Postgres).map_err(Unrun::Skip)?;
        Ok(slow_store(&url, options, |url, options| async move {
            let store = postgres_at(&url, options).await;
            store.count().await.unwrap();
            store
        })
        .await)
    }

    async fn raw_data(&self, store: &PostgresStore, id: &SessionId) -> String {
        let sql = format!("SELECT data::text FROM {} WHERE id = $1", store.table());
        sqlx::query_scalar(&sql)
            .bind(id.expose())
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    async fn write_corrupt(&self, store: &PostgresStore, id: &SessionId) {
        let sql = format!(
            "INSERT INTO {} (id, data, expires_at, created_at, version, format) \
             VALUES ($1, '[1,2]'::json, now() + interval '1 hour', now(), 1, 1)",
            store.table()
        );
        sqlx::query(&sql)
            .bind(id.expose())
            .execute(store.pool())
            .await
            .unwrap();
    }
}

async fn postgres_at(url: &str, options: StoreOptions) -> PostgresStore {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    CLEANED
        .get_or_init(|| async {
            let pool = session_postgres::PgPool::connect(url).await.unwrap();
            let drop = format!("DROP SCHEMA IF EXISTS \"{PG_SCHEMA}\" CASCADE");
            sqlx::query(&drop).execute(&pool).await.unwrap();
            pool.close().await;
        })
        .await;
    let table = format!(
        "e{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    // The pool logs in (SCRAM) before the store exists, with 10 s to do it, and the table is
    // made by a store with the default timeout: under load a first login outlasted both a
    // case's short call timeout at `connect` (400 ms, calls_end_within_the_timeout) and, once,
    // the pool's default acquire timeout. The store under test then works on a warm pool,
    // every call bounded by its own timeout.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .unwrap();
    let builder = |options| {
        PostgresStore::builder()
            .schema(PG_SCHEMA)
            .table(table.clone())
            .options(options)
    };
    let setup = builder(StoreOptions::default())
        .build(pool.clone())
        .unwrap();
    setup.migrate().await.unwrap();
    builder(options).build(pool).unwrap()
}

struct Mongo;

#[async_trait]
impl InnerBackend for Mongo {
    type Store = MongoStore;

    async fn available(&self) -> Result<(), Skip> {
        server_url(Backend::Mongo).map(drop)
    }

    async fn fresh(&self, options: StoreOptions) -> MongoStore {
        let url = server_url(Backend::Mongo).unwrap();
        mongo_at(&url, integration_tests::mongo_suite_options(options)).await
    }

    async fn slow(&self, options: StoreOptions) -> Result<MongoStore, Unrun> {
        let url = server_url(Backend::Mongo).map_err(Unrun::Skip)?;
        Ok(slow_store(&url, options, |url, options| async move {
            mongo_at(&url, options).await
        })
        .await)
    }

    async fn raw_data(&self, store: &MongoStore, id: &SessionId) -> String {
        let document = store
            .collection()
            .find_one(doc! { "_id": id.expose() })
            .await
            .unwrap()
            .expect("a stored document");
        format!("{document}")
    }

    async fn write_corrupt(&self, store: &MongoStore, id: &SessionId) {
        let later = session_mongo::mongodb::bson::DateTime::from_millis(session_core::unix_millis(
            in_an_hour(),
        ));
        let document = doc! {
            "_id": id.expose(), "data": "garbage", "expires_at": later, "created_at": later,
            "version": 1_i64, "format": 1,
        };
        store.collection().insert_one(document).await.unwrap();
    }
}

/// Interval expiry: works on every MongoDB-protocol server (FerretDB has no TTL index).
async fn mongo_at(url: &str, options: StoreOptions) -> MongoStore {
    let config = MongoConfig {
        database: Some(
            integration_tests::mongo_test_database(url, "session_encrypted_tests")
                .await
                .into(),
        ),
        collection: Some(format!("sessions_{}", SessionId::generate().expose())),
        expiry: ExpiryMode::Interval(StdDuration::from_secs(30)),
        options,
        ..MongoConfig::default()
    };
    MongoStore::connect(url, config).await.unwrap()
}

/// The two-tier cache in front of one backend.
struct Cached<B>(B);

#[async_trait]
impl<B: InnerBackend> Harness for Cached<B> {
    type Store = CachedStore<B::Store>;

    async fn available(&self) -> Result<(), Skip> {
        self.0.available().await
    }

    async fn store(&self, options: StoreOptions) -> Self::Store {
        CachedStore::builder(self.0.fresh(options).await).build()
    }

    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        self.0.write_corrupt(store.inner(), id).await;
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
        Ok(CachedStore::builder(self.0.slow(options).await?).build())
    }
}

/// The cache in front of session-redis, evicting on Redis client tracking
/// (`InvalidationFeed`) with a long time-to-live, so only the feed keeps it fresh.
struct TrackedCached;

impl TrackedCached {
    /// The cache over `redis`, its feed from `tracked` (the same server and prefix).
    async fn wrap(redis: RedisStore, tracked: &RedisStore) -> CachedStore<RedisStore> {
        use session_core::{InvalidationFeed, TrackOptions};
        let feed = tracked
            .watch_invalidations(TrackOptions::default())
            .await
            .unwrap();
        CachedStore::builder(redis)
            .staleness(StdDuration::from_secs(60))
            .invalidations(feed)
            .build()
    }
}

#[async_trait]
impl Harness for TrackedCached {
    type Store = CachedStore<RedisStore>;

    async fn available(&self) -> Result<(), Skip> {
        Redis.available().await
    }

    async fn store(&self, options: StoreOptions) -> Self::Store {
        let redis = Redis.fresh(options).await;
        let tracked = redis.clone();
        Self::wrap(redis, &tracked).await
    }

    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        Redis.write_corrupt(store.inner(), id).await;
        Ok(())
    }

    /// The store slowed down behind its proxy; the feed on a direct connection (a feed
    /// through the slowed proxy could not even start within the case's short timeout).
    async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
        let slow = Redis.slow(options).await?;
        let url = server_url(Backend::Redis).map_err(Unrun::Skip)?;
        let tracked = RedisStore::builder()
            .url(&url)
            .prefix(slow.prefix())
            .connect()
            .await
            .unwrap();
        Ok(Self::wrap(slow, &tracked).await)
    }
}

/// The telemetry wrapper in front of one backend, with a subscriber that never reads (so
/// every event is built and sent).
struct Instrumented<B>(B);

impl<B> Instrumented<B> {
    fn wrap<S: SessionStore>(inner: S) -> InstrumentedStore<S> {
        let store = InstrumentedStore::new(inner);
        std::mem::forget(store.subscribe());
        store
    }
}

#[async_trait]
impl<B: InnerBackend> Harness for Instrumented<B> {
    type Store = InstrumentedStore<B::Store>;

    async fn available(&self) -> Result<(), Skip> {
        self.0.available().await
    }

    async fn store(&self, options: StoreOptions) -> Self::Store {
        Self::wrap(self.0.fresh(options).await)
    }

    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        self.0.write_corrupt(store.inner(), id).await;
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
        Ok(Self::wrap(self.0.slow(options).await?))
    }
}

// ---------------------------------------------------------------------------------------
// The suite, with its waiting cases overlapped

/// The whole conformance suite through `$wrapper`, once per backend.
macro_rules! suite_on_every_backend {
    ($wrapper:ident) => {
        mod memory {
            use super::*;
            #[test]
            fn conformance() {
                session_core::conformance::run_suite(|| $wrapper(Memory));
            }
        }

        mod redis_fred {
            use super::*;
            #[test]
            fn conformance() {
                session_core::conformance::run_suite(|| $wrapper(Redis));
            }
        }

        mod postgres {
            use super::*;
            #[test]
            fn conformance() {
                session_core::conformance::run_suite(|| $wrapper(Postgres));
            }
        }

        mod mongo {
            use super::*;
            #[test]
            fn conformance() {
                session_core::conformance::run_suite(|| $wrapper(Mongo));
            }
        }
    };
}

/// The whole suite through the two-tier cache, over every backend.
mod cached {
    use super::*;
    suite_on_every_backend!(Cached);

    /// Over Redis with the client-tracking feed and a 60 s time-to-live.
    mod redis_tracked {
        use super::*;
        #[test]
        fn conformance() {
            session_core::conformance::run_suite(|| TrackedCached);
        }
    }
}

suite_on_every_backend!(Encrypted);

/// The whole suite through the telemetry wrapper, over every backend.
mod instrumented {
    use super::*;
    suite_on_every_backend!(Instrumented);
}

/// `EncryptedStore` over `HashedIds` over a backend: the data sealed for the caller's id,
/// stored under its hash (listings, which only know the hash, must still open it).
struct EncryptedHashed<B>(B);

#[async_trait]
impl<B: InnerBackend> Harness for EncryptedHashed<B> {
    type Store = EncryptedStore<HashedIds<B::Store>>;

    async fn available(&self) -> Result<(), Skip> {
        self.0.available().await
    }

    async fn store(&self, options: StoreOptions) -> Self::Store {
        let (inner, limit) = Encrypted::<B>::inner_options(options);
        EncryptedStore::new(HashedIds::new(self.0.fresh(inner).await), test_keys())
            .unwrap()
            .max_payload_bytes(limit)
    }

    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        self.0
            .write_corrupt(store.inner().inner(), &id.hashed())
            .await;
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
        let (inner, limit) = Encrypted::<B>::inner_options(options);
        Ok(
            EncryptedStore::new(HashedIds::new(self.0.slow(inner).await?), test_keys())
                .unwrap()
                .max_payload_bytes(limit),
        )
    }

    fn listed_id(&self, id: &SessionId) -> SessionId {
        id.hashed()
    }
}

/// `HashedIds` over `EncryptedStore` over a backend: the other order.
struct HashedEncrypted<B>(B);

#[async_trait]
impl<B: InnerBackend> Harness for HashedEncrypted<B> {
    type Store = HashedIds<EncryptedStore<B::Store>>;

    async fn available(&self) -> Result<(), Skip> {
        self.0.available().await
    }

    async fn store(&self, options: StoreOptions) -> Self::Store {
        let (inner, limit) = Encrypted::<B>::inner_options(options);
        HashedIds::new(
            EncryptedStore::new(self.0.fresh(inner).await, test_keys())
                .unwrap()
                .max_payload_bytes(limit),
        )
    }

    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        self.0
            .write_corrupt(store.inner().inner(), &id.hashed())
            .await;
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
        let (inner, limit) = Encrypted::<B>::inner_options(options);
        Ok(HashedIds::new(
            EncryptedStore::new(self.0.slow(inner).await?, test_keys())
                .unwrap()
                .max_payload_bytes(limit),
        ))
    }

    fn listed_id(&self, id: &SessionId) -> SessionId {
        id.hashed()
    }
}

/// Both orders of `EncryptedStore` and `HashedIds`, over the memory store and Redis.
mod encrypted_and_hashed {
    use super::*;

    mod encrypted_over_hashed_memory {
        use super::*;
        #[test]
        fn conformance() {
            session_core::conformance::run_suite(|| EncryptedHashed(Memory));
        }
    }

    mod encrypted_over_hashed_redis {
        use super::*;
        #[test]
        fn conformance() {
            session_core::conformance::run_suite(|| EncryptedHashed(Redis));
        }
    }

    mod hashed_over_encrypted_memory {
        use super::*;
        #[test]
        fn conformance() {
            session_core::conformance::run_suite(|| HashedEncrypted(Memory));
        }
    }

    mod hashed_over_encrypted_redis {
        use super::*;
        #[test]
        fn conformance() {
            session_core::conformance::run_suite(|| HashedEncrypted(Redis));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Beyond the suite, on each backend whose server is there

/// Whether `backend` can run; a skip is reported, and fails under CI.
async fn usable<B: InnerBackend>(backend: &B, name: &str) -> bool {
    match backend.available().await {
        Ok(()) => true,
        Err(Skip(reason)) => {
            session_core::conformance::skip(name, &reason);
            false
        }
    }
}

const SECRET: &str = "correct-horse-battery-staple-7f3a9c";

/// The raw stored bytes hold none of the plaintext (neither the value nor the key name),
/// while the same session written without the wrapper does (so the raw read is real).
async fn no_plaintext_at_rest<B: InnerBackend>(backend: B, name: &str) {
    if !usable(&backend, name).await {
        return;
    }
    let inner = backend.fresh(StoreOptions::default()).await;
    let store = EncryptedStore::new(inner, test_keys()).unwrap();
    let mut record = Record::new(in_an_hour());
    record.insert("credit_card_note", SECRET).unwrap();
    record.insert("nested", json!({"deep": [SECRET]})).unwrap();
    record.set_owner(Some("owner-at-rest".into()));
    store.create(&mut record).await.unwrap();

    let raw = backend.raw_data(store.inner(), record.id()).await;
    assert!(!raw.contains(SECRET), "{name}: plaintext at rest: {raw}");
    assert!(
        !raw.contains("credit_card_note"),
        "{name}: a data key at rest: {raw}"
    );
    assert!(raw.contains("v2."), "{name}: no sealed value in {raw}");
    assert_eq!(
        store.get(record.id()).await.unwrap().unwrap(),
        record,
        "{name}: decryption"
    );

    let mut plain = Record::new(in_an_hour());
    plain.insert("credit_card_note", SECRET).unwrap();
    store.inner().create(&mut plain).await.unwrap();
    let raw = backend.raw_data(store.inner(), plain.id()).await;
    assert!(
        raw.contains(SECRET),
        "{name}: the raw read does not see stored data: {raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_at_rest_on_any_backend() {
    no_plaintext_at_rest(Memory, "memory").await;
    no_plaintext_at_rest(Redis, "redis").await;
    no_plaintext_at_rest(Postgres, "postgres").await;
    no_plaintext_at_rest(Mongo, "mongo").await;
}

/// A stored ciphertext copied under another id through the inner store is a decode error
/// naming that id; the original still reads.
async fn moved_ciphertext_is_refused<B: InnerBackend>(backend: B, name: &str) {
    if !usable(&backend, name).await {
        return;
    }
    let store =
        EncryptedStore::new(backend.fresh(StoreOptions::default()).await, test_keys()).unwrap();
    let mut record = Record::new(in_an_hour());
    record.insert("user", "mallory-wants-this").unwrap();
    store.create(&mut record).await.unwrap();

    let mut stolen = store.inner().get(record.id()).await.unwrap().unwrap();
    let other = SessionId::generate();
    stolen.set_id(other.clone());
    stolen.set_version(0);
    assert!(store.inner().insert(&mut stolen).await.unwrap(), "{name}");
    let err = store.get(&other).await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { id, .. } if *id == other),
        "{name}: {err}"
    );
    assert!(store.list_by_owner("nobody").await.unwrap().is_empty());
    assert_eq!(
        store.get(record.id()).await.unwrap().unwrap(),
        record,
        "{name}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_ciphertexts_are_decode_errors_on_any_backend() {
    moved_ciphertext_is_refused(Memory, "memory").await;
    moved_ciphertext_is_refused(Redis, "redis").await;
    moved_ciphertext_is_refused(Postgres, "postgres").await;
    moved_ciphertext_is_refused(Mongo, "mongo").await;
}

/// A record sealed under an old key reads after rotation (`[new, old]`), not with `[new]`.
async fn rotation<B: InnerBackend>(backend: B, name: &str)
where
    B::Store: Clone,
{
    if !usable(&backend, name).await {
        return;
    }
    let old = EncryptionKey::generate();
    let new = EncryptionKey::generate();
    let inner = backend.fresh(StoreOptions::default()).await;
    let before = EncryptedStore::new(inner.clone(), vec![old.clone()]).unwrap();
    let mut record = Record::new(in_an_hour());
    record.insert("user", "rotating").unwrap();
    before.create(&mut record).await.unwrap();

    let rotated = EncryptedStore::new(inner.clone(), vec![new.clone(), old]).unwrap();
    assert_eq!(
        rotated.get(record.id()).await.unwrap().unwrap(),
        record,
        "{name}: an old-key record after rotation"
    );
    let new_only = EncryptedStore::new(inner.clone(), vec![new]).unwrap();
    let err = new_only.get(record.id()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { id, .. } if id == record.id()),
        "{name}: {err}"
    );

    // Rewritten through the rotated store, it moves to the new key.
    let mut back = rotated.get(record.id()).await.unwrap().unwrap();
    back.insert("n", 1).unwrap();
    rotated.update(&mut back).await.unwrap();
    assert_eq!(
        new_only.get(record.id()).await.unwrap().unwrap(),
        back,
        "{name}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_on_any_backend() {
    rotation(Memory, "memory").await;
    rotation(Redis, "redis").await;
    rotation(Postgres, "postgres").await;
    rotation(Mongo, "mongo").await;
}

/// `cycle_id` re-encrypts under the new id and leaves no record under the old one.
async fn cycle_leaves_nothing_behind<B: InnerBackend>(backend: B, name: &str) {
    if !usable(&backend, name).await {
        return;
    }
    let store =
        EncryptedStore::new(backend.fresh(StoreOptions::default()).await, test_keys()).unwrap();
    let mut record = Record::new(in_an_hour());
    record.insert("user", "cycler").unwrap();
    record.set_owner(Some("cycler".into()));
    store.create(&mut record).await.unwrap();
    let new_id = store.cycle_id(record.id()).await.unwrap().unwrap();
    assert!(
        store.inner().get(record.id()).await.unwrap().is_none(),
        "{name}: the old id (or its tombstone) is still stored"
    );
    let moved = store.get(&new_id).await.unwrap().unwrap();
    assert_eq!(moved.data(), record.data(), "{name}");
    assert_eq!(moved.version(), record.version(), "{name}: version kept");
    assert_eq!(store.count().await.unwrap(), 1, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycle_id_leaves_nothing_behind_on_any_backend() {
    cycle_leaves_nothing_behind(Memory, "memory").await;
    cycle_leaves_nothing_behind(Redis, "redis").await;
    cycle_leaves_nothing_behind(Postgres, "postgres").await;
    cycle_leaves_nothing_behind(Mongo, "mongo").await;
}

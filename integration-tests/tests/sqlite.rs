//! session-sqlite on real SQLite files (no server needed): the conformance suite on files,
//! on an in-memory database and through `CachedStore` and `EncryptedStore`; corrupt rows,
//! oversized payloads, bad names, concurrent migrations, exact round trips, races,
//! `EXPLAIN QUERY PLAN` proofs that every lookup uses an index, batched purges, a restart,
//! and a database locked by another connection.
//!
//! Every store gets a file of its own in a directory under the system temp dir, removed
//! when the test ends.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration_tests::in_an_hour;
use serde_json::json;
use session_core::conformance::{Harness, NotApplicable, Skip, Unrun};
use session_core::{
    CorruptPolicy, Error, Record, Rename, SessionId, SessionStore, StoreOptions, async_trait, now,
    unix_millis,
};
use session_encrypted::{EncryptedStore, EncryptionKey};
use session_memory::CachedStore;
use session_sqlite::sqlx::{self, Connection as _, Row as _, SqliteConnection};
use session_sqlite::{SqliteStore, SqliteStoreBuilder};

// ---------------------------------------------------------------------------------------
// Files

/// A directory of its own under the system temp dir, removed (with its databases) when
/// dropped.
struct TempDir {
    path: PathBuf,
    next: AtomicU64,
}

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "session-sqlite-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self {
            path,
            next: AtomicU64::new(0),
        }
    }

    /// The URL of a database file no store in this directory used yet.
    fn fresh_url(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("sqlite://{}", self.path.join(format!("s{n}.db")).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Stores' connections may still be closing: unlinking open files is fine.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A migrated store on `url`.
async fn store_at(
    url: &str,
    options: StoreOptions,
    configure: impl FnOnce(SqliteStoreBuilder) -> SqliteStoreBuilder,
) -> SqliteStore {
    let builder = SqliteStore::builder().options(options);
    let store = configure(builder).connect(url).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// Writes a row by hand: `data` is an SQL expression (a test constant).
async fn raw_row(
    store: &SqliteStore,
    id: &SessionId,
    data: &str,
    expires_at: i64,
    version: i64,
    format: i64,
) {
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, owner, format) \
         VALUES (?1, {data}, ?2, ?3, ?4, 'corrupt-owner', ?5)",
        store.table()
    );
    sqlx::query(&sql)
        .bind(id.expose())
        .bind(expires_at)
        .bind(unix_millis(now()))
        .bind(version)
        .bind(format)
        .execute(store.pool())
        .await
        .unwrap();
}

async fn rows_in(store: &SqliteStore) -> i64 {
    let sql = format!("SELECT count(*) FROM {}", store.table());
    sqlx::query_scalar(&sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn hour_from_now_millis() -> i64 {
    unix_millis(in_an_hour())
}

/// Opens a connection of its own to `url` and takes the database's lock with
/// `BEGIN EXCLUSIVE`, held until the connection is dropped or rolls back.
async fn lock_database(url: &str) -> SqliteConnection {
    let mut holder = SqliteConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

// ---------------------------------------------------------------------------------------
// Harnesses

/// Fresh files in a temp directory of the harness's own, one per store.
struct SqliteHarness {
    dir: TempDir,
    /// Connections holding a slow store's database locked, until the case ends.
    holders: Mutex<Vec<SqliteConnection>>,
}

impl SqliteHarness {
    fn new() -> Self {
        Self {
            dir: TempDir::new(),
            holders: Mutex::new(Vec::new()),
        }
    }

    async fn fresh(&self, options: StoreOptions) -> SqliteStore {
        store_at(&self.dir.fresh_url(), options, |b| b).await
    }

    /// A store whose database another connection holds locked: every call waits for the
    /// lock until its timeout. The table is made by hand in rollback-journal mode, where an
    /// exclusive lock keeps readers out too (`migrate` would switch to WAL, where it
    /// doesn't).
    async fn locked(&self, options: StoreOptions) -> SqliteStore {
        let url = self.dir.fresh_url();
        let store = SqliteStore::builder()
            .options(options)
            .connect(&url)
            .await
            .unwrap();
        sqlx::raw_sql(&store.migration_sql())
            .execute(store.pool())
            .await
            .unwrap();
        store.count().await.unwrap();
        let holder = lock_database(&url).await;
        self.holders.lock().unwrap().push(holder);
        store
    }

    async fn corrupt(store: &SqliteStore, id: &SessionId) {
        // Valid JSON, but not an object: only the decoding can notice.
        raw_row(store, id, "'[1,2]'", hour_from_now_millis(), 1, 1).await;
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    type Store = SqliteStore;

    async fn store(&self, options: StoreOptions) -> SqliteStore {
        self.fresh(options).await
    }

    async fn write_corrupt(&self, store: &SqliteStore, id: &SessionId) -> Result<(), Skip> {
        Self::corrupt(store, id).await;
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<SqliteStore, Unrun> {
        Ok(self.locked(options).await)
    }
}

#[test]
fn conformance() {
    session_core::conformance::run_suite(SqliteHarness::new);
}

/// [`ScanSessions`](session_core::ScanSessions): every live session, whole, page by page.
#[tokio::test]
async fn scan() {
    let harness = SqliteHarness::new();
    let store = harness.store(StoreOptions::default()).await;
    session_core::conformance::check_scan(&store).await;
}

/// A scan counts rows that don't decode, an id that is not UTF-8 among them (SQLite never
/// checks text), and goes on past them in pages of any size: the cursor names such an id's
/// bytes exactly, so no page repeats and the scan ends.
#[tokio::test]
async fn scan_counts_corrupt_rows_and_goes_on() {
    use session_core::{ScanCursor, ScanSessions};

    let harness = SqliteHarness::new();
    let store = harness.store(StoreOptions::default()).await;
    let mut expected = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let mut record = Record::new(in_an_hour());
        store.create(&mut record).await.unwrap();
        expected.insert(record.id().expose().to_owned());
    }
    SqliteHarness::corrupt(&store, &SessionId::generate()).await;
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, format) \
         VALUES (CAST(?1 AS TEXT), '{{}}', ?2, ?2, 1, 1)",
        store.table()
    );
    for id in [&b"\xff\xfe"[..], b"M\xff", b"hex:zz"] {
        sqlx::query(&sql)
            .bind(id)
            .bind(hour_from_now_millis())
            .execute(store.pool())
            .await
            .unwrap();
    }
    for limit in [1, 2, 100] {
        let (mut found, mut corrupt, mut pages) = (Vec::new(), 0, 0);
        let mut cursor = Some(ScanCursor::start());
        while let Some(at) = cursor {
            let at: ScanCursor = at.to_string().parse().unwrap();
            let page = store.scan(&at, limit).await.unwrap();
            found.extend(page.records.iter().map(|r| r.id().expose().to_owned()));
            corrupt += page.corrupt;
            cursor = page.next;
            pages += 1;
            assert!(pages < 100, "pages of {limit}: the scan never ends");
        }
        assert_eq!(
            found.len(),
            expected.len(),
            "pages of {limit}: each session once"
        );
        assert_eq!(
            found.into_iter().collect::<std::collections::BTreeSet<_>>(),
            expected
        );
        assert_eq!(corrupt, 4, "pages of {limit}: the four corrupt rows");
    }
}

/// The whole suite on `sqlite::memory:` databases (one connection each).
mod in_memory {
    use super::*;

    struct MemoryHarness;

    #[async_trait]
    impl Harness for MemoryHarness {
        type Store = SqliteStore;

        async fn store(&self, options: StoreOptions) -> SqliteStore {
            store_at("sqlite::memory:", options, |b| b).await
        }

        async fn write_corrupt(&self, store: &SqliteStore, id: &SessionId) -> Result<(), Skip> {
            SqliteHarness::corrupt(store, id).await;
            Ok(())
        }

        async fn slow_store(&self, _: StoreOptions) -> Result<SqliteStore, Unrun> {
            Err(Unrun::NotApplicable(NotApplicable(
                "an in-memory database is private to its store's one connection: nothing \
                 else can lock it or make it slow"
                    .into(),
            )))
        }
    }

    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| MemoryHarness);
    }
}

/// The whole suite through the two-tier cache over SQLite files.
mod cached {
    use super::*;

    struct Cached(SqliteHarness);

    #[async_trait]
    impl Harness for Cached {
        type Store = CachedStore<SqliteStore>;

        async fn store(&self, options: StoreOptions) -> Self::Store {
            CachedStore::builder(self.0.fresh(options).await).build()
        }

        async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
            SqliteHarness::corrupt(store.inner(), id).await;
            Ok(())
        }

        async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
            Ok(CachedStore::builder(self.0.locked(options).await).build())
        }
    }

    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| Cached(SqliteHarness::new()));
    }
}

/// The whole suite through `EncryptedStore` over SQLite files.
mod encrypted {
    use super::*;

    struct Encrypted(SqliteHarness);

    /// The suite's key list: the first encrypts, the second is an "old" key.
    fn test_keys() -> Vec<EncryptionKey> {
        vec![
            EncryptionKey::from_bytes(&[0x11; 32]).unwrap(),
            EncryptionKey::from_bytes(&[0x22; 32]).unwrap(),
        ]
    }

    /// The inner store's options (room for the sealed form) and the wrapper's own limit.
    fn inner_options(options: StoreOptions) -> (StoreOptions, usize) {
        let limit = options.max_payload_bytes;
        let inner = StoreOptions {
            max_payload_bytes: limit.saturating_mul(2).saturating_add(1024),
            ..options
        };
        (inner, limit)
    }

    #[async_trait]
    impl Harness for Encrypted {
        type Store = EncryptedStore<SqliteStore>;

        async fn store(&self, options: StoreOptions) -> Self::Store {
            let (inner, limit) = inner_options(options);
            EncryptedStore::new(self.0.fresh(inner).await, test_keys())
                .unwrap()
                .max_payload_bytes(limit)
        }

        async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
            SqliteHarness::corrupt(store.inner(), id).await;
            Ok(())
        }

        async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
            let (inner, limit) = inner_options(options);
            Ok(EncryptedStore::new(self.0.locked(inner).await, test_keys())
                .unwrap()
                .max_payload_bytes(limit))
        }
    }

    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| Encrypted(SqliteHarness::new()));
    }
}

// ---------------------------------------------------------------------------------------
// Schema, names, migration

#[tokio::test]
async fn bad_names_and_urls_are_config_errors() {
    let dir = TempDir::new();
    let pool = session_sqlite::SqlitePool::connect_lazy(&dir.fresh_url()).unwrap();
    for table in [
        "Sessions",
        "sessions; drop table users",
        "1sessions",
        "",
        "a\"b",
        "main.sessions",
        "sqlite_master",
        "sqlite_sessions",
        &"x".repeat(64),
    ] {
        let built = SqliteStore::builder().table(table).build(pool.clone());
        assert!(
            matches!(built, Err(Error::Config(_))),
            "{table:?} was accepted"
        );
    }
    for url in [
        "not a url",
        "postgres://localhost/db",
        "sqlite://s.db?mode=nonsense",
    ] {
        let lazy = SqliteStore::builder().connect_lazy(url);
        assert!(matches!(lazy, Err(Error::Config(_))), "{url}: {lazy:?}");
    }
    // A directory that doesn't exist can't hold the file: a permanent error, at once.
    let missing = format!("sqlite://{}/no/such/dir/s.db", dir.path.display());
    let err = SqliteStore::builder().connect(&missing).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let ok = SqliteStore::builder().table("_s1").build(pool).unwrap();
    assert_eq!(ok.table(), "\"_s1\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_is_idempotent_and_concurrent_safe() {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    // Six stores with pools of their own (as separate processes would have) create a new
    // file's table at once; ten files, so the race has chances to go every way.
    for file in 0..10 {
        let url = if file == 0 {
            url.clone()
        } else {
            dir.fresh_url()
        };
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let store = SqliteStore::builder()
                .table("shared")
                .connect_lazy(&url)
                .unwrap();
            tasks.push(tokio::spawn(async move { store.migrate().await }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
    let store = store_at(&url, StoreOptions::default(), |b| b.table("shared")).await;
    store.migrate().await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let mut record = Record::new(in_an_hour());
    store.create(&mut record).await.unwrap();
    // Applying the printed SQL by hand is a no-op too.
    let sql = store.migration_sql();
    sqlx::raw_sql(&sql).execute(store.pool()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(store.get(record.id()).await.unwrap().unwrap(), record);
    let objects: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_schema WHERE tbl_name = 'shared' AND type IN ('table', 'index')",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(objects, 4, "table, primary key and two indexes");

    // Switching a new file to WAL needs it to itself (SQLite's busy timeout doesn't wait
    // for that): a migration meeting another connection's open read waits for it to end.
    let url = dir.fresh_url();
    let store = SqliteStore::builder().connect(&url).await.unwrap();
    let mut reader = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    sqlx::query("SELECT count(*) FROM sqlite_schema")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    let migration = tokio::spawn(async move { store.migrate().await.map(|()| store) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    let store = migration.await.unwrap().unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    reader.close().await.unwrap();
}

/// Every call of an in-memory store sees its one database, however many run at once and
/// whatever the URL says about SQLite's cache; another store's database is another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_store_is_one_database() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:?cache=private",
        "sqlite://?mode=memory&cache=private",
    ] {
        let store = store_at(url, StoreOptions::default(), |b| b.max_connections(8)).await;
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut record = Record::new(in_an_hour());
                    store.create(&mut record).await.unwrap();
                    assert!(store.get(record.id()).await.unwrap().is_some());
                    store.count().await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(store.count().await.unwrap(), 32, "{url}");
        let other = store_at(url, StoreOptions::default(), |b| b).await;
        assert_eq!(
            other.count().await.unwrap(),
            0,
            "{url}: stores share a database"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Data fidelity

#[tokio::test]
async fn numbers_and_strings_round_trip_exactly() {
    let dir = TempDir::new();
    let store = store_at(&dir.fresh_url(), StoreOptions::default(), |b| b).await;
    let numbers = json!([
        i64::MIN,
        i64::MAX,
        u64::MAX,
        9_007_199_254_740_993_u64,
        -9_007_199_254_740_993_i64,
        3.25,
        -1.5e300,
        1e-300,
        1.0,
        0.1,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        -0.0,
        123456.789e3,
        1e18
    ]);
    let mut record = Record::new(in_an_hour());
    record.insert("numbers", &numbers).unwrap();
    record
        .insert(
            "text",
            "Zoë 🦀 \"quoted\" \\ \n\t \u{0} \u{7f} \u{1F600} '; --",
        )
        .unwrap();
    record.set_owner(Some("owner 'quoted' \u{0} é".into()));
    store.create(&mut record).await.unwrap();
    let back = store.get(record.id()).await.unwrap().unwrap();
    assert_eq!(back, record);
    let as_values: Vec<serde_json::Value> = back.get("numbers").unwrap().unwrap();
    for (got, want) in as_values.iter().zip(numbers.as_array().unwrap()) {
        assert_eq!(got, want, "{want} came back as {got}");
        assert_eq!(got.is_u64(), want.is_u64(), "{want}");
        assert_eq!(got.is_i64(), want.is_i64(), "{want}");
        assert_eq!(got.is_f64(), want.is_f64(), "{want}");
    }
    let listed = store.list_by_owner("owner 'quoted' \u{0} é").await.unwrap();
    assert_eq!(listed, vec![record.clone()]);
    // Text that looks like a number stays text (no column converts it).
    let mut numeric = Record::new(in_an_hour());
    numeric.set_owner(Some("00120".into()));
    store.create(&mut numeric).await.unwrap();
    let listed = store.list_by_owner("00120").await.unwrap();
    assert_eq!(listed, vec![numeric.clone()]);
    assert!(store.list_by_owner("120").await.unwrap().is_empty());

    // 2,000 pseudo-random finite doubles (every exponent range) come back bit for bit.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let floats: Vec<f64> = std::iter::repeat_with(|| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        f64::from_bits(state)
    })
    .filter(|f| f.is_finite() && *f != 0.0)
    .take(2000)
    .collect();
    let mut many = Record::new(in_an_hour());
    many.insert("floats", &floats).unwrap();
    store.create(&mut many).await.unwrap();
    let back: Vec<f64> = store
        .get(many.id())
        .await
        .unwrap()
        .unwrap()
        .get("floats")
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), floats.len());
    for (got, want) in back.iter().zip(&floats) {
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{want:e} came back as {got:e}"
        );
    }
    // The stored text is the JSON as written, not a normalised copy.
    let raw: String =
        sqlx::query_scalar(&format!("SELECT data FROM {} WHERE id = ?1", store.table()))
            .bind(record.id().expose())
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(raw, serde_json::to_string(record.data()).unwrap());
}

// ---------------------------------------------------------------------------------------
// Races

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_inserts_renames_and_updates_have_one_winner() {
    let dir = TempDir::new();
    let store = store_at(&dir.fresh_url(), StoreOptions::default(), |b| {
        b.max_connections(8)
    })
    .await;

    for round in 0..5 {
        // 16 inserts of one id: exactly one writes.
        let id = SessionId::generate();
        let tasks: Vec<_> = (0..16)
            .map(|n| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    let mut record = Record::with_id(id, in_an_hour());
                    record.insert("n", n).unwrap();
                    store.insert(&mut record).await.unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(task.await.unwrap());
        }
        assert_eq!(wins, 1, "round {round}: concurrent inserts of one id");

        // 16 compare-and-swaps on one version: exactly one wins.
        let read = store.get(&id).await.unwrap().unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|n| {
                let (store, mut stale) = (store.clone(), read.clone());
                tokio::spawn(async move {
                    stale.insert("cas", n).unwrap();
                    match store.update(&mut stale).await {
                        Ok(()) => true,
                        Err(err) if err.is_conflict() => false,
                        Err(err) => panic!("{err}"),
                    }
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(task.await.unwrap());
        }
        assert_eq!(wins, 1, "round {round}: compare-and-swaps on one version");

        // 16 cycle_ids of one session racing updates of it: one move, never two copies,
        // and an update either lands before the move (and moves with it) or conflicts.
        let original = store.get(&id).await.unwrap().unwrap();
        let mut tasks = Vec::new();
        for n in 0..16 {
            let store = store.clone();
            let mut stale = original.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                if n % 2 == 0 {
                    (store.cycle_id(&id).await.unwrap(), None)
                } else {
                    stale.insert("updated", n).unwrap();
                    (None, Some(store.update(&mut stale).await))
                }
            }));
        }
        let (mut moved, mut updated) = (Vec::new(), 0);
        for task in tasks {
            let (new_id, update) = task.await.unwrap();
            moved.extend(new_id);
            match update {
                Some(Ok(())) => updated += 1,
                Some(Err(err)) => assert!(err.is_conflict(), "{err}"),
                None => {}
            }
        }
        assert_eq!(moved.len(), 1, "round {round}: one rename wins");
        assert!(
            updated <= 1,
            "round {round}: {updated} compare-and-swaps won on one version"
        );
        assert!(store.get(&id).await.unwrap().is_none(), "the old id lives");
        let after = store.get(&moved[0]).await.unwrap().unwrap();
        assert_eq!(after.version(), original.version() + updated);
    }
    assert_eq!(rows_in(&store).await, 5, "a session was duplicated or lost");

    // 16 renames of 16 sessions onto one target: one moves, the rest find it taken.
    let target = SessionId::generate();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut record = Record::new(in_an_hour());
        store.create(&mut record).await.unwrap();
        let (store, target) = (store.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            store.rename(record.id(), &target).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let moved = outcomes.iter().filter(|o| **o == Rename::Moved).count();
    let taken = outcomes
        .iter()
        .filter(|o| **o == Rename::TargetTaken)
        .count();
    assert_eq!((moved, taken), (1, 15), "{outcomes:?}");
    assert_eq!(rows_in(&store).await, 5 + 16);
}

// ---------------------------------------------------------------------------------------
// Corrupt rows and oversized payloads

#[tokio::test]
async fn corrupt_rows_are_decode_errors_naming_the_id() {
    let dir = TempDir::new();
    let store = store_at(&dir.fresh_url(), StoreOptions::default(), |b| b).await;
    let live = hour_from_now_millis();
    let max = Record::MAX_VERSION as i64;
    let cases: [(&str, i64, i64, i64); 13] = [
        ("'[1,2]'", live, 1, 1),
        ("'\"text\"'", live, 1, 1),
        ("'42'", live, 1, 1),
        ("'null'", live, 1, 1),
        ("'true'", live, 1, 1),
        ("'{not json'", live, 1, 1),
        ("'{}'", live, 1, 99),
        ("'{}'", live, 1, -1),
        ("'{}'", live, -5, 1),
        ("'{}'", live, max + 1, 1),
        // Live for SQL, but past the last year the decoder reads.
        ("'{}'", i64::MAX / 2, 1, 1),
        // Not UTF-8.
        ("CAST(x'7b226b223a22ff227d' AS TEXT)", live, 1, 1),
        // Valid JSON the decoder refuses: SQL lets it through, reading stops it.
        ("'{\"n\":1e999}'", live, 1, 1),
    ];
    let mut ids = Vec::new();
    for (data, expires, version, format) in cases {
        let what = format!("{data} expires {expires} version {version} format {format}");
        let id = SessionId::generate();
        raw_row(&store, &id, data, expires, version, format).await;
        let err = store.get(&id).await.unwrap_err();
        assert!(matches!(&err, Error::Decode { .. }), "{what}: {err}");
        assert_eq!(
            err.session_id(),
            Some(&id),
            "{what}: the error must name it"
        );
        assert!(!err.is_retryable());
        let mut taker = Record::with_id(id.clone(), in_an_hour());
        assert!(!store.insert(&mut taker).await.unwrap(), "{what}: insert");
        ids.push(id.clone());

        // SQL can't see a number out of range or bytes that aren't UTF-8 inside valid
        // JSON: the writes take such a row for the session it claims to be (documented).
        // Every other kind of damage makes `update`, `touch` and `rename` leave the row
        // alone, as if missing.
        if data.contains("1e999") || data.contains("x'") {
            continue;
        }
        let mut stale = Record::with_id(id.clone(), in_an_hour());
        stale.set_version(version.clamp(0, max - 1) as u64);
        let updated = store.update(&mut stale).await;
        assert!(
            updated.as_ref().is_err_and(Error::is_conflict),
            "{what}: update {updated:?}"
        );
        assert!(
            !store.touch(&id, in_an_hour()).await.unwrap(),
            "{what}: touch"
        );
        let target = SessionId::generate();
        let renamed = store.rename(&id, &target).await.unwrap();
        assert_eq!(renamed, Rename::SourceMissing, "{what}");
        assert!(store.get(&target).await.unwrap().is_none(), "{what}: moved");
        assert!(
            matches!(store.get(&id).await, Err(Error::Decode { .. })),
            "{what}: the row was changed"
        );
    }
    assert_eq!(rows_in(&store).await, ids.len() as i64);
    let err = store.list_by_owner("corrupt-owner").await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");

    // The same rows through a lenient store on the same table read as absent.
    let lenient = SqliteStore::builder()
        .table(store.table_name())
        .options(StoreOptions {
            corrupt: CorruptPolicy::TreatAsMissing,
            ..Default::default()
        })
        .build(store.pool().clone())
        .unwrap();
    for id in &ids {
        assert!(lenient.get(id).await.unwrap().is_none());
    }
    assert!(
        lenient
            .list_by_owner("corrupt-owner")
            .await
            .unwrap()
            .is_empty()
    );
    // `set` replaces a corrupt row (here one whose version is out of range).
    let mut repair = Record::with_id(ids[9].clone(), in_an_hour());
    store.set(&mut repair).await.unwrap();
    assert_eq!(repair.version(), 1);
    assert_eq!(store.get(&ids[9]).await.unwrap().unwrap(), repair);
    // The rest are still the owner's, live by their expiry: all go.
    let removed = lenient.destroy_by_owner("corrupt-owner").await.unwrap();
    assert_eq!(removed, ids.len() as u64 - 1);
    assert_eq!(rows_in(&store).await, 1);
}

#[tokio::test]
async fn oversized_payloads_reach_no_row() {
    let dir = TempDir::new();
    let options = StoreOptions {
        max_payload_bytes: 1000,
        ..StoreOptions::default()
    };
    let store = store_at(&dir.fresh_url(), options, |b| b).await;
    let mut small = Record::new(in_an_hour());
    small.insert("v", "small").unwrap();
    store.create(&mut small).await.unwrap();

    let mut big = Record::new(in_an_hour());
    big.insert("blob", "x".repeat(2000)).unwrap();
    for result in [
        store.insert(&mut big.clone()).await.map(drop),
        store.set(&mut big.clone()).await,
        store.create(&mut big.clone()).await,
    ] {
        assert!(
            matches!(result, Err(Error::PayloadTooLarge { max: 1000, .. })),
            "{result:?}"
        );
    }
    let mut grown = small.clone();
    grown.insert("blob", "x".repeat(2000)).unwrap();
    assert!(matches!(
        store.update(&mut grown.clone()).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        store.set(&mut grown).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    assert_eq!(rows_in(&store).await, 1, "an oversized write reached a row");
    assert_eq!(store.get(small.id()).await.unwrap().unwrap(), small);
}

// ---------------------------------------------------------------------------------------
// EXPLAIN QUERY PLAN: every lookup uses an index

async fn plan(store: &SqliteStore, statement: &str, binds: &[Bind<'_>]) -> Vec<String> {
    let sql = format!(
        "EXPLAIN QUERY PLAN {}",
        store.statement_sql(statement).unwrap()
    );
    let mut query = sqlx::query(&sql);
    for bind in binds {
        query = match bind {
            Bind::Int(value) => query.bind(*value),
            Bind::Text(value) => query.bind(*value),
        };
    }
    let rows = query.fetch_all(store.pool()).await.unwrap();
    rows.iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect()
}

enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

#[tokio::test]
async fn explain_query_plan_shows_index_use() {
    let dir = TempDir::new();
    let store = store_at(&dir.fresh_url(), StoreOptions::default(), |b| b).await;
    // 20,000 live sessions over 2,000 owners (and some without), 100 expired ones.
    let fill = format!(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000) \
         INSERT INTO {t} (id, data, expires_at, created_at, version, owner, format) \
         SELECT printf('explain-%024d', n), '{{}}', \
                ?1 + CASE WHEN n <= 100 THEN -3600000 ELSE 3600000 END, ?1, 1, \
                CASE WHEN n % 3 = 0 THEN NULL ELSE 'owner-' || (n % 2000) END, 1 \
         FROM g",
        t = store.table()
    );
    let now_ms = unix_millis(now());
    sqlx::query(&fill)
        .bind(now_ms)
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    let [pkey, expires, owner] = store.index_names();
    let id = "explain-000000000000000000000500";
    use Bind::{Int, Text};
    let update = [
        Text(id),
        Text("{}"),
        Int(now_ms),
        Int(now_ms),
        Int(now_ms),
        Int(2),
        Text("o"),
        Int(1),
        Int(1),
        Int(now_ms),
    ];
    let cases = [
        (
            "get",
            plan(&store, "get", &[Text(id), Int(now_ms)]).await,
            &pkey,
        ),
        ("update", plan(&store, "update", &update).await, &pkey),
        (
            "touch",
            plan(&store, "touch", &[Text(id), Int(now_ms), Int(now_ms)]).await,
            &pkey,
        ),
        ("destroy", plan(&store, "destroy", &[Text(id)]).await, &pkey),
        (
            "rename_move",
            plan(&store, "rename_move", &[Text(id), Text("new"), Int(now_ms)]).await,
            &pkey,
        ),
        (
            "rename_take_expired",
            plan(&store, "rename_take_expired", &[Text(id), Int(now_ms)]).await,
            &pkey,
        ),
        (
            "purge_batch",
            plan(&store, "purge_batch", &[Int(1000), Int(now_ms)]).await,
            &expires,
        ),
        (
            "count",
            plan(&store, "count", &[Int(now_ms)]).await,
            &expires,
        ),
        (
            "list_by_owner",
            plan(&store, "list_by_owner", &[Text("owner-7"), Int(now_ms)]).await,
            &owner,
        ),
        (
            "scan",
            plan(&store, "scan", &[Text(""), Int(now_ms), Int(100)]).await,
            &pkey,
        ),
        (
            "scan (a later page)",
            plan(&store, "scan", &[Text(id), Int(now_ms), Int(100)]).await,
            &pkey,
        ),
        (
            "destroy_by_owner",
            plan(&store, "destroy_by_owner", &[Text("owner-7")]).await,
            &owner,
        ),
    ];
    let table = store.table_name();
    for (name, plan, index) in cases {
        let text = plan.join("\n");
        eprintln!("--- {name}\n{text}");
        assert!(
            text.contains(&format!("INDEX {index} ")),
            "{name} does not use {index}:\n{text}"
        );
        assert!(
            plan.iter()
                .all(|step| !step.starts_with(&format!("SCAN {table}"))),
            "{name} scans the table:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Purge

/// `rows` sessions that expired over the last `rows` × 10 ms, as a real table's would.
async fn insert_expired(store: &SqliteStore, rows: i64) {
    let sql = format!(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?1) \
         INSERT INTO {} (id, data, expires_at, created_at, version, format) \
         SELECT 'expired-' || hex(randomblob(16)), '{{\"k\":1}}', ?2 - 1000 - n * 10, ?2, 1, 1 \
         FROM g",
        store.table()
    );
    sqlx::query(&sql)
        .bind(rows)
        .bind(unix_millis(now()))
        .execute(store.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn purge_runs_in_batches() {
    let dir = TempDir::new();
    let store = store_at(&dir.fresh_url(), StoreOptions::default(), |b| {
        b.purge_batch(100)
    })
    .await;
    insert_expired(&store, 250).await;
    let mut live = Record::new(in_an_hour());
    store.create(&mut live).await.unwrap();
    let stats = store.purge_expired().await.unwrap();
    assert_eq!(stats.removed, 250);
    assert_eq!(stats.batches, 3);
    assert_eq!(rows_in(&store).await, 1);
    assert!(store.get(live.id()).await.unwrap().is_some());
    // An exact multiple takes one more, empty batch to see the end.
    insert_expired(&store, 200).await;
    assert_eq!(store.delete_expired().await.unwrap(), 200);
    // core's Pruner through the crate's helper
    insert_expired(&store, 10).await;
    let pruner = store.spawn_pruner(Duration::from_millis(50)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows_in(&store).await > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pruner.stop().await;
    assert_eq!(rows_in(&store).await, 1, "the pruner did not purge");
    assert!(store.get(live.id()).await.unwrap().is_some());
}

// ---------------------------------------------------------------------------------------
// Restart, locks, pool

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart() {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let store = store_at(&url, StoreOptions::default(), |b| b.table("app")).await;
    let mut kept = Record::new(in_an_hour());
    kept.insert("user", "survivor").unwrap();
    kept.set_owner(Some("u1".into()));
    store.create(&mut kept).await.unwrap();
    kept.insert("visits", 2).unwrap();
    store.update(&mut kept).await.unwrap();
    let mut moved = Record::new(in_an_hour());
    store.create(&mut moved).await.unwrap();
    let new_id = store.cycle_id(moved.id()).await.unwrap().unwrap();
    let mut gone = Record::new(in_an_hour());
    store.create(&mut gone).await.unwrap();
    store.destroy(gone.id()).await.unwrap();
    store.pool().close().await;
    drop(store);

    let reopened = store_at(&url, StoreOptions::default(), |b| b.table("app")).await;
    assert_eq!(reopened.get(kept.id()).await.unwrap().unwrap(), kept);
    assert!(reopened.get(moved.id()).await.unwrap().is_none());
    assert!(reopened.get(&new_id).await.unwrap().is_some());
    assert!(reopened.get(gone.id()).await.unwrap().is_none());
    assert_eq!(
        reopened.list_by_owner("u1").await.unwrap(),
        vec![kept.clone()]
    );
    // The version goes on from where it was: a stale write still conflicts.
    let mut stale = kept.clone();
    stale.set_version(1);
    assert!(reopened.update(&mut stale).await.unwrap_err().is_conflict());
    assert_eq!(reopened.count().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_gives_retryable_errors_then_the_store_works() {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let timeout = Duration::from_millis(500);
    let options = StoreOptions {
        timeout,
        ..StoreOptions::default()
    };
    // SQLite gives up waiting for the lock before the call's timeout: its own error shows.
    let store = store_at(&url, options.clone(), |b| {
        b.busy_timeout(Duration::from_millis(200))
    })
    .await;
    // Waiting for the lock as long as the call may: the timeout ends it.
    let patient = store_at(&url, options, |b| b).await;
    let mut record = Record::new(in_an_hour());
    record.set_owner(Some("o".into()));
    store.create(&mut record).await.unwrap();

    // Another connection (another process, say) takes the write lock and keeps it.
    let mut holder = lock_database(&url).await;
    let margin = Duration::from_millis(1500);
    let started = Instant::now();
    let mut fresh = Record::new(in_an_hour());
    let results = [
        ("insert", store.insert(&mut fresh).await.map(drop)),
        ("set", store.set(&mut record.clone()).await),
        ("update", store.update(&mut record.clone()).await),
        (
            "touch",
            store.touch(record.id(), in_an_hour()).await.map(drop),
        ),
        ("destroy", store.destroy(record.id()).await),
        (
            "rename",
            store
                .rename(record.id(), &SessionId::generate())
                .await
                .map(drop),
        ),
        (
            "destroy_by_owner",
            store.destroy_by_owner("o").await.map(drop),
        ),
        ("delete_expired", store.delete_expired().await.map(drop)),
        ("migrate", store.migrate().await),
    ];
    for (name, result) in results {
        let err = result.expect_err(name);
        eprintln!("{name} while locked: {err}");
        // A migration tries again until its timeout (every step is idempotent).
        let expected = if name == "migrate" {
            matches!(err, Error::Timeout { .. })
        } else {
            matches!(
                err,
                Error::Backend {
                    retryable: true,
                    ..
                }
            )
        };
        assert!(expected, "{name}: not the retryable error expected: {err}");
    }
    let took = started.elapsed();
    assert!(took < 9 * timeout + margin, "nine calls took {took:?}");
    // One call alone ends within its timeout.
    let started = Instant::now();
    let err = patient.update(&mut record.clone()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        started.elapsed() < timeout + margin,
        "{:?}",
        started.elapsed()
    );
    // In WAL mode readers don't wait for the writer.
    assert_eq!(store.get(record.id()).await.unwrap().unwrap(), record);
    assert_eq!(store.count().await.unwrap(), 1);

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    // The patient update that timed out may still land once the lock is free (its statement
    // was already on the connection: an error means "maybe"), at the next version with the
    // same data, even between a read and a write here: read-modify-write with retry (CI saw
    // a plain get-then-update conflict with it once).
    let (again, ()) = session_core::modify(&store, record.id(), 8, |s| {
        assert_eq!(s.data(), record.data());
        s.insert("after", "the lock").unwrap();
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(store.get(record.id()).await.unwrap().unwrap(), again);
    assert!(store.touch(record.id(), in_an_hour()).await.unwrap());
    assert!(store.insert(&mut fresh).await.unwrap());
    assert_eq!(store.count().await.unwrap(), 2);
    holder.close().await.unwrap();
}

/// A write that waited for another connection's lock judges liveness by the time it got
/// the lock: a session that expired while it waited stays gone (no resurrection by a stale
/// clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_waited_for_the_lock_sees_the_time_it_got_it() {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let store = store_at(&url, StoreOptions::default(), |b| b).await;
    for operation in ["update", "touch", "rename"] {
        let mut record = Record::new(now() + time::Duration::milliseconds(300));
        store.create(&mut record).await.unwrap();
        let mut holder = lock_database(&url).await;
        let task = {
            let (store, mut record) = (store.clone(), record.clone());
            tokio::spawn(async move {
                record.set_expires_at(in_an_hour());
                match operation {
                    "update" => store.update(&mut record).await.is_ok(),
                    "touch" => store.touch(record.id(), in_an_hour()).await.unwrap(),
                    _ => {
                        let to = SessionId::generate();
                        store.rename(record.id(), &to).await.unwrap() == Rename::Moved
                    }
                }
            })
        };
        // The call is waiting for the lock while the session expires.
        tokio::time::sleep(Duration::from_millis(700)).await;
        sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
        assert!(
            !task.await.unwrap(),
            "{operation} revived a session that expired while it waited"
        );
        assert!(
            store.get(record.id()).await.unwrap().is_none(),
            "{operation}"
        );
        assert_eq!(store.count().await.unwrap(), 0, "{operation}");
        holder.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_times_out_instead_of_hanging() {
    let dir = TempDir::new();
    let store = store_at(
        &dir.fresh_url(),
        StoreOptions {
            timeout: Duration::from_secs(3),
            ..Default::default()
        },
        |b| {
            b.max_connections(1)
                .acquire_timeout(Duration::from_millis(300))
        },
    )
    .await;
    let mut record = Record::new(in_an_hour());
    store.create(&mut record).await.unwrap();
    let held = store.pool().acquire().await.unwrap();
    let started = Instant::now();
    let err = store.get(record.id()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("pool timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(2000));
    drop(held);
    assert!(store.get(record.id()).await.unwrap().is_some());
}

// ---------------------------------------------------------------------------------------
// Attacks

/// A store sharing `store`'s pool (and file) whose calls time out after `timeout`.
fn hasty(store: &SqliteStore, timeout: Duration) -> SqliteStore {
    SqliteStore::builder()
        .options(StoreOptions {
            timeout,
            ..Default::default()
        })
        .build(store.pool().clone())
        .unwrap()
}

/// Calls cancelled by their timeout at every point of a write transaction (while
/// `BEGIN IMMEDIATE` is being acknowledged included) leave no connection of the pool in an
/// open transaction: afterwards every write commits (another pool, as another process
/// would, sees it) and no write waits for a lock nobody will release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_cancelled_writes_leave_no_open_transaction() {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let options = StoreOptions {
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let store = store_at(&url, options.clone(), |b| b.max_connections(3)).await;
    let other = store_at(&url, options.clone(), |b| b).await;
    let mut tasks = Vec::new();
    for task in 0..4_u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut record = Record::new(in_an_hour());
            record.set_owner(Some("victim".into()));
            store.create(&mut record).await.unwrap();
            let mut id = record.id().clone();
            for i in 0..400_u64 {
                // 0 to 2 ms, varied: the timer fires at every stage of the calls.
                let quick = hasty(&store, Duration::from_micros((i * 131 + task * 17) % 2_000));
                let fresh = SessionId::generate();
                if let Ok(Rename::Moved) = quick.rename(&id, &fresh).await {
                    id = fresh;
                }
                let _ = quick.destroy_by_owner("nobody").await;
                let _ = quick.touch(&id, in_an_hour()).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Give dropped connections time to go back to the pool.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..12 {
        let mut record = Record::new(in_an_hour());
        record.set_owner(Some("after".into()));
        store.create(&mut record).await.unwrap();
        assert!(
            other.get(record.id()).await.unwrap().is_some(),
            "a write the store acknowledged is invisible to another connection: left in an \
             open transaction"
        );
        let moved = SessionId::generate();
        assert_eq!(
            store.rename(record.id(), &moved).await.unwrap(),
            Rename::Moved
        );
        assert!(other.get(&moved).await.unwrap().is_some());
    }
    assert_eq!(store.destroy_by_owner("after").await.unwrap(), 12);
    assert_eq!(other.destroy_by_owner("after").await.unwrap(), 0);
}

/// Two stores on one file (two pools, as two processes would have): compare-and-swap
/// increments from both, with `set`s of a stale copy in between, lose no increment that
/// `update` acknowledged, and every acknowledged version is unique.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_two_pools_lose_no_compare_and_swap() {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let options = StoreOptions::default();
    let a = store_at(&url, options.clone(), |b| b).await;
    let b = store_at(&url, options.clone(), |b| b).await;
    let mut record = Record::new(in_an_hour());
    record.insert("n", 0_u64).unwrap();
    a.create(&mut record).await.unwrap();
    let id = record.id().clone();
    let versions = std::sync::Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for task in 0..6 {
        let store = if task % 2 == 0 { a.clone() } else { b.clone() };
        let (id, versions) = (id.clone(), versions.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 40 {
                let mut current = store.get(&id).await.unwrap().unwrap();
                let n: u64 = current.get("n").unwrap().unwrap();
                current.insert("n", n + 1).unwrap();
                match store.update(&mut current).await {
                    Ok(()) => {
                        versions.lock().unwrap().push(current.version());
                        done += 1;
                    }
                    Err(Error::Conflict { .. }) => {}
                    Err(err) => panic!("{err}"),
                }
            }
        }));
    }
    // A task that `set`s what it read (same n): it never goes back in versions.
    let setter = {
        let (store, id, versions) = (b.clone(), id.clone(), versions.clone());
        tokio::spawn(async move {
            for _ in 0..40 {
                let mut current = store.get(&id).await.unwrap().unwrap();
                store.set(&mut current).await.unwrap();
                versions.lock().unwrap().push(current.version());
            }
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    setter.await.unwrap();
    let last = a.get(&id).await.unwrap().unwrap();
    let mut versions = versions.lock().unwrap().clone();
    versions.sort_unstable();
    let len = versions.len();
    versions.dedup();
    assert_eq!(versions.len(), len, "a version was stored twice");
    assert_eq!(last.version(), *versions.last().unwrap());
    // A set of a stale copy may undo increments (last writer wins); without the setter
    // racing, the count would be exact. So: check it with the setter's writes as losses.
    let n: u64 = last.get("n").unwrap().unwrap();
    assert!(n <= 240, "{n}");
}

/// "Log out everywhere" from one pool while another rotates the owner's sessions
/// (`cycle_id`) and keeps them busy (`touch`, `update`): nothing of the owner survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_destroy_by_owner_across_pools_misses_no_moving_session() {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let a = store_at(&url, StoreOptions::default(), |b| b).await;
    let b = store_at(&url, StoreOptions::default(), |b| b).await;
    for round in 0..30 {
        let owner = format!("owner-{round}");
        let mut ids = Vec::new();
        for _ in 0..6 {
            let mut record = Record::new(in_an_hour());
            record.set_owner(Some(owner.clone()));
            a.create(&mut record).await.unwrap();
            ids.push(record.id().clone());
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut movers = Vec::new();
        for id in ids {
            let (store, stop) = (a.clone(), stop.clone());
            movers.push(tokio::spawn(async move {
                let mut id = id;
                while !stop.load(Ordering::Relaxed) {
                    match store.cycle_id(&id).await.unwrap() {
                        Some(fresh) => id = fresh,
                        None => return,
                    }
                    let _ = store.touch(&id, in_an_hour()).await.unwrap();
                    if let Some(mut r) = store.get(&id).await.unwrap() {
                        let _ = store.update(&mut r).await;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let removed = b.destroy_by_owner(&owner).await.unwrap();
        assert_eq!(removed, 6, "round {round}");
        assert!(b.list_by_owner(&owner).await.unwrap().is_empty());
        stop.store(true, Ordering::Relaxed);
        for mover in movers {
            mover.await.unwrap();
        }
        assert!(
            a.list_by_owner(&owner).await.unwrap().is_empty(),
            "round {round}: a session came back"
        );
    }
}

/// A full database (`PRAGMA max_page_count` on every connection): writes fail with a
/// retryable error naming no success, nothing half-written shows, earlier sessions read
/// back, and the store works again once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_full_database_loses_nothing_and_recovers() {
    use std::str::FromStr as _;
    let dir = TempDir::new();
    let url = dir.fresh_url();
    store_at(&url, StoreOptions::default(), |b| b).await;
    let connect = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
        .unwrap()
        .pragma("max_page_count", "40");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(connect)
        .await
        .unwrap();
    let store = SqliteStore::builder().build(pool).unwrap();
    let mut kept = Vec::new();
    let mut full = None;
    for i in 0..200 {
        let mut record = Record::new(in_an_hour());
        record.insert("blob", "x".repeat(8_000 + i)).unwrap();
        match store.create(&mut record).await {
            Ok(()) => kept.push(record),
            Err(err) => {
                full = Some((err, record));
                break;
            }
        }
    }
    let (err, mut refused) = full.expect("the database never filled up");
    assert!(err.is_retryable(), "{err:?}");
    assert!(!kept.is_empty());
    assert!(store.get(refused.id()).await.unwrap().is_none());
    // Updates that need more pages fail too, and leave the stored record as it was.
    let mut grown = store.get(kept[0].id()).await.unwrap().unwrap();
    grown.insert("more", "y".repeat(200_000)).unwrap();
    let err = store.update(&mut grown).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(store.get(kept[0].id()).await.unwrap().unwrap(), kept[0]);
    // Room again: the refused session goes in.
    for record in &kept[1..] {
        store.destroy(record.id()).await.unwrap();
    }
    store.create(&mut refused).await.unwrap();
    assert!(store.get(refused.id()).await.unwrap().is_some());
}

/// A database opened read-only: reads work, every write is a permanent error, and
/// nothing panics or hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_read_only_database_refuses_writes_permanently() {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let writable = store_at(&url, StoreOptions::default(), |b| b).await;
    let mut record = Record::new(in_an_hour());
    record.set_owner(Some("ro".into()));
    writable.create(&mut record).await.unwrap();
    let ro = SqliteStore::builder()
        .options(StoreOptions {
            timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .connect(&format!("{url}?mode=ro"))
        .await
        .unwrap();
    assert_eq!(ro.get(record.id()).await.unwrap().unwrap(), record);
    let mut copy = record.clone();
    let errors = [
        ro.set(&mut copy).await.unwrap_err(),
        ro.update(&mut copy).await.unwrap_err(),
        ro.touch(record.id(), in_an_hour()).await.unwrap_err(),
        ro.destroy(record.id()).await.unwrap_err(),
        ro.rename(record.id(), &SessionId::generate())
            .await
            .unwrap_err(),
        ro.destroy_by_owner("ro").await.unwrap_err(),
        ro.create(&mut Record::new(in_an_hour())).await.unwrap_err(),
    ];
    for err in errors {
        assert!(!err.is_retryable(), "{err:?}");
    }
    assert_eq!(copy.version(), record.version());
    assert_eq!(writable.get(record.id()).await.unwrap().unwrap(), record);
}

/// Calls spread over stores on one file, round robin: several processes sharing it. The
/// first `setup` inserts (the workload's counters, made before any fault) go through a
/// store with the default timeout, so a test with tiny timeouts doesn't fail its own
/// set-up on a loaded machine.
#[derive(Debug)]
struct Processes(
    Vec<SqliteStore>,
    AtomicU64,
    Option<(SqliteStore, AtomicU64)>,
);

impl Processes {
    fn next(&self) -> &SqliteStore {
        let n = self.1.fetch_add(1, Ordering::Relaxed) as usize;
        &self.0[n % self.0.len()]
    }
}

#[async_trait]
impl SessionStore for Processes {
    async fn get(&self, id: &SessionId) -> session_core::Result<Option<Record>> {
        self.next().get(id).await
    }
    async fn insert(&self, record: &mut Record) -> session_core::Result<bool> {
        if let Some((setup, left)) = &self.2
            && left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            return setup.insert(record).await;
        }
        self.next().insert(record).await
    }
    async fn set(&self, record: &mut Record) -> session_core::Result<()> {
        self.next().set(record).await
    }
    async fn update(&self, record: &mut Record) -> session_core::Result<()> {
        self.next().update(record).await
    }
    async fn touch(&self, id: &SessionId, at: time::OffsetDateTime) -> session_core::Result<bool> {
        self.next().touch(id, at).await
    }
    async fn destroy(&self, id: &SessionId) -> session_core::Result<()> {
        self.next().destroy(id).await
    }
    async fn rename(&self, from: &SessionId, to: &SessionId) -> session_core::Result<Rename> {
        self.next().rename(from, to).await
    }
    async fn delete_expired(&self) -> session_core::Result<u64> {
        self.next().delete_expired().await
    }
    async fn list_by_owner(&self, owner: &str) -> session_core::Result<Vec<Record>> {
        self.next().list_by_owner(owner).await
    }
    async fn destroy_by_owner(&self, owner: &str) -> session_core::Result<u64> {
        self.next().destroy_by_owner(owner).await
    }
    async fn count(&self) -> session_core::Result<u64> {
        self.next().count().await
    }
    fn timeout(&self) -> Duration {
        self.0[0].timeout()
    }
}

/// The recorded workload (judged by the linearizability checker) on three stores sharing
/// one file, as three processes would, with contended (hot) partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_three_pools_on_one_file_are_linearizable() {
    use integration_tests::linearizable::Partitions;
    use integration_tests::workload::Workload;
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(store_at(&url, StoreOptions::default(), |b| b.max_connections(2)).await);
    }
    let workload = Workload {
        recorded: Some(Partitions {
            workers: 4,
            hot_rounds: 4,
            ..Partitions::default()
        }),
        ..Workload::default()
    };
    let report = workload
        .start(std::sync::Arc::new(Processes(
            stores,
            AtomicU64::new(0),
            None,
        )))
        .run(tokio::time::sleep(Duration::from_secs(4)))
        .await;
    assert!(report.is_clean(), "{}\n{report}", report.problems());
    match report.check_linearizability("attack-sqlite-three-pools", "healthy") {
        Ok(verdict) => {
            eprintln!("{verdict:?}");
            assert!(
                verdict.anomalies == 0 && verdict.timed_out == 0 && verdict.ops > 0,
                "not linearizable: {verdict:?} (see target/histories)"
            );
        }
        Err(reason) => eprintln!("linearizability not checked: {reason}"),
    }
}

/// The same with calls cut off by a 4 ms timeout all the time (unknown outcomes
/// everywhere): nothing acknowledged is lost and the history stays linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_timeouts_everywhere_stay_linearizable() {
    use integration_tests::linearizable::Partitions;
    use integration_tests::workload::Workload;
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let timeout = Duration::from_millis(4);
    let options = StoreOptions {
        timeout,
        ..Default::default()
    };
    let mut stores = Vec::new();
    for _ in 0..2 {
        let store = store_at(&url, StoreOptions::default(), |b| b.max_connections(2)).await;
        stores.push(
            SqliteStore::builder()
                .options(options.clone())
                .build(store.pool().clone())
                .unwrap(),
        );
    }
    let workload = Workload {
        recorded: Some(Partitions {
            workers: 4,
            hot_rounds: 4,
            ..Partitions::default()
        }),
        ..Workload::default()
    };
    let setup = store_at(&url, StoreOptions::default(), |b| b.max_connections(1)).await;
    let counters = AtomicU64::new(workload.counters as u64);
    let report = workload
        .start(std::sync::Arc::new(Processes(
            stores,
            AtomicU64::new(0),
            Some((setup, counters)),
        )))
        .run(tokio::time::sleep(Duration::from_secs(4)))
        .await;
    let problems = report.problems();
    eprintln!("{report}\n{problems}");
    assert!(!problems.contains("lost:"), "{problems}");
    match report.check_linearizability("attack-sqlite-timeouts", "timeouts") {
        Ok(verdict) => {
            eprintln!("{verdict:?}");
            assert!(
                verdict.anomalies == 0 && verdict.ops > 0,
                "not linearizable: {verdict:?} (see target/histories)"
            );
        }
        Err(reason) => eprintln!("linearizability not checked: {reason}"),
    }
}

/// The database file deleted under a running store (a clean-up script, a redeploy), and a
/// new store opening the path: a session the old store then writes is acknowledged only
/// if it can be read back through the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "defect: a store whose file was deleted keeps acknowledging writes into the \
            unlinked file (seen in WAL mode: SQLite refuses nothing); detecting it needs sqlite3_file_control(SQLITE_FCNTL_HAS_MOVED) \
            (unsafe, forbidden here) or a stat of the path per write"]
async fn attack_a_deleted_database_file_loses_no_acknowledged_write() {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let old = store_at(&url, StoreOptions::default(), |b| b).await;
    let mut first = Record::new(in_an_hour());
    old.create(&mut first).await.unwrap();
    let path = url.strip_prefix("sqlite://").unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let new = store_at(&url, StoreOptions::default(), |b| b).await;
    let mut record = Record::new(in_an_hour());
    match old.create(&mut record).await {
        Ok(()) => assert!(
            new.get(record.id()).await.unwrap().is_some(),
            "the old store acknowledged a write into the deleted file"
        ),
        Err(err) => eprintln!("refused: {err:?}"),
    }
}

/// The cancellation storm on an in-memory database (one connection): afterwards the
/// store still writes, renames and revokes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_cancelled_writes_on_an_in_memory_database() {
    let store = store_at(
        "sqlite::memory:",
        StoreOptions {
            timeout: Duration::from_secs(2),
            ..Default::default()
        },
        |b| b,
    )
    .await;
    let mut record = Record::new(in_an_hour());
    record.set_owner(Some("victim".into()));
    store.create(&mut record).await.unwrap();
    let mut id = record.id().clone();
    for i in 0..600_u64 {
        let quick = hasty(&store, Duration::from_micros((i * 131) % 2_000));
        let fresh = SessionId::generate();
        if let Ok(Rename::Moved) = quick.rename(&id, &fresh).await {
            id = fresh;
        }
        let _ = quick.destroy_by_owner("nobody").await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut after = Record::new(in_an_hour());
    after.set_owner(Some("victim".into()));
    store.create(&mut after).await.unwrap();
    let moved = SessionId::generate();
    assert_eq!(
        store.rename(after.id(), &moved).await.unwrap(),
        Rename::Moved
    );
    assert_eq!(store.destroy_by_owner("victim").await.unwrap(), 2);
    assert_eq!(store.count().await.unwrap(), 0);
}

/// `limit_owner` from one pool while another keeps rotating every session of the owner
/// (`cycle_id`): what it returned and how many sessions were left, per round.
async fn limit_during_rotation(rounds: usize) -> Vec<(u64, usize)> {
    let dir = TempDir::new();
    let url = dir.fresh_url();
    let a = store_at(&url, StoreOptions::default(), |b| b).await;
    // This checks what `limit_owner` does, not how soon: the movers keep SQLite's write
    // lock busy from the other pool, and on a loaded 2-core CI machine one `limit_owner`
    // waited past the default 5 s (a timeout, which the store reports as it should).
    let patient = StoreOptions {
        timeout: Duration::from_secs(30),
        ..StoreOptions::default()
    };
    let b = store_at(&url, patient, |b| b).await;
    let mut outcomes = Vec::new();
    for round in 0..rounds {
        let owner = format!("limit-{round}");
        let mut ids = Vec::new();
        for _ in 0..6 {
            let mut record = Record::new(in_an_hour());
            record.set_owner(Some(owner.clone()));
            a.create(&mut record).await.unwrap();
            ids.push(record.id().clone());
            // Distinct creation times.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut movers = Vec::new();
        for id in ids {
            let (store, stop) = (a.clone(), stop.clone());
            movers.push(tokio::spawn(async move {
                let mut id = id;
                while !stop.load(Ordering::Relaxed) {
                    match store.cycle_id(&id).await.unwrap() {
                        Some(fresh) => id = fresh,
                        None => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
        let ended = b.limit_owner(&owner, 2).await.unwrap();
        stop.store(true, Ordering::Relaxed);
        for mover in movers {
            mover.await.unwrap();
        }
        outcomes.push((ended, a.list_by_owner(&owner).await.unwrap().len()));
    }
    outcomes
}

/// Exactly `keep` sessions remain (nobody else ends sessions, the moves never hide one),
/// and `limit_owner` returns how many it ended: 4 of 6 when keeping 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_limit_owner_across_pools_during_rotation() {
    for (round, outcome) in limit_during_rotation(15).await.into_iter().enumerate() {
        assert_eq!(outcome, (4, 2), "round {round}");
    }
}

// ---------------------------------------------------------------------------------------
// The suite, with its waiting cases overlapped

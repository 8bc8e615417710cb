//! session-mysql on a real server (MariaDB or MySQL): the conformance suite, also through
//! `CachedStore` and `EncryptedStore`; fault tests (a server killed and restarted, an
//! exhausted pool, corrupt rows, oversized payloads, bad names); `EXPLAIN` proofs that every
//! lookup uses an index; exact round trips; races with one winner.
//!
//! The server comes from `SESSION_STORES_MYSQL_URL` (see `integration_tests::server_url`).
//! The restart test starts a throwaway MariaDB of its own (`mariadb-install-db`,
//! `mariadbd`) on a free port.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration_tests::proxy::slow_store;
use integration_tests::servers::{DedicatedServer, MariadbServer};
use integration_tests::{Backend, Skip, in_an_hour, server_url};
use serde_json::json;
use session_core::conformance::{Harness, Unrun};
use session_core::{
    CorruptPolicy, Error, Record, SessionId, SessionStore, StoreOptions, async_trait, now,
    unix_millis,
};
use session_encrypted::{EncryptedStore, EncryptionKey};
use session_memory::CachedStore;
use session_mysql::sqlx::{self, Row};
use session_mysql::{MySqlPool, MysqlStore, MysqlStoreBuilder};

// ---------------------------------------------------------------------------------------
// Harness

/// Fresh tables in the URL's database, one per store.
struct MysqlHarness;

#[async_trait]
impl Harness for MysqlHarness {
    type Store = MysqlStore;

    async fn available(&self) -> Result<(), Skip> {
        server_url(Backend::Mysql).map(drop)
    }

    async fn store(&self, options: StoreOptions) -> MysqlStore {
        fresh_store(options, |b| b).await
    }

    async fn write_corrupt(&self, store: &MysqlStore, id: &SessionId) -> Result<(), Skip> {
        // Valid JSON, but not an object: only the decoding can notice.
        raw_row(store, id, "[1,2]", in_an_hour_millis(), 1, 1).await;
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<MysqlStore, Unrun> {
        slow_mysql(options).await
    }
}

/// The suite, in a module of its own so that a run can pick it (`-- conformance::`), as the
/// Docker step of `scripts/test` does.
mod conformance {
    use super::*;
    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| MysqlHarness);
    }
}

async fn slow_mysql(options: StoreOptions) -> Result<MysqlStore, Unrun> {
    let url = server_url(Backend::Mysql).map_err(Unrun::Skip)?;
    Ok(slow_store(&url, options, |url, options| async move {
        let store = fresh_store_at(&url, options, |b| b.max_connections(2)).await;
        // Connected and migrated while the proxy is still fast.
        store.count().await.unwrap();
        store
    })
    .await)
}

/// The two-tier cache over MySQL (kept here rather than in wrappers.rs, which covers the
/// older backends).
struct CachedMysql;

#[async_trait]
impl Harness for CachedMysql {
    type Store = CachedStore<MysqlStore>;

    async fn available(&self) -> Result<(), Skip> {
        server_url(Backend::Mysql).map(drop)
    }

    async fn store(&self, options: StoreOptions) -> Self::Store {
        CachedStore::builder(fresh_store(options, |b| b).await).build()
    }

    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        MysqlHarness.write_corrupt(store.inner(), id).await
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
        Ok(CachedStore::builder(slow_mysql(options).await?).build())
    }
}

mod cached {
    use super::*;
    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| CachedMysql);
    }
}

/// `EncryptedStore` over MySQL, with wrappers.rs's keys and room for the sealed form.
struct EncryptedMysql;

impl EncryptedMysql {
    fn keys() -> Vec<EncryptionKey> {
        vec![
            EncryptionKey::from_bytes(&[0x11; 32]).unwrap(),
            EncryptionKey::from_bytes(&[0x22; 32]).unwrap(),
        ]
    }

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

    fn wrap(inner: MysqlStore, limit: usize) -> EncryptedStore<MysqlStore> {
        EncryptedStore::new(inner, Self::keys())
            .unwrap()
            .max_payload_bytes(limit)
    }
}

#[async_trait]
impl Harness for EncryptedMysql {
    type Store = EncryptedStore<MysqlStore>;

    async fn available(&self) -> Result<(), Skip> {
        server_url(Backend::Mysql).map(drop)
    }

    async fn store(&self, options: StoreOptions) -> Self::Store {
        let (inner, limit) = Self::inner_options(options);
        Self::wrap(fresh_store(inner, |b| b).await, limit)
    }

    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        MysqlHarness.write_corrupt(store.inner(), id).await
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
        let (inner, limit) = Self::inner_options(options);
        Ok(Self::wrap(slow_mysql(inner).await?, limit))
    }
}

mod encrypted {
    use super::*;
    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| EncryptedMysql);
    }
}

// ---------------------------------------------------------------------------------------
// Scans

/// [`ScanSessions`](session_core::ScanSessions): every live session, whole, page by page.
#[tokio::test]
async fn scan() {
    let Some(_) = url() else { return };
    let store = MysqlHarness.store(StoreOptions::default()).await;
    session_core::conformance::check_scan(&store).await;
}

/// Rows whose id is not UTF-8 (a hand edit; `id` is `VARBINARY`) are counted as corrupt,
/// and the scan goes on past them in pages of any size, even of one row: the cursor names
/// their bytes exactly, so no page repeats and the scan ends.
#[tokio::test]
async fn scan_goes_on_past_ids_that_are_not_utf8() {
    use session_core::{ScanCursor, ScanSessions};

    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    let mut expected = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let mut record = Record::new(in_an_hour());
        store.create(&mut record).await.unwrap();
        expected.insert(record.id().expose().to_owned());
    }
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, format) \
         VALUES (?, '{{}}', ?, ?, 1, 1)",
        store.table()
    );
    for id in [&b"\xff\xfe"[..], b"M\xff", b"hex:zz", b"0\x80"] {
        sqlx::query(&sql)
            .bind(id)
            .bind(unix_millis(in_an_hour()))
            .bind(unix_millis(now()))
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
        assert_eq!(corrupt, 4, "pages of {limit}: the four rows with bad ids");
    }
}

fn url() -> Option<String> {
    match server_url(Backend::Mysql) {
        Ok(url) => Some(url),
        Err(Skip(reason)) => {
            session_core::conformance::skip("a MySQL test", &reason);
            None
        }
    }
}

/// The prefix of every table this binary creates: `ms<pid>_`.
fn table_prefix() -> String {
    format!("ms{}_", std::process::id())
}

/// A table name no other store in this run uses: `ms<pid>_<n>`.
fn unique_table() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}{}", table_prefix(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Drops the tables earlier runs left in the test database (once per binary).
async fn clean_database_once(pool: &MySqlPool) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let mine = format!("{}%", table_prefix().replace('_', "\\_"));
        let old: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT CAST(table_name AS BINARY) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name LIKE 'ms%' AND table_name NOT LIKE ?",
        )
        .bind(&mine)
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        for table in old {
            let table = String::from_utf8(table).unwrap();
            // Names come from information_schema and are quoted; test tables only.
            let drop = format!("DROP TABLE IF EXISTS `{}`", table.replace('`', "``"));
            sqlx::query(&drop).execute(pool).await.ok();
        }
    })
    .await;
}

async fn fresh_store(
    options: StoreOptions,
    configure: impl FnOnce(MysqlStoreBuilder) -> MysqlStoreBuilder,
) -> MysqlStore {
    let url = server_url(Backend::Mysql).unwrap();
    fresh_store_at(&url, options, configure).await
}

/// [`fresh_store`] on the server at `url`.
async fn fresh_store_at(
    url: &str,
    options: StoreOptions,
    configure: impl FnOnce(MysqlStoreBuilder) -> MysqlStoreBuilder,
) -> MysqlStore {
    let builder = MysqlStore::builder().table(unique_table()).options(options);
    let store = configure(builder).connect(url).await.unwrap();
    store.migrate().await.unwrap();
    clean_database_once(store.pool()).await;
    store
}

/// Writes a row by hand, bypassing every check of the store.
async fn raw_row(
    store: &MysqlStore,
    id: &SessionId,
    data: &str,
    expires_at: i64,
    version: i64,
    format: i32,
) {
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, owner, format) \
         VALUES (?, ?, ?, ?, ?, 'corrupt-owner', ?)",
        store.table()
    );
    sqlx::query(&sql)
        .bind(id.expose())
        .bind(data)
        .bind(expires_at)
        .bind(unix_millis(now()))
        .bind(version)
        .bind(format)
        .execute(store.pool())
        .await
        .unwrap();
}

async fn rows_in(store: &MysqlStore) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {}", store.table());
    sqlx::query_scalar(&sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn in_an_hour_millis() -> i64 {
    unix_millis(in_an_hour())
}

// ---------------------------------------------------------------------------------------
// Schema, names, migration

#[tokio::test]
async fn bad_names_and_urls_are_config_errors() {
    let pool = MySqlPool::connect_lazy("mysql://nobody@127.0.0.1:1/none").unwrap();
    for table in [
        "Sessions",
        "sessIons",
        "my sessions",
        "sessions; drop table users",
        "1sessions",
        "",
        "a`b",
        "db.sessions",
        &"x".repeat(65),
    ] {
        let built = MysqlStore::builder().table(table).build(pool.clone());
        assert!(
            matches!(built, Err(Error::Config(_))),
            "{table:?} was accepted"
        );
    }
    for url in ["not a url", "postgres://a@b/c", "mysql://a@b:port/c"] {
        let lazy = MysqlStore::builder().connect_lazy(url);
        assert!(matches!(lazy, Err(Error::Config(_))), "{url}: {lazy:?}");
    }
    let ok = MysqlStore::builder().table("_s1").build(pool).unwrap();
    assert_eq!(ok.table(), "`_s1`");
    // No password in Debug output.
    let store = MysqlStore::builder()
        .connect_lazy("mysql://app:hunter2@127.0.0.1:1/app")
        .unwrap();
    assert!(!format!("{store:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_is_idempotent_and_concurrent_safe() {
    let Some(url) = url() else { return };
    let table = unique_table();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = MysqlStore::builder()
            .table(&table)
            .connect_lazy(&url)
            .unwrap();
        tasks.push(tokio::spawn(async move { store.migrate().await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let store = MysqlStore::builder()
        .table(&table)
        .connect(&url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let mut record = Record::new(in_an_hour());
    store.create(&mut record).await.unwrap();
    assert!(store.get(record.id()).await.unwrap().is_some());
    // Applying the printed SQL by hand is a no-op too.
    sqlx::raw_sql(&store.migration_sql())
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 1);
    // The migration lock is free again: the migrations closed their connections.
    let free: Option<i64> = sqlx::query_scalar("SELECT IS_FREE_LOCK('session_mysql.migrate')")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(free, Some(1));
}

#[tokio::test]
async fn a_held_migration_lock_makes_migrate_wait_then_fail_retryably() {
    let Some(url) = url() else { return };
    let store = MysqlStore::builder()
        .table(unique_table())
        .options(StoreOptions {
            timeout: Duration::from_secs(3),
            ..Default::default()
        })
        .connect(&url)
        .await
        .unwrap();
    let mut holder = store.pool().acquire().await.unwrap();
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('session_mysql.migrate', 0)")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    let started = Instant::now();
    let err = store.migrate().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
    )
    .bind(store.table_name())
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(exists, 0, "migrated without the lock");
    drop(holder.detach());
    store.migrate().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Data fidelity

#[tokio::test]
async fn numbers_and_strings_round_trip_exactly() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
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
        .insert("text", "Zoë 🦀 \"quoted\" \\ \n\t \u{7f} \u{1F600} \u{0} 𝄞")
        .unwrap();
    // Keys in an order no sorting gives.
    record.insert("zeta", 1).unwrap();
    record.insert("alpha", 2).unwrap();
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
    // The stored text is byte for byte what serde_json wrote: key order, and 1e18 as the
    // float `1e+18` (MySQL's JSON type would store the integer 1000000000000000000).
    let sql = format!("SELECT data FROM {} WHERE id = ?", store.table());
    let stored: Vec<u8> = sqlx::query_scalar(&sql)
        .bind(record.id().expose())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(stored, serde_json::to_vec(record.data()).unwrap());
    let text = String::from_utf8(stored).unwrap();
    assert!(
        text.contains("1e+18") && !text.contains("1000000000000000000"),
        "1e18 was rewritten: {text}"
    );

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
    for (got, want) in back.iter().zip(&floats) {
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{want:e} came back as {got:e}"
        );
    }
    // Owners with 4-byte characters round trip, and the longest allowed one fits.
    let mut owned = Record::new(in_an_hour());
    owned.set_owner(Some("🦀".repeat(768)));
    store.create(&mut owned).await.unwrap();
    assert_eq!(store.get(owned.id()).await.unwrap().unwrap(), owned);
    assert_eq!(store.count().await.unwrap(), 3);
}

#[tokio::test]
async fn ids_and_owners_compare_byte_exactly() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    let lower = SessionId::parse("abcdefghijklmnopqrstuvwxyz").unwrap();
    let upper = SessionId::parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ").unwrap();
    let mut a = Record::with_id(lower.clone(), in_an_hour());
    a.set_owner(Some("user".into()));
    let mut b = Record::with_id(upper.clone(), in_an_hour());
    b.set_owner(Some("USER".into()));
    assert!(store.insert(&mut a).await.unwrap());
    assert!(
        store.insert(&mut b).await.unwrap(),
        "ids differing in case collided"
    );
    assert_eq!(store.get(&upper).await.unwrap().unwrap(), b);
    let mut c = Record::new(in_an_hour());
    c.set_owner(Some("üser".into()));
    store.create(&mut c).await.unwrap();
    let mut d = Record::new(in_an_hour());
    d.set_owner(Some("user ".into()));
    store.create(&mut d).await.unwrap();
    let listed = store.list_by_owner("user").await.unwrap();
    assert_eq!(
        listed.len(),
        1,
        "owner matching folded case, accents or spaces"
    );
    assert_eq!(listed[0].id(), &lower);
    assert_eq!(store.destroy_by_owner("USER").await.unwrap(), 1);
    assert!(store.get(&lower).await.unwrap().is_some());
}

// ---------------------------------------------------------------------------------------
// Affected rows: sqlx sets CLIENT_FOUND_ROWS, so matched rows count

#[tokio::test]
async fn writes_that_change_nothing_still_count_as_found() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    let mut record = Record::new(in_an_hour());
    store.create(&mut record).await.unwrap();
    let expiry = record.expires_at();
    assert!(store.touch(record.id(), expiry).await.unwrap());
    assert!(
        store.touch(record.id(), expiry).await.unwrap(),
        "a touch to the same expiry reported the session missing"
    );
    let mut deadlined = Record::new(in_an_hour());
    deadlined.set_deadline(Some(now() + time::Duration::minutes(30)));
    store.create(&mut deadlined).await.unwrap();
    // Capped at the deadline, which is the stored expiry already: no column changes.
    assert!(store.touch(deadlined.id(), in_an_hour()).await.unwrap());
    assert!(store.touch(deadlined.id(), in_an_hour()).await.unwrap());
}

// ---------------------------------------------------------------------------------------
// Races: single statements under concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_inserts_renames_and_updates_have_one_winner() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b.max_connections(8)).await;

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
    assert_eq!(wins, 1, "concurrent inserts of one id");

    // 16 racing updates of one version: one wins.
    let original = store.get(&id).await.unwrap().unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let store = store.clone();
            let mut stale = original.clone();
            tokio::spawn(async move {
                stale.insert("updated", n).unwrap();
                store.update(&mut stale).await
            })
        })
        .collect();
    let mut updated = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => updated += 1,
            Err(err) => assert!(err.is_conflict(), "{err}"),
        }
    }
    assert_eq!(updated, 1, "compare-and-swaps on one version");

    // 16 cycle_ids of one session, racing updates of it: one move, never two copies.
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
    assert_eq!(moved.len(), 1, "one rename wins, the others find no source");
    assert!(
        updated <= 1,
        "{updated} compare-and-swaps won on one version"
    );
    assert!(
        store.get(&id).await.unwrap().is_none(),
        "the old id survived"
    );
    assert_eq!(rows_in(&store).await, 1, "a session was duplicated or lost");
    let after = store.get(&moved[0]).await.unwrap().unwrap();
    assert_eq!(after.version(), original.version() + updated);

    // 16 renames of 16 sessions onto one target: one wins.
    let target = SessionId::generate();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut record = Record::new(in_an_hour());
            store.create(&mut record).await.unwrap();
            store.rename(record.id(), &target).await.unwrap()
        }));
    }
    let mut moves = 0;
    for task in tasks {
        match task.await.unwrap() {
            session_core::Rename::Moved => moves += 1,
            other => assert_eq!(other, session_core::Rename::TargetTaken),
        }
    }
    assert_eq!(moves, 1, "renames onto one target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_sets_never_reuse_a_version() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b.max_connections(8)).await;
    let id = SessionId::generate();
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let mut record = Record::with_id(id, in_an_hour());
                record.insert("n", n).unwrap();
                store.set(&mut record).await.unwrap();
                record.version()
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        16,
        "sets stored one version twice: {versions:?}"
    );
    let stored = store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.version(), *versions.last().unwrap());
}

/// Renames and "log out everywhere" on one owner's sessions take row locks in opposite
/// orders (primary key, then owner index; owner index, then primary key), so InnoDB picks
/// deadlock victims now and then. A victim was rolled back whole: the store runs it again,
/// and no caller sees the deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlocks_between_renames_and_revocations_stay_inside_the_store() {
    let Some(_) = url() else { return };
    let store = fresh_store(
        StoreOptions {
            timeout: Duration::from_secs(10),
            ..Default::default()
        },
        |b| b.max_connections(12),
    )
    .await;
    let before = deadlocks(&store).await;
    for round in 0..40 {
        let owner = format!("owner-{round}");
        let mut ids = Vec::new();
        for _ in 0..8 {
            let mut record = Record::new(in_an_hour());
            record.set_owner(Some(owner.clone()));
            store.create(&mut record).await.unwrap();
            ids.push(record.id().clone());
        }
        let mut tasks = Vec::new();
        for id in ids {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.cycle_id(&id).await.unwrap();
            }));
        }
        let revoke = {
            let (store, owner) = (store.clone(), owner.clone());
            tokio::spawn(async move { store.destroy_by_owner(&owner).await.unwrap() })
        };
        for task in tasks {
            task.await.unwrap();
        }
        revoke.await.unwrap();
        // Whatever moved after the revocation is still the owner's; one more ends it.
        store.destroy_by_owner(&owner).await.unwrap();
        assert!(store.list_by_owner(&owner).await.unwrap().is_empty());
    }
    eprintln!(
        "deadlocks the server resolved meanwhile: {}",
        deadlocks(&store).await - before
    );
}

/// InnoDB's count of deadlocks since the server started.
async fn deadlocks(store: &MysqlStore) -> i64 {
    let row = sqlx::query("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")
        .fetch_optional(store.pool())
        .await
        .unwrap();
    row.and_then(|row| {
        let value: Vec<u8> = row.try_get_unchecked(1).ok()?;
        String::from_utf8(value).ok()?.parse().ok()
    })
    .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Corrupt rows and oversized payloads

#[tokio::test]
async fn corrupt_rows_are_decode_errors_naming_the_id() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    let live = in_an_hour_millis();
    let cases: [(&str, i64, i64, i32); 10] = [
        ("[1,2]", live, 1, 1),
        ("42", live, 1, 1),
        ("null", live, 1, 1),
        ("{not json", live, 1, 1),
        ("", live, 1, 1),
        ("{}", live, 1, 99),
        ("{}", live, 1, -1),
        ("{}", live, -5, 1),
        ("{}", live, i64::MAX, 1),
        ("{}", i64::MAX, 1, 1),
    ];
    let mut ids = Vec::new();
    for (data, expires, version, format) in cases {
        let id = SessionId::generate();
        raw_row(&store, &id, data, expires, version, format).await;
        let err = store.get(&id).await.unwrap_err();
        assert!(
            matches!(&err, Error::Decode { .. }),
            "{data} {format}: {err}"
        );
        assert_eq!(
            err.session_id(),
            Some(&id),
            "{data}: the error must name the session"
        );
        assert!(!err.is_retryable());
        ids.push(id);
    }
    // The write guard leaves each row as it was, as if missing; insert sees it taken.
    for (id, (data, ..)) in ids.iter().zip(cases) {
        let mut record = Record::with_id(id.clone(), in_an_hour());
        assert!(!store.insert(&mut record.clone()).await.unwrap(), "{data}");
        if data == "{not json" {
            // Starts like an object: the guard can't tell (see the crate docs).
            continue;
        }
        assert!(!store.touch(id, in_an_hour()).await.unwrap(), "{data}");
        record.set_version(1);
        assert!(
            store.update(&mut record).await.unwrap_err().is_conflict(),
            "{data}"
        );
        let to = SessionId::generate();
        assert_eq!(
            store.rename(id, &to).await.unwrap(),
            session_core::Rename::SourceMissing,
            "{data}"
        );
    }
    assert_eq!(rows_in(&store).await, ids.len() as i64);
    let err = store.list_by_owner("corrupt-owner").await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");

    // The same rows through a lenient store on the same table read as absent.
    let lenient = MysqlStore::builder()
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
    // A row whose id no session could have (too short, and bytes that aren't UTF-8).
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, owner, format) \
         VALUES (?, '{{}}', ?, 0, 1, 'bad-id-owner', 1)",
        store.table()
    );
    for id in [&b"short"[..], &[0xff; 30][..]] {
        sqlx::query(&sql)
            .bind(id)
            .bind(in_an_hour_millis())
            .execute(store.pool())
            .await
            .unwrap();
    }
    let err = store.list_by_owner("bad-id-owner").await.unwrap_err();
    assert!(matches!(err, Error::InvalidId(_)), "{err}");
    assert!(
        lenient
            .list_by_owner("bad-id-owner")
            .await
            .unwrap()
            .is_empty()
    );
    // `set` replaces a corrupt row.
    let mut fresh = Record::with_id(ids[0].clone(), in_an_hour());
    store.set(&mut fresh).await.unwrap();
    assert_eq!(store.get(&ids[0]).await.unwrap().unwrap(), fresh);
}

#[tokio::test]
async fn oversized_payloads_reach_no_row() {
    let Some(_) = url() else { return };
    let options = StoreOptions {
        max_payload_bytes: 1000,
        ..StoreOptions::default()
    };
    let store = fresh_store(options, |b| b).await;
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
    assert_eq!(
        rows_in(&store).await,
        1,
        "an oversized write reached the table"
    );
    assert_eq!(store.get(small.id()).await.unwrap().unwrap(), small);
}

#[tokio::test]
async fn data_past_max_allowed_packet_is_an_encode_error() {
    let Some(_) = url() else { return };
    let store = fresh_store(
        StoreOptions {
            max_payload_bytes: usize::MAX,
            timeout: Duration::from_secs(20),
            ..StoreOptions::default()
        },
        |b| b,
    )
    .await;
    let packet: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let mut huge = Record::new(in_an_hour());
    huge.insert("blob", "x".repeat(packet as usize + 1024))
        .unwrap();
    let err = store.insert(&mut huge).await.unwrap_err();
    assert!(matches!(&err, Error::Encode { .. }), "{err}");
    assert_eq!(err.session_id(), Some(huge.id()));
    eprintln!("past max_allowed_packet ({packet}): {err}");
    assert_eq!(rows_in(&store).await, 0);
}

// ---------------------------------------------------------------------------------------
// Pool exhaustion

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_times_out_instead_of_hanging() {
    let Some(_) = url() else { return };
    // Pool acquire timeout shorter than the call timeout: the pool's own error.
    let store = fresh_store(
        StoreOptions {
            timeout: Duration::from_secs(3),
            ..Default::default()
        },
        |b| {
            b.max_connections(1)
                .acquire_timeout(Duration::from_millis(500))
        },
    )
    .await;
    let mut record = Record::new(in_an_hour());
    store.create(&mut record).await.unwrap();
    let held = store.pool().acquire().await.unwrap();
    let started = Instant::now();
    let err = store.get(record.id()).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("pool timed out"), "{err}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");

    // Call timeout shorter than the pool's: the store's typed timeout.
    let strict = MysqlStore::builder()
        .table(store.table_name())
        .options(StoreOptions {
            timeout: Duration::from_millis(300),
            ..Default::default()
        })
        .build(store.pool().clone())
        .unwrap();
    let started = Instant::now();
    let err = strict.count().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                operation: "count",
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));

    drop(held);
    assert!(
        store.get(record.id()).await.unwrap().is_some(),
        "the pool recovers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_lock_held_elsewhere_times_out_instead_of_hanging() {
    let Some(_) = url() else { return };
    let store = fresh_store(
        StoreOptions {
            timeout: Duration::from_secs(1),
            ..Default::default()
        },
        |b| b,
    )
    .await;
    let mut record = Record::new(in_an_hour());
    store.create(&mut record).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    let lock = format!("SELECT 1 FROM {} WHERE id = ? FOR UPDATE", store.table());
    sqlx::query(&lock)
        .bind(record.id().expose())
        .execute(&mut *tx)
        .await
        .unwrap();
    let started = Instant::now();
    let err = store.update(&mut record.clone()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // Past the server's lock wait (innodb_lock_wait_timeout = the call timeout), then the
    // lock goes: the update the store gave up on must not apply now. With the server's
    // default wait of 50 s it would, and the update below would conflict.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tx.rollback().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.update(&mut record).await {
            Ok(()) => break,
            Err(err) if err.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("the store did not recover: {err}"),
        }
    }
    assert_eq!(store.get(record.id()).await.unwrap().unwrap(), record);
}

// ---------------------------------------------------------------------------------------
// EXPLAIN: every lookup uses an index

/// `sql` with each `?` replaced by the next of `values` (test constants only).
fn inline(sql: &str, values: &[String]) -> String {
    let mut values = values.iter();
    sql.chars()
        .map(|c| match c {
            '?' => values.next().unwrap().clone(),
            c => c.to_string(),
        })
        .collect()
}

/// The plan of one of the store's statements: `(type, key)` of each row of `EXPLAIN`.
async fn plan(store: &MysqlStore, statement: &str, values: &[String]) -> Vec<(String, String)> {
    let sql = format!(
        "EXPLAIN {}",
        inline(store.statement_sql(statement).unwrap(), values)
    );
    let rows = sqlx::raw_sql(&sql).fetch_all(store.pool()).await.unwrap();
    let text = |row: &sqlx::mysql::MySqlRow, column: &str| {
        row.try_get_unchecked::<Option<Vec<u8>>, _>(column)
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
            .unwrap_or_default()
    };
    rows.iter()
        .map(|row| {
            // MariaDB reads a row found by its whole primary key while planning ("const
            // table"); when that row fails the rest of the condition, the plan shows no key.
            let extra = text(row, "Extra");
            if extra.contains("noticed after reading const tables") {
                return ("const".to_owned(), "PRIMARY".to_owned());
            }
            (text(row, "type"), text(row, "key"))
        })
        .collect()
}

/// A derived table `g` of the numbers 1 to `count` in a column `n` (at most 100,000),
/// built from digits so it runs on MySQL and MariaDB alike.
fn numbers(count: u32) -> String {
    let digits = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                  UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
                  UNION ALL SELECT 8 UNION ALL SELECT 9)";
    format!(
        "(SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 1 AS n \
          FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f) g \
         WHERE n <= {count}"
    )
}

#[tokio::test]
async fn explain_shows_index_use() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    // 20,000 live sessions over 2,000 owners (and some without), 100 expired ones.
    let now_ms = unix_millis(now());
    let fill = format!(
        "INSERT INTO {t} (id, data, expires_at, created_at, version, owner, format) \
         SELECT CONCAT('explain-', LPAD(n, 24, '0')), '{{}}', \
                IF(n <= 100, {now_ms} - 3600000, {now_ms} + 3600000), {now_ms}, 1, \
                IF(n % 3 = 0, NULL, CONCAT('owner-', n % 2000)), 1 \
         FROM {numbers}",
        numbers = numbers(20_000),
        t = store.table()
    );
    sqlx::raw_sql(&fill).execute(store.pool()).await.unwrap();
    assert_eq!(rows_in(&store).await, 20_000);
    sqlx::raw_sql(&format!("ANALYZE TABLE {}", store.table()))
        .execute(store.pool())
        .await
        .unwrap();
    let [pkey, expires, owner] = store.index_names();
    let id = "'explain-000000000000000000000500'".to_owned();
    let now_s = now_ms.to_string();
    let later = (now_ms + 3_600_000).to_string();
    let s = |v: &str| v.to_owned();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("get", vec![id.clone(), now_s.clone()], pkey),
        (
            "update",
            {
                let mut v = vec![
                    s("'{}'"),
                    later.clone(),
                    s("NULL"),
                    now_s.clone(),
                    s("2"),
                    s("NULL"),
                    s("1"),
                ];
                v.extend([id.clone(), s("1"), now_s.clone()]);
                v
            },
            pkey,
        ),
        (
            "set_update",
            vec![
                now_s.clone(),
                s("2"),
                s("2"),
                s("'{}'"),
                later.clone(),
                s("NULL"),
                now_s.clone(),
                s("NULL"),
                s("1"),
                id.clone(),
                now_s.clone(),
            ],
            pkey,
        ),
        ("set_blocked", vec![id.clone(), now_s.clone()], pkey),
        (
            "touch",
            vec![later.clone(), later.clone(), id.clone(), now_s.clone()],
            pkey,
        ),
        (
            "rename_move",
            vec![s("'explain-new'"), id.clone(), now_s.clone()],
            pkey,
        ),
        ("take_expired", vec![id.clone(), now_s.clone()], pkey),
        ("destroy", vec![id.clone()], pkey),
        ("purge_batch", vec![now_s.clone(), s("1000")], expires),
        ("list_by_owner", vec![s("'owner-7'"), now_s.clone()], owner),
        ("scan", vec![s("''"), now_s.clone(), s("100")], pkey),
        ("scan", vec![id.clone(), now_s.clone(), s("100")], pkey),
        (
            "destroy_by_owner",
            vec![s("'owner-7'"), now_s.clone()],
            owner,
        ),
    ];
    for (name, values, index) in cases {
        let plan = plan(&store, name, &values).await;
        eprintln!("--- {name}: {plan:?}");
        assert_eq!(plan.len(), 1, "{name}: {plan:?}");
        let (access, key) = &plan[0];
        assert_ne!(access, "ALL", "{name} scans the table: {plan:?}");
        assert_eq!(key, index, "{name} does not use {index}: {plan:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Purge

#[tokio::test]
async fn purge_runs_in_batches() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b.purge_batch(100)).await;
    insert_expired(&store, 250).await;
    let mut live = Record::new(in_an_hour());
    store.create(&mut live).await.unwrap();
    let stats = store.purge_expired().await.unwrap();
    assert_eq!(stats.removed, 250);
    assert_eq!(stats.batches, 3);
    assert_eq!(rows_in(&store).await, 1);
    assert!(store.get(live.id()).await.unwrap().is_some());
    // core's Pruner through the crate's helper
    insert_expired(&store, 10).await;
    let pruner = store.spawn_pruner(Duration::from_millis(50)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows_in(&store).await > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pruner.stop().await;
    assert_eq!(rows_in(&store).await, 1, "the pruner did not purge");
}

/// `rows` sessions that expired over the last `rows` × 10 ms, as a real table's would.
async fn insert_expired(store: &MysqlStore, rows: i64) {
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, format) \
         VALUES (?, '{{\"k\":1}}', ?, ?, 1, 1)",
        store.table()
    );
    let now_ms = unix_millis(now());
    for n in 0..rows {
        sqlx::query(&sql)
            .bind(SessionId::generate().expose())
            .bind(now_ms - 1000 - n * 10)
            .bind(now_ms - 3_600_000)
            .execute(store.pool())
            .await
            .unwrap();
    }
}

/// `cargo test -p integration-tests --test mysql -- --ignored --nocapture purge_cost`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it by name"]
async fn purge_cost_of_100k_expired_rows() {
    let Some(_) = url() else { return };
    for batch in [1_000, 10_000] {
        let store = fresh_store(
            StoreOptions {
                timeout: Duration::from_secs(60),
                ..Default::default()
            },
            |b| b.purge_batch(batch),
        )
        .await;
        let now_ms = unix_millis(now());
        let fill = format!(
            "INSERT INTO {t} (id, data, expires_at, created_at, version, format) \
             SELECT CONCAT('expired-', LPAD(n, 24, '0')), '{{\"k\":1}}', \
                    {now_ms} - 1000 - n * 10, {now_ms} - 3600000, 1, 1 \
             FROM {numbers}",
            t = store.table(),
            numbers = numbers(100_000),
        );
        sqlx::raw_sql(&fill).execute(store.pool()).await.unwrap();
        let mut live = Record::new(in_an_hour());
        store.create(&mut live).await.unwrap();
        let started = Instant::now();
        let stats = store.purge_expired().await.unwrap();
        let took = started.elapsed();
        println!(
            "purge of 100,000 expired rows, batch {batch}: removed {} in {} batches, {:?} \
             ({:?} per batch)",
            stats.removed,
            stats.batches,
            took,
            took / stats.batches as u32
        );
        assert_eq!(stats.removed, 100_000);
        assert_eq!(rows_in(&store).await, 1);
        sqlx::query(&format!("DROP TABLE {}", store.table()))
            .execute(store.pool())
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// A dedicated server (`integration_tests::servers::MariadbServer`), killed and restarted

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_gives_retryable_errors_then_the_store_recovers() {
    let server = match tokio::task::spawn_blocking(MariadbServer::start)
        .await
        .unwrap()
    {
        Ok(server) => server,
        Err(reason) => {
            return session_core::conformance::skip(
                "the restart test (cannot start a throwaway MariaDB)",
                &reason,
            );
        }
    };
    let timeout = Duration::from_secs(1);
    let store = MysqlStore::builder()
        .options(StoreOptions {
            timeout,
            ..Default::default()
        })
        .max_connections(4)
        .connect(&server.url())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let mut record = Record::new(in_an_hour());
    record.insert("kept", "across the crash").unwrap();
    store.create(&mut record).await.unwrap();
    // Keep a few pooled connections open so the kill cuts live connections too.
    let (a, b) = tokio::join!(store.count(), store.get(record.id()));
    a.unwrap();
    b.unwrap();

    let mut server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.kill().unwrap();
        server
    })
    .await
    .unwrap();
    let margin = Duration::from_millis(1500);
    for attempt in 0..3 {
        let started = Instant::now();
        let results = [
            store.get(record.id()).await.map(drop),
            store.update(&mut record.clone()).await,
            store.count().await.map(drop),
        ];
        for result in results {
            let err = result.unwrap_err();
            eprintln!("server down, attempt {attempt}: {err}");
            assert!(
                err.is_retryable(),
                "attempt {attempt}: not retryable: {err}"
            );
            assert!(
                matches!(
                    err,
                    Error::Timeout { .. }
                        | Error::Backend {
                            retryable: true,
                            ..
                        }
                ),
                "{err}"
            );
        }
        assert!(
            started.elapsed() < 3 * (timeout + margin),
            "took {:?}",
            started.elapsed()
        );
    }

    let server = tokio::task::spawn_blocking(move || server.restart().map(|()| server))
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let back = loop {
        match store.get(record.id()).await {
            Ok(found) => break found,
            Err(err) if err.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("the store did not recover: {err}"),
        }
    };
    assert_eq!(
        back.unwrap(),
        record,
        "a committed session was lost across the crash"
    );
    let mut again = Record::new(in_an_hour());
    store.create(&mut again).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 2);
    drop(store);
    drop(server);
}

// ---------------------------------------------------------------------------------------
// Attacks

/// An expired row, written by hand, so `insert` and `rename` must make it give way.
async fn expired_row(store: &MysqlStore, id: &SessionId) {
    raw_row(store, id, "{}", unix_millis(now()) - 60_000, 1, 1).await;
}

/// `insert` over an expired row is an INSERT (duplicate key), a DELETE of the expired row,
/// and the INSERT again. When a `destroy` removes the expired row between the first two,
/// the DELETE frees nothing: the id was never live during the call, so `insert` must still
/// write (in any order, destroy-then-insert or insert-over-expired, the insert succeeds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_over_an_expired_row_racing_destroy_always_writes() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b.max_connections(8)).await;
    let mut refused = 0;
    for round in 0..400u32 {
        let id = SessionId::generate();
        expired_row(&store, &id).await;
        let inserting = {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let mut record = Record::with_id(id, in_an_hour());
                store.insert(&mut record).await.unwrap()
            })
        };
        let destroying = {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                // Spread the destroy over the insert's statements.
                tokio::time::sleep(Duration::from_micros(u64::from(round % 8) * 150)).await;
                store.destroy(&id).await.unwrap();
            })
        };
        let written = inserting.await.unwrap();
        destroying.await.unwrap();
        refused += usize::from(!written);
    }
    assert_eq!(refused, 0, "inserts refused while the id was free");
}

/// The same race for `rename` onto an expired target: `TargetTaken` needs a live record
/// under the target at some instant, and there never was one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_onto_an_expired_row_racing_destroy_always_moves() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b.max_connections(8)).await;
    let mut refused = 0;
    for round in 0..400u32 {
        let (from, to) = (SessionId::generate(), SessionId::generate());
        let mut record = Record::with_id(from.clone(), in_an_hour());
        assert!(store.insert(&mut record).await.unwrap());
        expired_row(&store, &to).await;
        let renaming = {
            let (store, from, to) = (store.clone(), from.clone(), to.clone());
            tokio::spawn(async move { store.rename(&from, &to).await.unwrap() })
        };
        let destroying = {
            let (store, to) = (store.clone(), to.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(u64::from(round % 8) * 150)).await;
                store.destroy(&to).await.unwrap();
            })
        };
        let outcome = renaming.await.unwrap();
        destroying.await.unwrap();
        if outcome != session_core::Rename::Moved {
            refused += 1;
            // Nothing moved: the session is still under `from`.
            assert!(store.get(&from).await.unwrap().is_some());
        }
    }
    assert_eq!(refused, 0, "renames refused while the target was free");
}

/// `update` judges liveness by the application's clock read before its statement travels:
/// a statement delayed on the way (a slow network) applies to a session that expired
/// while it travelled, after another client saw the session gone. The session comes back,
/// which the trait rules out ("a session that its expiry ended never comes back through
/// `update`").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "defect: liveness is judged by the app clock read before a delayed statement, so an update delayed in transit past the expiry resurrects the session (a design choice shared by the backends that pass `now`; not fixed)"]
async fn an_update_delayed_in_transit_past_the_expiry_resurrects_nothing() {
    let Some(url) = url() else { return };
    let options = StoreOptions {
        timeout: Duration::from_secs(10),
        ..StoreOptions::default()
    };
    let fast = fresh_store(options.clone(), |b| b).await;
    let proxy =
        integration_tests::proxy::FaultProxy::start(integration_tests::targets::host_port(&url))
            .await
            .unwrap();
    let slow = MysqlStore::builder()
        .table(fast.table_name())
        .options(options)
        .max_connections(1)
        .connect(&integration_tests::targets::with_host_port(
            &url,
            proxy.listen(),
        ))
        .await
        .unwrap();
    slow.count().await.unwrap();
    let mut resurrected = 0;
    for _ in 0..3 {
        let mut record = Record::with_id(
            SessionId::generate(),
            now() + time::Duration::milliseconds(300),
        );
        fast.insert(&mut record).await.unwrap();
        proxy.slow_down(Duration::from_millis(400));
        let updating = {
            let (slow, mut record) = (slow.clone(), record.clone());
            tokio::spawn(async move {
                record.set_expires_at(in_an_hour());
                slow.update(&mut record).await
            })
        };
        tokio::time::sleep(Duration::from_millis(350)).await;
        let seen_gone = fast.get(record.id()).await.unwrap().is_none();
        let updated = updating.await.unwrap();
        proxy.slow_down(Duration::ZERO);
        let back = fast.get(record.id()).await.unwrap().is_some();
        if seen_gone && back {
            resurrected += 1;
            assert!(updated.is_ok());
        }
    }
    assert_eq!(
        resurrected, 0,
        "sessions seen expired, then live again after an update"
    );
}

/// "Log out everywhere" against moves, strictly: every session exists before the
/// revocation starts and lives throughout it, so once `destroy_by_owner` and the moves have
/// all returned, none may be alive under its old id or its new one (no second revocation
/// to mop up). Half the moves are `cycle_id`, half plain `rename` onto an id holding an
/// expired row (the DELETE-then-move path), so deadlock victims are retried on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_revocation_ends_every_session_being_moved() {
    let Some(_) = url() else { return };
    let store = fresh_store(
        StoreOptions {
            timeout: Duration::from_secs(10),
            ..Default::default()
        },
        |b| b.max_connections(12),
    )
    .await;
    let before = deadlocks(&store).await;
    for round in 0..200 {
        let owner = format!("owner-{round}");
        let mut ids = Vec::new();
        for n in 0..8 {
            let mut record = Record::new(in_an_hour());
            record.set_owner(Some(owner.clone()));
            store.create(&mut record).await.unwrap();
            let target = SessionId::generate();
            if n % 2 == 0 {
                expired_row(&store, &target).await;
            }
            ids.push((record.id().clone(), target));
        }
        let mut tasks = Vec::new();
        for (n, (id, target)) in ids.iter().cloned().enumerate() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                if n % 2 == 0 {
                    store.rename(&id, &target).await.unwrap();
                    target
                } else {
                    store.cycle_id(&id).await.unwrap().unwrap_or(target)
                }
            }));
        }
        let revoke = {
            let (store, owner) = (store.clone(), owner.clone());
            tokio::spawn(async move { store.destroy_by_owner(&owner).await.unwrap() })
        };
        let mut moved_to = Vec::new();
        for task in tasks {
            moved_to.push(task.await.unwrap());
        }
        let removed = revoke.await.unwrap();
        assert_eq!(removed, 8, "round {round}: sessions the revocation removed");
        for ((id, _), to) in ids.iter().zip(&moved_to) {
            assert!(
                store.get(id).await.unwrap().is_none(),
                "round {round}: {id:?}"
            );
            assert!(
                store.get(to).await.unwrap().is_none(),
                "round {round}: {to:?}"
            );
        }
        assert!(store.list_by_owner(&owner).await.unwrap().is_empty());
    }
    eprintln!(
        "deadlocks the server resolved meanwhile: {}",
        deadlocks(&store).await - before
    );
}

/// The recorded workload (judged by the linearizability checker) with hot partitions and
/// a pool wide enough for every worker, so statements on one session really overlap on the
/// server (deadlock victims, duplicate keys, moves racing revocations).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_hot_partitions_are_linearizable() {
    use integration_tests::linearizable::Partitions;
    use integration_tests::workload::Workload;
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b.max_connections(16)).await;
    let workload = Workload {
        recorded: Some(Partitions {
            owners: 2,
            workers: 5,
            hot_rounds: 4,
            ..Partitions::default()
        }),
        ..Workload::default()
    };
    let report = workload
        .start(std::sync::Arc::new(store))
        .run(tokio::time::sleep(Duration::from_secs(6)))
        .await;
    assert!(report.is_clean(), "{}\n{report}", report.problems());
    match report.check_linearizability("attack-mysql-hot-partitions", "healthy") {
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

/// The same with calls cut off by a 2 ms timeout all the time (statements cancelled on
/// the wire, connections handed back mid-reply, unknown outcomes everywhere): nothing
/// acknowledged is lost and the history stays linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_timeouts_everywhere_stay_linearizable() {
    use integration_tests::linearizable::Partitions;
    use integration_tests::workload::Workload;
    let Some(_) = url() else { return };
    let timeout = Duration::from_millis(2);
    let setup = fresh_store(StoreOptions::default(), |b| b.max_connections(8)).await;
    let store = MysqlStore::builder()
        .table(setup.table_name())
        .options(StoreOptions {
            timeout,
            ..Default::default()
        })
        .build(setup.pool().clone())
        .unwrap();
    let workload = Workload {
        recorded: Some(Partitions {
            workers: 4,
            hot_rounds: 4,
            ..Partitions::default()
        }),
        ..Workload::default()
    };
    let counters = workload.counters as u64;
    let report = workload
        .start(std::sync::Arc::new(TightAfterSetup {
            setup,
            tight: store,
            inserts: AtomicU64::new(0),
            counters,
        }))
        .run(tokio::time::sleep(Duration::from_secs(5)))
        .await;
    let problems = report.problems();
    eprintln!("{report}\n{problems}");
    assert!(!problems.contains("lost:"), "{problems}");
    match report.check_linearizability("attack-mysql-timeouts", "timeouts") {
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

/// Owners that collations fold together (Unicode normalisation forms, `ß`/`ss`, a trailing
/// NUL or space, 4-byte characters, the empty string) stay apart: each lists, reads back and
/// revokes exactly its own session.
#[tokio::test]
async fn owners_that_collations_fold_stay_apart() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    let owners = [
        "\u{e9}",
        "e\u{301}",
        "user",
        "user\0",
        "user ",
        "user\t",
        "\u{1F600}",
        "\u{1F600} ",
        "",
        "\u{df}",
        "ss",
        "I",
        "\u{131}",
        "\u{130}",
        "i",
    ];
    let mut ids = Vec::new();
    for owner in owners {
        let mut record = Record::new(in_an_hour());
        record.set_owner(Some(owner.to_owned()));
        store.create(&mut record).await.unwrap();
        let back = store.get(record.id()).await.unwrap().unwrap();
        assert_eq!(back.owner(), Some(owner), "owner {owner:?} read back");
        ids.push(record.id().clone());
    }
    for (owner, id) in owners.iter().zip(&ids) {
        let listed = store.list_by_owner(owner).await.unwrap();
        let listed: Vec<_> = listed.iter().map(|record| record.id().clone()).collect();
        assert_eq!(listed, vec![id.clone()], "owner {owner:?}");
    }
    // Every one of them is UTF-8, so the write guard (which refuses other owners) lets
    // conditional writes through.
    for (owner, id) in owners.iter().zip(ids.iter_mut()) {
        let mut record = store.get(id).await.unwrap().unwrap();
        record.insert("seen", true).unwrap();
        store.update(&mut record).await.unwrap();
        assert!(store.touch(id, in_an_hour()).await.unwrap(), "{owner:?}");
        let to = SessionId::generate();
        let moved = store.rename(id, &to).await.unwrap();
        assert_eq!(moved, session_core::Rename::Moved, "{owner:?}");
        *id = to;
    }
    for (owner, id) in owners.iter().zip(&ids) {
        assert_eq!(store.destroy_by_owner(owner).await.unwrap(), 1, "{owner:?}");
        assert!(store.get(id).await.unwrap().is_none());
    }
    assert_eq!(store.count().await.unwrap(), 0);
}

/// A row whose owner is not UTF-8 (written by raw SQL: the column is `VARBINARY`) doesn't
/// decode, so every method but `set` and `destroy` must leave it as it is: `touch`,
/// `update` and `rename` report it missing (or a decode error) rather than act on it.
#[tokio::test]
async fn a_row_whose_owner_is_not_utf8_is_left_as_it_is() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    let id = SessionId::generate();
    let expires = in_an_hour_millis();
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, owner, format) \
         VALUES (?, '{{}}', ?, ?, 1, UNHEX('FF80'), 1)",
        store.table()
    );
    sqlx::query(&sql)
        .bind(id.expose())
        .bind(expires)
        .bind(unix_millis(now()))
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.get(&id).await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");

    let mut record = Record::with_id(id.clone(), in_an_hour() + time::Duration::hours(5));
    record.set_version(1);
    let updated = store.update(&mut record).await;
    assert!(
        matches!(updated, Err(Error::Conflict { .. } | Error::Decode { .. })),
        "update acted on a corrupt row: {updated:?}"
    );
    let touched = store
        .touch(&id, in_an_hour() + time::Duration::hours(9))
        .await;
    assert!(
        matches!(touched, Ok(false) | Err(Error::Decode { .. })),
        "touch acted on a corrupt row: {touched:?}"
    );
    let to = SessionId::generate();
    let renamed = store.rename(&id, &to).await;
    assert!(
        matches!(
            renamed,
            Ok(session_core::Rename::SourceMissing) | Err(Error::Decode { .. })
        ),
        "rename acted on a corrupt row: {renamed:?}"
    );
    let sql = format!(
        "SELECT expires_at, version FROM {} WHERE id = ?",
        store.table()
    );
    let row = sqlx::query(&sql)
        .bind(id.expose())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        row.get::<i64, _>(0),
        expires,
        "the corrupt row's expiry changed"
    );
    assert_eq!(row.get::<i64, _>(1), 1, "the corrupt row's version changed");
}

/// Data just under `max_allowed_packet`, where the statement's own bytes decide whether it
/// fits: every write either succeeds and reads back equal, or is an `Encode` error that
/// wrote nothing; and the store keeps working afterwards (the server drops the connection
/// that sent a too-large packet).
#[tokio::test]
async fn data_around_max_allowed_packet_is_all_or_nothing() {
    let Some(_) = url() else { return };
    let store = fresh_store(
        StoreOptions {
            max_payload_bytes: usize::MAX,
            timeout: Duration::from_secs(30),
            ..StoreOptions::default()
        },
        |b| b.max_connections(2),
    )
    .await;
    let packet: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let (mut written, mut refused) = (0, 0);
    for under in [40i64, 90, 130, 170, 220, 300, 600] {
        let size = (packet - under) as usize;
        let mut record = Record::new(in_an_hour());
        record.insert("b", "x".repeat(size)).unwrap();
        let before = rows_in(&store).await;
        match store.insert(&mut record).await {
            Ok(true) => {
                written += 1;
                let back = store.get(record.id()).await.unwrap().unwrap();
                assert_eq!(back, record, "{under} under the packet");
                // The same size again through update and set.
                record.insert("b", "y".repeat(size)).unwrap();
                match store.update(&mut record).await {
                    Ok(()) => assert_eq!(store.get(record.id()).await.unwrap().unwrap(), record),
                    Err(err) => assert!(matches!(err, Error::Encode { .. }), "{under}: {err}"),
                }
                let mut fresh = record.clone();
                match store.set(&mut fresh).await {
                    Ok(()) => assert_eq!(store.get(record.id()).await.unwrap().unwrap(), fresh),
                    Err(err) => assert!(matches!(err, Error::Encode { .. }), "{under}: {err}"),
                }
                store.destroy(record.id()).await.unwrap();
            }
            Ok(false) => panic!("a fresh id was taken"),
            Err(err) => {
                refused += 1;
                assert!(matches!(err, Error::Encode { .. }), "{under}: {err}");
                assert_eq!(rows_in(&store).await, before);
            }
        }
        // Still working.
        let mut small = Record::new(in_an_hour());
        store.create(&mut small).await.unwrap();
        assert!(store.get(small.id()).await.unwrap().is_some());
    }
    eprintln!("around max_allowed_packet ({packet}): {written} written, {refused} refused");
}

/// `set` returns the stored version through `LAST_INSERT_ID(..)` in its UPDATE. Setting an
/// already expired record twice, both times at version 0, makes the second UPDATE write
/// exactly the values the row holds (an unchanged row, still "found"): the version must
/// still come back.
#[tokio::test]
async fn set_of_an_unchanged_expired_row_still_returns_its_version() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    for _ in 0..20 {
        let mut record = Record::new(now() - time::Duration::minutes(5));
        record.insert("k", 1).unwrap();
        let mut first = record.clone();
        store.set(&mut first).await.unwrap();
        assert_eq!(first.version(), 1);
        let mut second = record.clone();
        store.set(&mut second).await.unwrap();
        assert_eq!(second.version(), 1);
        assert!(store.get(record.id()).await.unwrap().is_none());
    }
}

/// Four inserts of one id holding an expired row, racing a `destroy` and a purge: whatever
/// the order, the first insert to take effect finds the id free or expired, so at least one
/// writes, and the session then read is one of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_over_an_expired_row_racing_destroy_and_purge_never_all_lose() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b.max_connections(8)).await;
    for round in 0..300u32 {
        let id = SessionId::generate();
        expired_row(&store, &id).await;
        let mut inserts = Vec::new();
        for n in 0..4 {
            let (store, id) = (store.clone(), id.clone());
            inserts.push(tokio::spawn(async move {
                let mut record = Record::with_id(id, in_an_hour());
                record.insert("n", n).unwrap();
                store.insert(&mut record).await.unwrap()
            }));
        }
        let (destroyer, purger) = (store.clone(), store.clone());
        let id2 = id.clone();
        let others = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(u64::from(round % 5) * 200)).await;
            let (destroyed, purged) =
                tokio::join!(destroyer.destroy(&id2), purger.delete_expired());
            destroyed.unwrap();
            purged.unwrap();
        });
        let mut wins = 0;
        for insert in inserts {
            wins += usize::from(insert.await.unwrap());
        }
        others.await.unwrap();
        assert!(
            wins >= 1,
            "round {round}: every insert lost on an id never live"
        );
    }
}

/// Touches racing each other and a reader right up to a session's deadline: no read ever
/// shows an expiry past the deadline or an expired session, and once the deadline passed
/// every touch returns `false` and the session stays gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touches_up_to_the_deadline_never_pass_it() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b.max_connections(6)).await;
    for _ in 0..5 {
        let deadline = now() + time::Duration::milliseconds(300);
        let mut record = Record::new(now() + time::Duration::milliseconds(50));
        record.set_deadline(Some(deadline));
        store.create(&mut record).await.unwrap();
        let id = record.id().clone();
        let mut tasks = Vec::new();
        for n in 0..3i64 {
            let (store, id) = (store.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                while now() < deadline + time::Duration::milliseconds(100) {
                    let started = now();
                    let asked = started + time::Duration::milliseconds(40 + 30 * n);
                    let touched = store.touch(&id, asked).await.unwrap();
                    if started >= deadline {
                        assert!(!touched, "a touch after the deadline found the session");
                    }
                }
            }));
        }
        let reader = {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                while now() < deadline + time::Duration::milliseconds(100) {
                    let before = now();
                    if let Some(found) = store.get(&id).await.unwrap() {
                        assert!(found.expires_at() <= deadline, "past the deadline");
                        assert!(found.expires_at() > before, "an expired session read");
                    }
                }
            })
        };
        for task in tasks {
            task.await.unwrap();
        }
        reader.await.unwrap();
        assert!(store.get(&id).await.unwrap().is_none());
    }
}

/// A reply lost after the server applied a write (the proxy cuts the connection right
/// after the request carrying a marker): the store reports a retryable error, never a
/// conflict (which a silent re-send of the compare-and-swap would meet), and the write
/// applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_is_a_retryable_error_and_the_write_applied_once() {
    let Some(url) = url() else { return };
    let fast = fresh_store(StoreOptions::default(), |b| b).await;
    let proxy =
        integration_tests::proxy::FaultProxy::start(integration_tests::targets::host_port(&url))
            .await
            .unwrap();
    let cut = MysqlStore::builder()
        .table(fast.table_name())
        .options(StoreOptions {
            timeout: Duration::from_secs(5),
            ..Default::default()
        })
        .connect(&integration_tests::targets::with_host_port(
            &url,
            proxy.listen(),
        ))
        .await
        .unwrap();
    for round in 0..10 {
        let mut record = Record::new(in_an_hour());
        fast.create(&mut record).await.unwrap();
        let marker = format!("lost-reply-marker-{round}");
        record.insert("m", &marker).unwrap();
        proxy.arm(&[marker.as_bytes()]);
        let mut sent = record.clone();
        let err = match round % 3 {
            0 => cut.update(&mut sent).await.unwrap_err(),
            1 => cut.set(&mut sent).await.unwrap_err(),
            _ => {
                let mut other = Record::new(in_an_hour());
                other.insert("m", &marker).unwrap();
                let err = cut.insert(&mut other).await.unwrap_err();
                assert!(err.is_retryable(), "{err}");
                let back = fast.get(other.id()).await.unwrap();
                assert!(back.is_none_or(|back| back.version() == 1));
                continue;
            }
        };
        assert!(err.is_retryable(), "round {round}: {err}");
        assert!(
            !matches!(err, Error::Conflict { .. }),
            "round {round}: re-sent"
        );
        assert_eq!(
            sent.version(),
            record.version(),
            "a failed write advanced the record"
        );
        let back = fast.get(record.id()).await.unwrap().unwrap();
        assert!(
            back.version() <= 2,
            "round {round}: applied twice ({})",
            back.version()
        );
    }
    assert!(proxy.cuts() >= 10, "cuts: {}", proxy.cuts());
}

/// The tight-timeout store, except for the workload's first inserts (its counters, which
/// it requires to succeed, "before any fault"): those go through the default timeout, so a
/// busy machine can't fail the run before it starts.
#[derive(Debug)]
struct TightAfterSetup {
    setup: MysqlStore,
    tight: MysqlStore,
    inserts: AtomicU64,
    counters: u64,
}

#[async_trait]
impl SessionStore for TightAfterSetup {
    async fn get(&self, id: &SessionId) -> session_core::Result<Option<Record>> {
        self.tight.get(id).await
    }
    async fn insert(&self, record: &mut Record) -> session_core::Result<bool> {
        if self.inserts.fetch_add(1, Ordering::Relaxed) < self.counters {
            return self.setup.insert(record).await;
        }
        self.tight.insert(record).await
    }
    async fn set(&self, record: &mut Record) -> session_core::Result<()> {
        self.tight.set(record).await
    }
    async fn update(&self, record: &mut Record) -> session_core::Result<()> {
        self.tight.update(record).await
    }
    async fn touch(&self, id: &SessionId, at: time::OffsetDateTime) -> session_core::Result<bool> {
        self.tight.touch(id, at).await
    }
    async fn destroy(&self, id: &SessionId) -> session_core::Result<()> {
        self.tight.destroy(id).await
    }
    async fn rename(
        &self,
        from: &SessionId,
        to: &SessionId,
    ) -> session_core::Result<session_core::Rename> {
        self.tight.rename(from, to).await
    }
    async fn delete_expired(&self) -> session_core::Result<u64> {
        self.tight.delete_expired().await
    }
    async fn list_by_owner(&self, owner: &str) -> session_core::Result<Vec<Record>> {
        self.tight.list_by_owner(owner).await
    }
    async fn destroy_by_owner(&self, owner: &str) -> session_core::Result<u64> {
        self.tight.destroy_by_owner(owner).await
    }
    async fn count(&self) -> session_core::Result<u64> {
        self.tight.count().await
    }
    fn timeout(&self) -> Duration {
        self.tight.timeout()
    }
}

// ---------------------------------------------------------------------------------------
// The suite, with its waiting cases overlapped

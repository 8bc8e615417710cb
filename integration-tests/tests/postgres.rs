//! session-postgres on a real server: the conformance suite, fault tests (a server killed
//! and restarted, an exhausted pool, corrupt rows, oversized payloads, bad names), `EXPLAIN`
//! proofs that every lookup uses an index, and (ignored) the cost of a 100,000-row purge.
//!
//! The server comes from `SESSION_STORES_POSTGRES_URL` (see `integration_tests::server_url`).
//! The restart test starts a throwaway cluster of its own with `initdb`/`pg_ctl`.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration_tests::proxy::slow_store;
use integration_tests::servers::{DedicatedServer, PostgresServer};
use integration_tests::{Backend, Skip, in_an_hour, server_url};
use serde_json::json;
use session_core::conformance::{Harness, Unrun};
use session_core::{
    CorruptPolicy, Error, Record, SessionId, SessionStore, StoreOptions, async_trait, now,
};
use session_postgres::sqlx::{self, Row};
use session_postgres::{PgPool, PostgresStore};

/// The schema every test table lives in; emptied once per test binary.
const SCHEMA: &str = "conformance";

// ---------------------------------------------------------------------------------------
// Harness

/// Fresh tables in the `conformance` schema, one per store.
struct PgHarness;

#[async_trait]
impl Harness for PgHarness {
    type Store = PostgresStore;

    async fn available(&self) -> Result<(), Skip> {
        server_url(Backend::Postgres).map(drop)
    }

    async fn store(&self, options: StoreOptions) -> PostgresStore {
        fresh_store(options, |b| b).await
    }

    async fn write_corrupt(&self, store: &PostgresStore, id: &SessionId) -> Result<(), Skip> {
        // Valid JSON, but not an object: only the decoding can notice.
        raw_row(
            store,
            id,
            "'[1,2]'::json",
            "now() + interval '1 hour'",
            1,
            1,
        )
        .await;
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<PostgresStore, Unrun> {
        let url = server_url(Backend::Postgres).map_err(Unrun::Skip)?;
        Ok(slow_store(&url, options, |url, options| async move {
            let store = fresh_store_at(&url, options, |b| b.max_connections(2)).await;
            // Connected and migrated while the proxy is still fast.
            store.count().await.unwrap();
            store
        })
        .await)
    }
}

/// The suite, in a module of its own so that a run can pick it (`-- conformance::`), as the
/// Docker step of `scripts/test` does.
mod conformance {
    use super::*;
    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| PgHarness);
    }
}

/// The suite again in the express-session format (connect-pg-simple's table, see
/// `session_postgres::Format`); the live Node test is `express_postgres.rs`.
mod express {
    use super::*;

    /// [`PgHarness`]'s server, with tables in connect-pg-simple's layout.
    struct ExpressHarness;

    #[async_trait]
    impl Harness for ExpressHarness {
        type Store = PostgresStore;

        async fn available(&self) -> Result<(), Skip> {
            server_url(Backend::Postgres).map(drop)
        }

        async fn store(&self, options: StoreOptions) -> PostgresStore {
            fresh_store(options, |b| b.express_session()).await
        }

        async fn write_corrupt(&self, store: &PostgresStore, id: &SessionId) -> Result<(), Skip> {
            // Valid JSON, but not an express-session object: only the decoding can notice.
            let sql = format!(
                "INSERT INTO {} (sid, sess, expire) \
                 VALUES ($1, '[1,2]'::json, (now() + interval '1 hour') AT TIME ZONE 'UTC')",
                store.table()
            );
            sqlx::query(&sql)
                .bind(id.expose())
                .execute(store.pool())
                .await
                .unwrap();
            Ok(())
        }

        async fn slow_store(&self, options: StoreOptions) -> Result<PostgresStore, Unrun> {
            let url = server_url(Backend::Postgres).map_err(Unrun::Skip)?;
            Ok(slow_store(&url, options, |url, options| async move {
                let store =
                    fresh_store_at(&url, options, |b| b.max_connections(2).express_session()).await;
                store.count().await.unwrap();
                store
            })
            .await)
        }
    }

    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| ExpressHarness);
    }

    #[tokio::test]
    async fn scan() {
        let Some(_) = url() else { return };
        let store = ExpressHarness.store(StoreOptions::default()).await;
        session_core::conformance::check_scan(&store).await;
    }
}

// ---------------------------------------------------------------------------------------
// Scans

/// [`ScanSessions`](session_core::ScanSessions): every live session, whole, page by page.
#[tokio::test]
async fn scan() {
    let Some(_) = url() else { return };
    let store = PgHarness.store(StoreOptions::default()).await;
    session_core::conformance::check_scan(&store).await;
}

/// A scan counts rows that don't decode (data not an object, an id that is no session id,
/// an unknown format) and goes on past them, returning every live session once.
#[tokio::test]
async fn scan_counts_corrupt_rows_and_goes_on() {
    use session_core::{ScanCursor, ScanSessions};

    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    let mut expected = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let mut record = Record::new(in_an_hour());
        store.create(&mut record).await.unwrap();
        expected.insert(record.id().expose().to_owned());
    }
    let hour = "now() + interval '1 hour'";
    raw_row(&store, &SessionId::generate(), "'[1,2]'::json", hour, 1, 1).await;
    raw_row(&store, &SessionId::generate(), "'{}'::json", hour, 1, 99).await;
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, format) \
         VALUES ('not a session id', '{{}}'::json, {hour}, now(), 1, 1)",
        store.table()
    );
    sqlx::query(&sql).execute(store.pool()).await.unwrap();
    // Expired and corrupt: neither returned nor counted.
    let expired = "now() - interval '1 hour'";
    raw_row(&store, &SessionId::generate(), "'[1]'::json", expired, 1, 1).await;

    for limit in [1, 3, 100] {
        let (mut found, mut corrupt) = (Vec::new(), 0);
        let mut cursor = Some(ScanCursor::start());
        while let Some(at) = cursor {
            let page = store.scan(&at, limit).await.unwrap();
            found.extend(page.records.iter().map(|r| r.id().expose().to_owned()));
            corrupt += page.corrupt;
            cursor = page.next;
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
        assert_eq!(corrupt, 3, "pages of {limit}: the three corrupt rows");
    }
}

fn url() -> Option<String> {
    match server_url(Backend::Postgres) {
        Ok(url) => Some(url),
        Err(Skip(reason)) => {
            session_core::conformance::skip("a PostgreSQL test", &reason);
            None
        }
    }
}

/// A table name no other store in this run uses: `s<pid>_<n>`.
fn unique_table() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "s{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Drops the tables earlier runs left in the test schema (once per binary).
async fn clean_schema_once(pool: &PgPool) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let mine = format!("s{}\\_%", std::process::id());
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tablename NOT LIKE $2",
        )
        .bind(SCHEMA)
        .bind(&mine)
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        for table in old {
            // Names come from pg_tables and are quoted; test tables only.
            let drop = format!(
                "DROP TABLE IF EXISTS \"{SCHEMA}\".\"{}\"",
                table.replace('"', "\"\"")
            );
            sqlx::query(&drop).execute(pool).await.ok();
        }
    })
    .await;
}

async fn fresh_store(
    options: StoreOptions,
    configure: impl FnOnce(
        session_postgres::PostgresStoreBuilder,
    ) -> session_postgres::PostgresStoreBuilder,
) -> PostgresStore {
    let url = server_url(Backend::Postgres).unwrap();
    fresh_store_at(&url, options, configure).await
}

/// [`fresh_store`] on the server at `url`.
async fn fresh_store_at(
    url: &str,
    options: StoreOptions,
    configure: impl FnOnce(
        session_postgres::PostgresStoreBuilder,
    ) -> session_postgres::PostgresStoreBuilder,
) -> PostgresStore {
    let builder = PostgresStore::builder()
        .schema(SCHEMA)
        .table(unique_table())
        .options(options);
    let store = configure(builder).connect(url).await.unwrap();
    store.migrate().await.unwrap();
    clean_schema_once(store.pool()).await;
    store
}

/// Writes a row by hand: `data` and `expires_at` are SQL expressions (test constants).
async fn raw_row(
    store: &PostgresStore,
    id: &SessionId,
    data: &str,
    expires_at: &str,
    version: i64,
    format: i32,
) {
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, owner, format) \
         VALUES ($1, {data}, {expires_at}, now(), $2, 'corrupt-owner', $3)",
        store.table()
    );
    sqlx::query(&sql)
        .bind(id.expose())
        .bind(version)
        .bind(format)
        .execute(store.pool())
        .await
        .unwrap();
}

async fn rows_in(store: &PostgresStore) -> i64 {
    let sql = format!("SELECT count(*) FROM {}", store.table());
    sqlx::query_scalar(&sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Schema, names, migration

#[tokio::test]
async fn bad_names_and_urls_are_config_errors() {
    let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    for (schema, table) in [
        ("public", "Sessions"),
        ("public", "sessions; drop table users"),
        ("public", "1sessions"),
        ("public", ""),
        ("public", "a\"b"),
        ("bad-schema", "sessions"),
        ("pg_catalog", "sessions"),
        ("public", &"x".repeat(64)),
    ] {
        let built = PostgresStore::builder()
            .schema(schema)
            .table(table)
            .build(pool.clone());
        assert!(
            matches!(built, Err(Error::Config(_))),
            "{schema:?}.{table:?} was accepted"
        );
    }
    let lazy = PostgresStore::builder().connect_lazy("not a url");
    assert!(matches!(lazy, Err(Error::Config(_))), "{lazy:?}");
    let ok = PostgresStore::builder()
        .schema("app_1")
        .table("_s")
        .build(pool)
        .unwrap();
    assert_eq!(ok.table(), "\"app_1\".\"_s\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_is_idempotent_and_concurrent_safe() {
    let Some(url) = url() else { return };
    let table = unique_table();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = PostgresStore::builder()
            .schema(SCHEMA)
            .table(&table)
            .connect_lazy(&url)
            .unwrap();
        tasks.push(tokio::spawn(async move { store.migrate().await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let store = PostgresStore::builder()
        .schema(SCHEMA)
        .table(&table)
        .connect(&url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let sql = store.migration_sql();
    assert!(
        sql.contains("CREATE SCHEMA IF NOT EXISTS \"conformance\""),
        "{sql}"
    );
    let mut record = Record::new(in_an_hour());
    store.create(&mut record).await.unwrap();
    assert!(store.get(record.id()).await.unwrap().is_some());
    // Applying the printed SQL by hand is a no-op too.
    sqlx::raw_sql(&sql).execute(store.pool()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 1);
}

#[tokio::test]
async fn the_default_public_schema_needs_no_create_schema() {
    let Some(url) = url() else { return };
    let store = PostgresStore::builder()
        .table(unique_table())
        .connect(&url)
        .await
        .unwrap();
    assert!(
        store.table().starts_with("\"public\"."),
        "{}",
        store.table()
    );
    assert!(!store.migration_sql().contains("CREATE SCHEMA"));
    store.migrate().await.unwrap();
    let mut record = Record::new(in_an_hour());
    store.create(&mut record).await.unwrap();
    assert_eq!(store.get(record.id()).await.unwrap().unwrap(), record);
    let drop = format!("DROP TABLE {}", store.table());
    sqlx::query(&drop).execute(store.pool()).await.unwrap();
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
        123456.789e3
    ]);
    let mut record = Record::new(in_an_hour());
    record.insert("numbers", &numbers).unwrap();
    record
        .insert("text", "Zoë 🦀 \"quoted\" \\ \n\t \u{7f} \u{1F600}")
        .unwrap();
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

    // U+0000 (which jsonb could not hold) and a float jsonb turned into an integer (1e18)
    // come back as written.
    let mut odd = Record::new(in_an_hour());
    odd.insert("nul", "a\u{0}b").unwrap();
    odd.insert("float", 1e18_f64).unwrap();
    odd.insert("negative_zero", -0.0_f64).unwrap();
    store.create(&mut odd).await.unwrap();
    let back = store.get(odd.id()).await.unwrap().unwrap();
    assert_eq!(back.data(), odd.data(), "{:?}", back.data().get("float"));
    assert!(
        back.data()["float"].is_f64(),
        "1e18 came back as an integer"
    );
    assert_eq!(store.count().await.unwrap(), 3);
}

// ---------------------------------------------------------------------------------------
// Races: the single statements and the rename transaction under concurrency

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

    // 16 cycle_ids of one session, racing updates of it: one move, never two copies, and
    // an update either lands before the move (and moves with it) or conflicts.
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
}

// ---------------------------------------------------------------------------------------
// Corrupt rows and oversized payloads

#[tokio::test]
async fn corrupt_rows_are_decode_errors_naming_the_id() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    let live = "now() + interval '1 hour'";
    let cases: [(&str, &str, i64, i32); 9] = [
        ("'[1,2]'::json", live, 1, 1),
        ("'\"text\"'::json", live, 1, 1),
        ("'42'::json", live, 1, 1),
        ("'null'::json", live, 1, 1),
        ("'true'::json", live, 1, 1),
        ("'{}'::json", live, 1, 99),
        ("'{}'::json", live, 1, -1),
        ("'{}'::json", live, -5, 1),
        ("'{}'::json", "'infinity'::timestamptz", 1, 1),
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
        // The row is left as it was, for repair.
        ids.push(id);
    }
    assert_eq!(rows_in(&store).await, ids.len() as i64);
    let err = store.list_by_owner("corrupt-owner").await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");

    // The same rows through a lenient store on the same table read as absent.
    let lenient = PostgresStore::builder()
        .schema(SCHEMA)
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
    assert_eq!(
        lenient.destroy_by_owner("corrupt-owner").await.unwrap(),
        ids.len() as u64
    );
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
    let strict = PostgresStore::builder()
        .schema(SCHEMA)
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

// ---------------------------------------------------------------------------------------
// EXPLAIN: every lookup uses an index

async fn plan(
    store: &PostgresStore,
    statement: &str,
    bind: impl FnOnce(
        sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> String {
    let sql = format!("EXPLAIN {}", store.statement_sql(statement).unwrap());
    let rows = bind(sqlx::query(&sql))
        .fetch_all(store.pool())
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn explain_shows_index_use() {
    let Some(_) = url() else { return };
    let store = fresh_store(StoreOptions::default(), |b| b).await;
    // 20,000 live sessions over 2,000 owners (and some without), 100 expired ones.
    let fill = format!(
        "INSERT INTO {t} (id, data, expires_at, created_at, version, owner, format) \
         SELECT 'explain-' || lpad(g::text, 24, '0'), '{{}}'::json, \
                now() + CASE WHEN g <= 100 THEN interval '-1 hour' ELSE interval '1 hour' END, \
                now(), 1, CASE WHEN g % 3 = 0 THEN NULL ELSE 'owner-' || (g % 2000) END, 1 \
         FROM generate_series(1, 20000) g",
        t = store.table()
    );
    sqlx::query(&fill).execute(store.pool()).await.unwrap();
    sqlx::query(&format!("ANALYZE {}", store.table()))
        .execute(store.pool())
        .await
        .unwrap();
    let [pkey, expires, owner] = store.index_names();
    let id = "explain-000000000000000000000500";
    let by_id = [&pkey];
    let cases = [
        (
            "get",
            plan(&store, "get", |q| q.bind(id).bind(now())).await,
            &by_id[..],
        ),
        (
            "touch",
            plan(&store, "touch", |q| {
                q.bind(id).bind(in_an_hour()).bind(now())
            })
            .await,
            &by_id,
        ),
        (
            "rename_move",
            plan(&store, "rename_move", |q| {
                q.bind(id).bind("explain-new").bind(now())
            })
            .await,
            &by_id,
        ),
        (
            "rename_take_expired",
            plan(&store, "rename_take_expired", |q| q.bind(id).bind(now())).await,
            &by_id,
        ),
        (
            "destroy",
            plan(&store, "destroy", |q| q.bind(id)).await,
            &by_id,
        ),
        (
            "purge_batch",
            plan(&store, "purge_batch", |q| {
                q.bind(1000_i64).bind(None::<String>).bind(now())
            })
            .await,
            &[&expires, &pkey],
        ),
        (
            "purge_batch (a later batch)",
            plan(&store, "purge_batch", |q| {
                q.bind(1000_i64)
                    .bind(Some("2020-01-01 00:00:00+00"))
                    .bind(now())
            })
            .await,
            &[&expires, &pkey],
        ),
        (
            "list_by_owner",
            plan(&store, "list_by_owner", |q| q.bind("owner-7").bind(now())).await,
            &[&owner],
        ),
        (
            "scan",
            plan(&store, "scan", |q| q.bind("").bind(now()).bind(100_i64)).await,
            &by_id,
        ),
        (
            "scan (a later page)",
            plan(&store, "scan", |q| q.bind(id).bind(now()).bind(100_i64)).await,
            &by_id,
        ),
        (
            "destroy_by_owner",
            plan(&store, "destroy_by_owner", |q| {
                q.bind("owner-7").bind(now())
            })
            .await,
            &[&owner],
        ),
    ];
    for (name, plan, indexes) in cases {
        eprintln!("--- {name}\n{plan}");
        for index in indexes {
            assert!(
                plan.contains(index.as_str()),
                "{name} does not use {index}:\n{plan}"
            );
        }
        assert!(
            !plan.contains("Seq Scan"),
            "{name} scans the table:\n{plan}"
        );
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
async fn insert_expired(store: &PostgresStore, rows: i64) {
    let sql = format!(
        "INSERT INTO {} (id, data, expires_at, created_at, version, format) \
         SELECT 'expired-' || md5(random()::text || g::text), '{{\"k\":1}}'::json, \
                now() - interval '1 second' - g * interval '10 milliseconds', now(), 1, 1 \
         FROM generate_series(1, $1) g",
        store.table()
    );
    sqlx::query(&sql)
        .bind(rows)
        .execute(store.pool())
        .await
        .unwrap();
}

/// `cargo test -p integration-tests --test postgres -- --ignored --nocapture purge_cost`
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
        insert_expired(&store, 100_000).await;
        let mut live = Record::new(in_an_hour());
        store.create(&mut live).await.unwrap();
        sqlx::query(&format!("VACUUM ANALYZE {}", store.table()))
            .execute(store.pool())
            .await
            .unwrap();
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
// A dedicated cluster, killed and restarted

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_gives_retryable_errors_then_the_store_recovers() {
    let cluster = match tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .unwrap()
    {
        Ok(cluster) => cluster,
        Err(reason) => {
            return session_core::conformance::skip(
                "the restart test (cannot start a throwaway PostgreSQL)",
                &reason,
            );
        }
    };
    let timeout = Duration::from_secs(1);
    let store = PostgresStore::builder()
        .options(StoreOptions {
            timeout,
            ..Default::default()
        })
        .max_connections(4)
        .connect(&cluster.url())
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

    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.kill().map(|()| cluster)
    })
    .await
    .unwrap()
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
    let started = Instant::now();
    let err = store.get(record.id()).await.unwrap_err();
    assert!(
        started.elapsed() < timeout + margin,
        "one call took {:?}",
        started.elapsed()
    );
    assert!(err.is_retryable(), "{err}");

    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.restart().map(|()| cluster)
    })
    .await
    .unwrap()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
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
    drop(cluster);
}

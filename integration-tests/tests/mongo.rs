//! session-mongo against a MongoDB-protocol server (`SESSION_STORES_MONGO_URL`; FerretDB in
//! `scripts/test`): the conformance suite in interval mode, the suite in native TTL mode
//! when the server has TTL indexes, and fault tests (server killed and restarted, corrupt
//! documents, integers BSON can't hold, operator injection).

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::time::Duration as StdDuration;

use integration_tests::proxy::slow_store;
use integration_tests::{Backend, Skip, server_url};
use serde_json::json;
use session_core::conformance::{Harness, Unrun};
use session_core::{Error, Record, SessionId, SessionStore, StoreOptions, async_trait, now};
use session_mongo::mongodb::bson::{Bson, DateTime, Document, doc};
use session_mongo::{ExpiryMode, MongoConfig, MongoStore};
use time::Duration;

/// Every test collection lives here; each store gets a collection of its own.
const TEST_DATABASE: &str = "session_mongo_tests";

fn unique_collection() -> String {
    format!("sessions_{}", SessionId::generate().expose())
}

use session_core::conformance::skip as skip_or_fail;

/// A store on a fresh collection of the test server, or `None` (after printing why) when no
/// server is configured.
async fn store_on_server(
    test: &str,
    expiry: ExpiryMode,
    options: StoreOptions,
) -> Option<MongoStore> {
    let url = match server_url(Backend::Mongo) {
        Ok(url) => url,
        Err(Skip(reason)) => {
            skip_or_fail(test, &reason);
            return None;
        }
    };
    Some(connect(&url, expiry, options).await.unwrap())
}

async fn connect(
    url: &str,
    expiry: ExpiryMode,
    options: StoreOptions,
) -> session_core::Result<MongoStore> {
    let config = MongoConfig {
        database: Some(
            integration_tests::mongo_test_database(url, TEST_DATABASE)
                .await
                .into(),
        ),
        collection: Some(unique_collection()),
        expiry,
        options,
        ..MongoConfig::default()
    };
    MongoStore::connect(url, config).await
}

/// A document that matches the live filter but can't be decoded: `data` is a string.
async fn write_garbage(store: &MongoStore, id: &SessionId) {
    let created = DateTime::from_millis(session_core::unix_millis(now()));
    let later = DateTime::from_millis(session_core::unix_millis(now() + Duration::hours(1)));
    store
        .collection()
        .insert_one(doc! {
            "_id": id.expose(), "data": "garbage", "expires_at": later, "created_at": created,
            "version": 1_i64, "format": 1, "owner": "corrupt-owner",
        })
        .await
        .unwrap();
}

async fn raw(store: &MongoStore, id: &SessionId) -> Option<Document> {
    store
        .collection()
        .find_one(doc! { "_id": id.expose() })
        .await
        .unwrap()
}

/// The suite in [`ExpiryMode::Interval`], which works on every MongoDB-protocol server.
mod interval {
    use super::*;

    pub struct IntervalHarness;

    #[async_trait]
    impl Harness for IntervalHarness {
        type Store = MongoStore;

        async fn available(&self) -> Result<(), Skip> {
            server_url(Backend::Mongo).map(drop)
        }

        async fn store(&self, options: StoreOptions) -> MongoStore {
            let url = server_url(Backend::Mongo).unwrap();
            let options = integration_tests::mongo_suite_options(options);
            connect(
                &url,
                ExpiryMode::Interval(StdDuration::from_secs(30)),
                options,
            )
            .await
            .unwrap()
        }

        async fn write_corrupt(&self, store: &MongoStore, id: &SessionId) -> Result<(), Skip> {
            write_garbage(store, id).await;
            Ok(())
        }

        async fn slow_store(&self, options: StoreOptions) -> Result<MongoStore, Unrun> {
            let url = server_url(Backend::Mongo).map_err(Unrun::Skip)?;
            Ok(slow_store(&url, options, |url, options| async move {
                connect(&url, ExpiryMode::Disabled, options).await.unwrap()
            })
            .await)
        }
    }

    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| IntervalHarness);
    }
}

/// The suite in [`ExpiryMode::Native`] (a TTL index), only on a server that has TTL indexes.
mod native {
    use super::*;

    pub struct NativeHarness;

    #[async_trait]
    impl Harness for NativeHarness {
        type Store = MongoStore;

        async fn available(&self) -> Result<(), Skip> {
            server_url(Backend::Mongo).map(drop)
        }

        async fn applies(&self) -> Result<(), String> {
            native_supported().await
        }

        async fn store(&self, options: StoreOptions) -> MongoStore {
            let url = server_url(Backend::Mongo).unwrap();
            let options = integration_tests::mongo_suite_options(options);
            connect(&url, ExpiryMode::Native, options).await.unwrap()
        }

        async fn write_corrupt(&self, store: &MongoStore, id: &SessionId) -> Result<(), Skip> {
            write_garbage(store, id).await;
            Ok(())
        }

        async fn slow_store(&self, options: StoreOptions) -> Result<MongoStore, Unrun> {
            let url = server_url(Backend::Mongo).map_err(Unrun::Skip)?;
            Ok(slow_store(&url, options, |url, options| async move {
                connect(&url, ExpiryMode::Native, options).await.unwrap()
            })
            .await)
        }
    }

    /// `Ok` when the native suite should run: `SESSION_STORES_MONGO_NATIVE=1`, or a server
    /// that is not FerretDB (whose `buildInfo` carries `ferretdbVersion`).
    async fn native_supported() -> Result<(), String> {
        let url = server_url(Backend::Mongo).map_err(|Skip(reason)| reason)?;
        if std::env::var("SESSION_STORES_MONGO_NATIVE").is_ok_and(|v| v == "1") {
            return Ok(());
        }
        let client = session_mongo::mongodb::Client::with_uri_str(&url)
            .await
            .map_err(|err| err.to_string())?;
        let info = client
            .database("admin")
            .run_command(doc! { "buildInfo": 1 })
            .await
            .map_err(|err| err.to_string())?;
        match info.get("ferretdbVersion") {
            Some(version) => Err(format!(
                "native TTL expiry mode was NOT exercised: the server is FerretDB {version}, \
                 which has no TTL indexes (set SESSION_STORES_MONGO_URL to a real MongoDB, or \
                 make Docker reachable, or force with SESSION_STORES_MONGO_NATIVE=1)"
            )),
            None => Ok(()),
        }
    }

    #[test]
    fn conformance() {
        session_core::conformance::run_suite(|| NativeHarness);
    }

    /// Native mode creates a TTL index where the server has them, and is refused with
    /// advice where it hasn't (FerretDB).
    #[tokio::test]
    async fn native_mode_makes_a_ttl_index_or_is_refused_with_advice() {
        let Ok(url) = server_url(Backend::Mongo) else {
            return skip_or_fail(
                "native_mode_makes_a_ttl_index_or_is_refused_with_advice",
                "no server",
            );
        };
        match connect(&url, ExpiryMode::Native, StoreOptions::default()).await {
            Ok(store) => {
                let indexes: Vec<_> = store.collection().list_index_names().await.unwrap();
                assert!(
                    indexes.iter().any(|name| name == session_mongo::TTL_INDEX),
                    "{indexes:?}"
                );
                store.ensure_indexes().await.unwrap(); // idempotent
            }
            Err(err) => {
                assert!(
                    matches!(err, Error::Config(_)),
                    "expected a config error, got {err}"
                );
                assert!(
                    err.to_string().contains("ExpiryMode::Interval"),
                    "no advice in: {err}"
                );
            }
        }
    }
}

/// [`ScanSessions`](session_core::ScanSessions) on the interval harness's stores.
mod scan {
    use session_core::{ScanCursor, ScanSessions};

    use super::*;

    /// Every live session, whole, page by page.
    #[tokio::test]
    async fn scan() {
        let harness = interval::IntervalHarness;
        if let Err(Skip(reason)) = harness.available().await {
            return skip_or_fail("mongo scan", &reason);
        }
        let store = harness.store(StoreOptions::default()).await;
        session_core::conformance::check_scan(&store).await;
    }

    /// A document an expiry feed's purge claimed (`claimed_until`) is dead, as for `get`,
    /// even with `expires_at` still ahead; a document that doesn't decode is counted and
    /// passed over.
    #[tokio::test]
    async fn scan_skips_claimed_documents_and_counts_corrupt_ones() {
        let Some(store) = store_on_server(
            "scan_skips_claimed_documents_and_counts_corrupt_ones",
            ExpiryMode::Disabled,
            StoreOptions::default(),
        )
        .await
        else {
            return;
        };
        let mut live = Vec::new();
        for _ in 0..3 {
            let mut record = Record::new(now() + Duration::hours(1));
            store.create(&mut record).await.unwrap();
            live.push(record.id().expose().to_owned());
        }
        let mut claimed = Record::new(now() + Duration::hours(1));
        store.create(&mut claimed).await.unwrap();
        let until = DateTime::from_millis(session_core::unix_millis(now() + Duration::hours(1)));
        store
            .collection()
            .update_one(
                doc! { "_id": claimed.id().expose() },
                doc! { "$set": { "claimed_until": until } },
            )
            .await
            .unwrap();
        assert!(store.get(claimed.id()).await.unwrap().is_none());
        write_garbage(&store, &SessionId::generate()).await;

        let (mut found, mut corrupt) = (Vec::new(), 0);
        let mut cursor = Some(ScanCursor::start());
        while let Some(at) = cursor {
            let page = store.scan(&at, 2).await.unwrap();
            found.extend(page.records.iter().map(|r| r.id().expose().to_owned()));
            corrupt += page.corrupt;
            cursor = page.next;
        }
        found.sort();
        live.sort();
        assert_eq!(found, live, "the live sessions, and not the claimed one");
        assert_eq!(corrupt, 1);
    }
}

/// The suite in the express-session format ([`Format::ExpressSession`]: connect-mongo's
/// documents), interval mode, and its scan.
mod express {
    use session_mongo::Format;

    use super::*;

    pub struct ExpressHarness;

    /// A store in the express-session format on a fresh collection.
    pub async fn express_store(expiry: ExpiryMode, options: StoreOptions) -> MongoStore {
        let url = server_url(Backend::Mongo).unwrap();
        let config = MongoConfig {
            database: Some(
                integration_tests::mongo_test_database(&url, TEST_DATABASE)
                    .await
                    .into(),
            ),
            collection: Some(unique_collection()),
            expiry,
            options,
            format: Format::ExpressSession,
            ..MongoConfig::default()
        };
        MongoStore::connect(&url, config).await.unwrap()
    }

    #[async_trait]
    impl Harness for ExpressHarness {
        type Store = MongoStore;

        async fn available(&self) -> Result<(), Skip> {
            server_url(Backend::Mongo).map(drop)
        }

        async fn store(&self, options: StoreOptions) -> MongoStore {
            let options = integration_tests::mongo_suite_options(options);
            express_store(ExpiryMode::Interval(StdDuration::from_secs(30)), options).await
        }

        /// A connect-mongo document, live for an hour, whose `session` is not JSON.
        async fn write_corrupt(&self, store: &MongoStore, id: &SessionId) -> Result<(), Skip> {
            let later =
                DateTime::from_millis(session_core::unix_millis(now() + Duration::hours(1)));
            store
                .collection()
                .insert_one(doc! { "_id": id.expose(), "expires": later, "session": "{not json" })
                .await
                .unwrap();
            Ok(())
        }

        async fn slow_store(&self, options: StoreOptions) -> Result<MongoStore, Unrun> {
            let url = server_url(Backend::Mongo).map_err(Unrun::Skip)?;
            Ok(slow_store(&url, options, |url, options| async move {
                let config = MongoConfig {
                    database: Some(TEST_DATABASE.into()),
                    collection: Some(unique_collection()),
                    expiry: ExpiryMode::Disabled,
                    options,
                    format: Format::ExpressSession,
                    ..MongoConfig::default()
                };
                MongoStore::connect(&url, config).await.unwrap()
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
        if let Err(Skip(reason)) = ExpressHarness.available().await {
            return skip_or_fail("mongo express scan", &reason);
        }
        let store = ExpressHarness.store(StoreOptions::default()).await;
        session_core::conformance::check_scan(&store).await;
    }
}

/// Indexes, pruning, and the failure modes the spec names.
mod behaviour {
    use super::*;

    #[tokio::test]
    async fn indexes_are_created_idempotently() {
        let Some(store) = store_on_server(
            "indexes_are_created_idempotently",
            ExpiryMode::Disabled,
            StoreOptions::default(),
        )
        .await
        else {
            return;
        };
        store.ensure_indexes().await.unwrap();
        store.ensure_indexes().await.unwrap();
        let indexes = store.collection().list_index_names().await.unwrap();
        for name in [session_mongo::OWNER_INDEX, session_mongo::EXPIRES_INDEX] {
            assert!(
                indexes.iter().any(|index| index == name),
                "{name} missing from {indexes:?}"
            );
        }
    }

    #[tokio::test]
    async fn interval_mode_prunes_expired_documents() {
        let expiry = ExpiryMode::Interval(StdDuration::from_millis(200));
        let Some(store) = store_on_server(
            "interval_mode_prunes_expired_documents",
            expiry,
            StoreOptions::default(),
        )
        .await
        else {
            return;
        };
        let mut short = Record::new(now() + Duration::milliseconds(300));
        store.create(&mut short).await.unwrap();
        let mut long = Record::new(now() + Duration::hours(1));
        store.create(&mut long).await.unwrap();
        let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
        while raw(&store, short.id()).await.is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the pruner never removed the expired document"
            );
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
        assert!(
            raw(&store, long.id()).await.is_some(),
            "the pruner removed a live document"
        );
        store.stop_pruner().await;
    }

    #[tokio::test]
    async fn documents_have_the_documented_layout() {
        let Some(store) = store_on_server(
            "documents_have_the_documented_layout",
            ExpiryMode::Disabled,
            StoreOptions::default(),
        )
        .await
        else {
            return;
        };
        let mut record = Record::new(now() + Duration::hours(1));
        record
            .insert("user", json!({"id": 7, "tags": ["a"]}))
            .unwrap();
        record.insert("$where", "escaped").unwrap();
        record.insert("a.b", 1.5).unwrap();
        record.set_owner(Some("user-7".into()));
        record.set_deadline(Some(now() + Duration::hours(2)));
        store.create(&mut record).await.unwrap();
        let stored = raw(&store, record.id()).await.unwrap();
        assert_eq!(stored.get_str("_id").unwrap(), record.id().expose());
        let data = stored.get_document("data").unwrap();
        assert_eq!(data.get_document("user").unwrap().get_i64("id").unwrap(), 7);
        assert_eq!(data.get_str("%24where").unwrap(), "escaped");
        assert_eq!(data.get_f64("a%2Eb").unwrap(), 1.5);
        assert!(matches!(stored.get("expires_at"), Some(Bson::DateTime(_))));
        assert!(matches!(stored.get("deadline"), Some(Bson::DateTime(_))));
        assert!(matches!(stored.get("created_at"), Some(Bson::DateTime(_))));
        assert_eq!(stored.get_i64("version").unwrap(), 1);
        assert_eq!(stored.get_str("owner").unwrap(), "user-7");
        assert_eq!(stored.get_i32("format").unwrap(), 1);
        // Data is queryable on the server.
        let found = store
            .collection()
            .count_documents(doc! { "data.user.id": 7_i64 })
            .await
            .unwrap();
        assert_eq!(found, 1);
        assert_eq!(store.get(record.id()).await.unwrap().unwrap(), record);

        let mut plain = Record::new(now() + Duration::hours(1));
        store.create(&mut plain).await.unwrap();
        let stored = raw(&store, plain.id()).await.unwrap();
        assert!(!stored.contains_key("owner") && !stored.contains_key("deadline"));
    }

    /// Fault (b): a document of the wrong shape is a decode error naming the id; the policy
    /// can treat it as missing; other sessions are unaffected.
    #[tokio::test]
    async fn corrupt_shape_is_a_decode_error_naming_the_id() {
        let Some(store) = store_on_server(
            "corrupt_shape_is_a_decode_error_naming_the_id",
            ExpiryMode::Disabled,
            StoreOptions::default(),
        )
        .await
        else {
            return;
        };
        let id = SessionId::generate();
        write_garbage(&store, &id).await;
        let err = store.get(&id).await.unwrap_err();
        assert!(matches!(&err, Error::Decode { .. }), "{err}");
        assert_eq!(err.session_id(), Some(&id));
        assert!(
            err.to_string().contains("data"),
            "the reason names the field: {err}"
        );
        let err = store.list_by_owner("corrupt-owner").await.unwrap_err();
        assert_eq!(err.session_id(), Some(&id));

        // A newer format is a decode error too, with the upgrade hint from session-core.
        let newer = SessionId::generate();
        let mut record = Record::with_id(newer.clone(), now() + Duration::hours(1));
        store.create(&mut record).await.unwrap();
        store
            .collection()
            .update_one(
                doc! { "_id": newer.expose() },
                doc! { "$set": { "format": 99 } },
            )
            .await
            .unwrap();
        let err = store.get(&newer).await.unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        assert!(
            raw(&store, &id).await.is_some(),
            "a corrupt document must be left in place"
        );
    }

    /// Fault (c): an integer above `i64::MAX` fails with an encode error and writes nothing.
    #[tokio::test]
    async fn u64_above_i64_max_is_an_encode_error_and_nothing_is_written() {
        let Some(store) = store_on_server(
            "u64_above_i64_max_is_an_encode_error_and_nothing_is_written",
            ExpiryMode::Disabled,
            StoreOptions::default(),
        )
        .await
        else {
            return;
        };
        let mut record = Record::new(now() + Duration::hours(1));
        record.insert("big", json!({"nested": [u64::MAX]})).unwrap();
        for err in [
            store.insert(&mut record.clone()).await.unwrap_err(),
            store.create(&mut record.clone()).await.unwrap_err(),
            store.set(&mut record.clone()).await.unwrap_err(),
        ] {
            match &err {
                Error::Encode { id, reason } => {
                    assert_eq!(id, record.id());
                    assert!(reason.contains("data.big.nested[0]"), "{reason}");
                    assert!(reason.contains("i64::MAX"), "{reason}");
                }
                other => panic!("expected an encode error, got {other}"),
            }
        }
        assert!(
            raw(&store, record.id()).await.is_none(),
            "an unencodable record was written"
        );
        assert_eq!(store.count().await.unwrap(), 0);

        // An update of a stored session fails the same way and leaves it as it was.
        let mut stored = Record::new(now() + Duration::hours(1));
        stored.insert("n", 1).unwrap();
        store.create(&mut stored).await.unwrap();
        let mut grown = stored.clone();
        grown.insert("n", u64::MAX).unwrap();
        assert!(matches!(
            store.update(&mut grown).await,
            Err(Error::Encode { .. })
        ));
        assert_eq!(grown.version(), stored.version());
        assert_eq!(store.get(stored.id()).await.unwrap().unwrap(), stored);
        // i64::MAX itself is fine and comes back exactly.
        let mut max = Record::new(now() + Duration::hours(1));
        max.insert("max", i64::MAX).unwrap();
        store.create(&mut max).await.unwrap();
        assert_eq!(
            store
                .get(max.id())
                .await
                .unwrap()
                .unwrap()
                .get::<i64>("max")
                .unwrap(),
            Some(i64::MAX)
        );
    }

    /// Fault (d): ids and owners reach the server only as string values, never as operators.
    #[tokio::test]
    async fn ids_and_owners_cannot_inject_operators() {
        for forged in [
            "{\"$ne\":null}aaaaaaaaaaaaaaaaaaaaaaaa",
            "$gtaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaa.$where",
            "aaaaaaaaaaaaaaaaaaaaaa\u{0}",
        ] {
            assert!(
                SessionId::parse(forged).is_err(),
                "{forged:?} parsed as a session id"
            );
        }
        let Some(store) = store_on_server(
            "ids_and_owners_cannot_inject_operators",
            ExpiryMode::Disabled,
            StoreOptions::default(),
        )
        .await
        else {
            return;
        };
        let mut victim = Record::new(now() + Duration::hours(1));
        victim.set_owner(Some("alice".into()));
        victim.insert("secret", "s").unwrap();
        store.create(&mut victim).await.unwrap();
        // Another valid id matches nothing: the filter is an exact string match.
        let other = SessionId::generate();
        assert!(store.get(&other).await.unwrap().is_none());
        assert!(
            !store
                .touch(&other, now() + Duration::hours(2))
                .await
                .unwrap()
        );
        // Owners that look like operators or patterns are plain strings.
        for owner in ["$ne", "{\"$ne\": null}", ".*", "$exists", "alic"] {
            assert!(
                store.list_by_owner(owner).await.unwrap().is_empty(),
                "owner {owner:?} matched"
            );
            assert_eq!(
                store.destroy_by_owner(owner).await.unwrap(),
                0,
                "owner {owner:?} destroyed"
            );
        }
        // Data keys that look like operators are escaped and come back unchanged.
        let mut tricky = Record::new(now() + Duration::hours(1));
        tricky
            .insert("$set", json!({"$gt": "", "a.b": {"$where": "1"}}))
            .unwrap();
        tricky.insert("%24set", "already escaped-looking").unwrap();
        store.create(&mut tricky).await.unwrap();
        assert_eq!(store.get(tricky.id()).await.unwrap().unwrap(), tricky);
        assert_eq!(store.get(victim.id()).await.unwrap().unwrap(), victim);
        assert_eq!(store.count().await.unwrap(), 2);
    }

    /// `rename` racing with updates of the source never loses an acknowledged update and
    /// never leaves two live copies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cycle_id_racing_updates_loses_nothing() {
        let Some(store) = store_on_server(
            "cycle_id_racing_updates_loses_nothing",
            ExpiryMode::Disabled,
            StoreOptions::default(),
        )
        .await
        else {
            return;
        };
        for _ in 0..10 {
            let mut record = Record::new(now() + Duration::hours(1));
            record.insert("n", 0).unwrap();
            store.create(&mut record).await.unwrap();
            let writer = {
                let store = store.clone();
                let mut record = record.clone();
                tokio::spawn(async move {
                    let mut acknowledged = 0;
                    for n in 1..=5 {
                        record.insert("n", n).unwrap();
                        match store.update(&mut record).await {
                            Ok(()) => acknowledged = n,
                            Err(err) if err.is_conflict() => break,
                            Err(err) => panic!("{err}"),
                        }
                    }
                    acknowledged
                })
            };
            let moved = store
                .cycle_id(record.id())
                .await
                .unwrap()
                .expect("the session is live");
            let acknowledged = writer.await.unwrap();
            assert!(
                store.get(record.id()).await.unwrap().is_none(),
                "the old id survived"
            );
            let back = store.get(&moved).await.unwrap().unwrap();
            assert_eq!(
                back.get::<i64>("n").unwrap(),
                Some(acknowledged),
                "an acknowledged update was lost"
            );
            assert_eq!(store.count().await.unwrap(), 1);
            store.destroy(&moved).await.unwrap();
        }
    }
}

/// A write cancelled part way (its caller timed out, or its request went away) leaves no
/// lease lock behind: on FerretDB the next writes of that session, logout included, go
/// through at once instead of waiting out the lease (twice the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_writes_leave_no_lock_behind() {
    let url = match server_url(Backend::Mongo) {
        Ok(url) => url,
        Err(Skip(reason)) => return skip_or_fail("the cancelled-writes test", &reason),
    };
    let options = StoreOptions {
        timeout: StdDuration::from_secs(2),
        ..StoreOptions::default()
    };
    let timeout = options.timeout;
    let store = connect(&url, ExpiryMode::Disabled, options).await.unwrap();
    let mut record = Record::new(now() + Duration::hours(1));
    record.insert("n", 0).unwrap();
    store.create(&mut record).await.unwrap();
    let id = record.id().clone();
    for cancel_after in [0, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80] {
        let mut stale = store.get(&id).await.unwrap().unwrap();
        stale.insert("n", cancel_after).unwrap();
        let cancelled = tokio::time::timeout(
            StdDuration::from_millis(cancel_after),
            store.update(&mut stale),
        );
        let _ = cancelled.await;
        // The cancelled update may still land (its outcome is unknown): modify reads again.
        let started = std::time::Instant::now();
        session_core::modify(&store, &id, 4, |r| {
            r.insert("after", cancel_after).ok();
        })
        .await
        .unwrap_or_else(|err| panic!("after a cancel at {cancel_after} ms: {err}"))
        .expect("the session is there");
        assert!(store.touch(&id, now() + Duration::hours(2)).await.unwrap());
        // A lock left behind makes the next writes wait out its lease, twice the timeout
        // (4 s); one timeout (2 s) tells that apart from a slow FerretDB (CI once saw
        // 1.37 s for a modify and a touch with no lock held).
        assert!(
            started.elapsed() < timeout,
            "a write cancelled after {cancel_after} ms held the session's lock: the next \
             writes waited {:?}",
            started.elapsed()
        );
    }
    store.destroy(&id).await.unwrap();
    assert!(store.get(&id).await.unwrap().is_none());
}

/// Fault (a): a dedicated FerretDB process is killed mid-run and restarted.
mod outage {
    use super::*;
    use integration_tests::servers::{DedicatedServer, FerretServer};
    use std::time::Instant;

    const TEST: &str = "server_stops_mid_run_and_comes_back";

    /// One store call, named, to time while the server is down.
    type Call<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_stops_mid_run_and_comes_back() {
        let mut ferret = match FerretServer::start() {
            Ok(ferret) => ferret,
            Err(reason) => return skip_or_fail(TEST, &reason),
        };
        let timeout = StdDuration::from_secs(1);
        let margin = StdDuration::from_secs(2);
        let options = StoreOptions {
            timeout,
            ..StoreOptions::default()
        };
        let config = MongoConfig {
            database: Some("outage".into()),
            collection: Some("sessions".into()),
            expiry: ExpiryMode::Interval(StdDuration::from_millis(300)),
            options,
            ..MongoConfig::default()
        };
        let store = MongoStore::connect(&ferret.url(), config).await.unwrap();
        let mut record = Record::new(now() + Duration::hours(1));
        record.insert("cart", json!([1, 2, 3])).unwrap();
        store.create(&mut record).await.unwrap();
        assert!(store.get(record.id()).await.unwrap().is_some());

        ferret.kill().unwrap();
        // Every kind of call fails fast with a retryable, typed error; nothing hangs or panics.
        for attempt in 0..3 {
            let mut fresh = Record::new(now() + Duration::hours(1));
            let mut stale = record.clone();
            let calls: Vec<(&str, Call<'_>)> = vec![
                (
                    "get",
                    Box::pin(async { store.get(record.id()).await.map(drop) }),
                ),
                ("create", Box::pin(async { store.create(&mut fresh).await })),
                ("update", Box::pin(async { store.update(&mut stale).await })),
                (
                    "touch",
                    Box::pin(async {
                        store
                            .touch(record.id(), now() + Duration::hours(2))
                            .await
                            .map(drop)
                    }),
                ),
                ("count", Box::pin(async { store.count().await.map(drop) })),
                (
                    "cycle_id",
                    Box::pin(async { store.cycle_id(record.id()).await.map(drop) }),
                ),
                (
                    "delete_expired",
                    Box::pin(async { store.delete_expired().await.map(drop) }),
                ),
            ];
            for (name, call) in calls {
                let started = Instant::now();
                let outcome = call.await;
                let took = started.elapsed();
                let err = outcome.expect_err("a call succeeded with the server down");
                assert!(
                    err.is_retryable(),
                    "{name} (attempt {attempt}): not retryable: {err}"
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
                    "{name}: {err}"
                );
                assert!(
                    took < timeout + margin,
                    "{name} took {took:?} with the server down"
                );
                eprintln!("server down: {name} failed after {took:?}: {err}");
            }
        }

        ferret.restart().unwrap(); // same port, same data directory
        let until = Instant::now() + StdDuration::from_secs(30);
        let back = loop {
            match store.get(record.id()).await {
                Ok(found) => break found,
                Err(err) => {
                    assert!(err.is_retryable(), "while the server restarts: {err}");
                    assert!(
                        Instant::now() < until,
                        "the store did not recover within 30 s: {err}"
                    );
                    tokio::time::sleep(StdDuration::from_millis(200)).await;
                }
            }
        };
        assert_eq!(
            back.as_ref(),
            Some(&record),
            "the session did not survive the restart"
        );
        let mut again = back.unwrap();
        again.insert("cart", json!([1, 2, 3, 4])).unwrap();
        store.update(&mut again).await.unwrap();
        let mut fresh = Record::new(now() + Duration::hours(1));
        store.create(&mut fresh).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 2);
        store.stop_pruner().await;
    }
}

// ---------------------------------------------------------------------------------------
// The suite, with its waiting cases overlapped

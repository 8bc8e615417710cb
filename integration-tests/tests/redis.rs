//! session-redis on real servers: the conformance suite for each client and topology, plus
//! corrupt values, oversized payloads and a server that dies and comes back.

#![allow(clippy::unwrap_used)] // a failed call is a failed test

use integration_tests::proxy::slow_store;
use integration_tests::{Backend, Skip, server_url};
use session_core::conformance::{Harness, NotApplicable, Unrun};
use session_core::{Error, SessionId, StoreOptions};
use session_redis::{Client, Durability, RedisStore};

/// One harness for every client and topology.
#[derive(Debug, Clone, Copy)]
struct RedisHarness {
    client: Client,
    backend: Backend,
    durability: Durability,
}

/// A prefix no other test uses, so parallel tests never see each other's sessions.
fn unique_prefix() -> String {
    format!("test:{}:sess:", &SessionId::generate().expose()[..16])
}

async fn connect(harness: RedisHarness, url: &str, options: StoreOptions) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .client(harness.client)
        .durability(harness.durability)
        .prefix(unique_prefix())
        .options(options)
        .connect()
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"))
}

#[session_core::async_trait]
impl Harness for RedisHarness {
    type Store = RedisStore;

    async fn available(&self) -> Result<(), Skip> {
        server_url(self.backend).map(drop)
    }

    async fn store(&self, options: StoreOptions) -> RedisStore {
        let url = server_url(self.backend).unwrap();
        connect(*self, &url, options).await
    }

    async fn write_corrupt(&self, store: &RedisStore, id: &SessionId) -> Result<(), Skip> {
        store
            .raw_set(&store.key_for(id), b"{not json")
            .await
            .unwrap();
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> Result<RedisStore, Unrun> {
        self.slow(options, false).await
    }

    fn spans_sessions_atomically(&self) -> Result<(), &'static str> {
        self.one_server()
    }
}

impl RedisHarness {
    /// On a cluster the owner-wide calls run node by node (the crate docs say so).
    fn one_server(&self) -> Result<(), &'static str> {
        if self.backend == Backend::RedisCluster {
            return Err(
                "on a Redis Cluster, destroy_by_owner goes node by node and can miss a \
                        session a concurrent cycle_id moves at that moment (session-redis \
                        docs, \"How each call works\")",
            );
        }
        Ok(())
    }

    /// A store behind a proxy that slows its server down once connected.
    async fn slow(&self, options: StoreOptions, express: bool) -> Result<RedisStore, Unrun> {
        if self.backend == Backend::RedisCluster {
            return Err(Unrun::NotApplicable(NotApplicable(
                "a proxy in front of one cluster node is bypassed (nodes announce their own \
                 addresses); the standalone harness checks the timeout"
                    .into(),
            )));
        }
        if self.backend == Backend::RedisSentinel {
            return Err(Unrun::NotApplicable(NotApplicable(
                "a proxy in front of a sentinel is bypassed (it names the primary's own \
                 address); the standalone harness checks the timeout"
                    .into(),
            )));
        }
        let url = server_url(self.backend).map_err(Unrun::Skip)?;
        let client = self.client;
        Ok(slow_store(&url, options, |url, options| async move {
            let builder = RedisStore::builder()
                .url(&url)
                .client(client)
                .prefix(unique_prefix())
                .options(options);
            let builder = if express {
                builder.express_session()
            } else {
                builder
            };
            builder.connect().await.unwrap()
        })
        .await)
    }
}

// ---------------------------------------------------------------------------------------
// The suite, with its waiting cases overlapped

/// The suite and the scan check for each client on each topology.
macro_rules! suites {
    ($($module:ident => $client:expr, $backend:expr, $durability:expr;)*) => {$(
        mod $module {
            use super::*;
            const HARNESS: RedisHarness = RedisHarness {
                client: $client,
                backend: $backend,
                durability: $durability,
            };
            #[test]
            fn conformance() {
                session_core::conformance::run_suite(|| HARNESS);
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn scan() {
                super::check_scan(HARNESS).await;
            }
        }
    )*};
}

/// Every write waits for one replica (`Durability::Replicated`): the Sentinel set's, or on
/// the Cluster the replica of the key's primary.
const REPLICATED: Durability = Durability::Replicated {
    replicas: 1,
    timeout: std::time::Duration::from_millis(1_000),
};

suites! {
    fred_standalone => Client::Fred, Backend::Redis, Durability::Primary;
    fred_cluster => Client::Fred, Backend::RedisCluster, Durability::Primary;
    fred_cluster_replicated => Client::Fred, Backend::RedisCluster, REPLICATED;
    fred_sentinel => Client::Fred, Backend::RedisSentinel, Durability::Primary;
    fred_sentinel_replicated => Client::Fred, Backend::RedisSentinel, REPLICATED;
    redis_rs_standalone => Client::RedisRs, Backend::Redis, Durability::Primary;
    redis_rs_cluster => Client::RedisRs, Backend::RedisCluster, Durability::Primary;
    redis_rs_sentinel => Client::RedisRs, Backend::RedisSentinel, Durability::Primary;
    redis_rs_sentinel_replicated => Client::RedisRs, Backend::RedisSentinel, REPLICATED;
}

/// Cases beyond the suite, run for each client and topology.
mod extra {
    use std::time::{Duration, Instant};

    use integration_tests::in_an_hour;
    use integration_tests::servers::{DedicatedServer, RedisServer};
    use serde_json::json;
    use session_core::{Record, SessionStore, now, unix_millis};

    use super::*;

    const ALL: [RedisHarness; 6] = [
        RedisHarness {
            client: Client::Fred,
            backend: Backend::Redis,
            durability: Durability::Primary,
        },
        RedisHarness {
            client: Client::Fred,
            backend: Backend::RedisCluster,
            durability: Durability::Primary,
        },
        RedisHarness {
            client: Client::Fred,
            backend: Backend::RedisSentinel,
            durability: Durability::Primary,
        },
        RedisHarness {
            client: Client::RedisRs,
            backend: Backend::Redis,
            durability: Durability::Primary,
        },
        RedisHarness {
            client: Client::RedisRs,
            backend: Backend::RedisCluster,
            durability: Durability::Primary,
        },
        RedisHarness {
            client: Client::RedisRs,
            backend: Backend::RedisSentinel,
            durability: Durability::Primary,
        },
    ];

    /// The harnesses whose server is there (a skip is reported, and fails under CI).
    async fn available() -> Vec<RedisHarness> {
        super::reachable(ALL).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_values_are_decode_errors_naming_the_id() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let mut healthy = Record::new(in_an_hour());
            healthy.insert("ok", true).unwrap();
            store.create(&mut healthy).await.unwrap();
            let bad: [&[u8]; 7] = [
                // Begins as this crate writes a record of version 0 (what `stale` below
                // expects), then stops: update's fast path must not take it.
                br#"{"format":1,"version":0,"created_at":0,"expires_at":99999999999999,"da"#,
                b"not json at all",
                b"[1,2,3]",
                b"{}",
                br#"{"format":1,"version":"x"}"#,
                b"\xff\xfe\x00\x01garbage\x80",
                b"",
            ];
            for value in bad {
                let id = SessionId::generate();
                store.raw_set(&store.key_for(&id), value).await.unwrap();
                let err = store.get(&id).await.unwrap_err();
                assert!(
                    matches!(err, Error::Decode { .. }),
                    "{harness:?} {value:?}: {err}"
                );
                assert_eq!(err.session_id(), Some(&id));
                // The scripts don't crash on it either: a typed error, the value untouched.
                let err = store.touch(&id, in_an_hour()).await.unwrap_err();
                assert!(
                    matches!(err, Error::Decode { .. }),
                    "{harness:?} touch {value:?}: {err}"
                );
                let mut stale = Record::with_id(id.clone(), in_an_hour());
                let err = store.update(&mut stale).await.unwrap_err();
                assert!(
                    matches!(err, Error::Decode { .. }),
                    "{harness:?} update {value:?}: {err}"
                );
                assert!(store.raw_exists(&store.key_for(&id)).await.unwrap());
                assert_eq!(store.get(healthy.id()).await.unwrap().unwrap(), healthy);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn update_checks_the_version_of_records_in_any_field_order() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let id = SessionId::generate();
            let expires = unix_millis(in_an_hour());
            // The fields of a record in an order this crate never writes (another writer,
            // or a hand repair): update decodes it in full instead of reading the front.
            let value = format!(
                r#"{{"data":{{"n":1}},"expires_at":{expires},"created_at":0,"version":3,"format":1}}"#
            );
            store
                .raw_set(&store.key_for(&id), value.as_bytes())
                .await
                .unwrap();
            let mut record = store.get(&id).await.unwrap().unwrap();
            assert_eq!(record.version(), 3, "{harness:?}");
            let mut stale = record.clone();
            stale.set_version(2);
            assert!(
                matches!(store.update(&mut stale).await, Err(Error::Conflict { .. })),
                "{harness:?}"
            );
            record.insert("n", 2).unwrap();
            store.update(&mut record).await.unwrap();
            let back = store.get(&id).await.unwrap().unwrap();
            assert_eq!(
                (back.version(), back.get::<i64>("n").unwrap()),
                (4, Some(2)),
                "{harness:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_payloads_send_nothing() {
        for harness in available().await {
            let options = StoreOptions {
                max_payload_bytes: 1024,
                ..StoreOptions::default()
            };
            let store = harness.store(options).await;
            let mut big = Record::new(in_an_hour());
            big.insert("blob", "x".repeat(4096)).unwrap();
            big.set_owner(Some("big-owner".into()));
            assert!(matches!(
                store.insert(&mut big).await,
                Err(Error::PayloadTooLarge { .. })
            ));
            assert!(matches!(
                store.set(&mut big).await,
                Err(Error::PayloadTooLarge { .. })
            ));
            assert!(matches!(
                store.update(&mut big).await,
                Err(Error::PayloadTooLarge { .. })
            ));
            assert!(
                !store.raw_exists(&store.key_for(big.id())).await.unwrap(),
                "{harness:?}"
            );
            assert!(
                !store
                    .raw_exists(&store.owner_key("big-owner"))
                    .await
                    .unwrap(),
                "{harness:?}"
            );
            assert_eq!(big.version(), 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn touch_keeps_the_stored_data_byte_for_byte() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let mut record = Record::new(now() + time::Duration::minutes(5));
            record.insert("big", u64::MAX).unwrap();
            record
                .insert("empty", json!({"o": {}, "a": [], "f": 1.5e300}))
                .unwrap();
            record.set_owner(Some("toucher".into()));
            store.create(&mut record).await.unwrap();
            let later = now() + time::Duration::minutes(50);
            assert!(store.touch(record.id(), later).await.unwrap());
            let back = store.get(record.id()).await.unwrap().unwrap();
            let mut expected = record.clone();
            expected.set_expires_at(later);
            assert_eq!(back, expected, "{harness:?}");
            // The owner index follows the new expiry.
            assert_eq!(
                store.list_by_owner("toucher").await.unwrap(),
                vec![expected]
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn set_of_an_expired_record_leaves_no_key() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let mut record = Record::new(in_an_hour());
            store.create(&mut record).await.unwrap();
            record.set_expires_at(now() - time::Duration::seconds(1));
            store.set(&mut record).await.unwrap();
            assert!(
                !store.raw_exists(&store.key_for(record.id())).await.unwrap(),
                "{harness:?}"
            );
            let mut fresh = Record::new(now() - time::Duration::seconds(1));
            store.insert(&mut fresh).await.unwrap();
            assert!(
                !store.raw_exists(&store.key_for(fresh.id())).await.unwrap(),
                "{harness:?}"
            );
            assert_eq!(store.count().await.unwrap(), 0);
        }
    }

    /// "Log out everywhere" with one of the owner's sessions corrupt (its value no longer
    /// decodes, so its owner can't be read from it): the others are revoked all the same, and
    /// so is the corrupt one, which the owner index lists for that owner.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocation_goes_through_a_corrupt_session() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let owner = format!("owner-{}", &SessionId::generate().expose()[..8]);
            let mut sessions = Vec::new();
            for _ in 0..3 {
                let mut record = Record::new(in_an_hour());
                record.set_owner(Some(owner.clone()));
                store.create(&mut record).await.unwrap();
                sessions.push(record);
            }
            store
                .raw_set(&store.key_for(sessions[0].id()), b"{garbage")
                .await
                .unwrap();
            let revoked = store.destroy_by_owner(&owner).await.unwrap();
            assert_eq!(revoked, 2, "{harness:?}: the two decodable sessions count");
            for record in &sessions {
                assert!(
                    !store.raw_exists(&store.key_for(record.id())).await.unwrap(),
                    "{harness:?}: a session of the owner survived"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scan_passes_over_other_prefixes_and_corrupt_values() {
        for harness in available().await {
            let url = server_url(harness.backend).unwrap();
            let builder = RedisStore::builder().url(&url).client(harness.client);
            super::scan_passes_over_others(builder).await;
        }
    }

    /// Under `Durability::Replicated`, a write that no replica confirms (a server of our own,
    /// with none) fails with a retryable error saying it was applied on the primary, and it
    /// was: WAIT runs after every kind of write, and its count is checked. Each client
    /// starts on a server that has not seen the scripts (as a fresh or just-promoted one):
    /// the store must load them on this path too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicated_writes_without_a_replica_fail_but_are_applied() {
        for client in [Client::Fred, Client::RedisRs] {
            let server = match RedisServer::start() {
                Ok(server) => server,
                Err(reason) => {
                    return session_core::conformance::skip("Durability::Replicated", &reason);
                }
            };
            let url = server.url();
            let harness = RedisHarness {
                client,
                backend: Backend::Redis,
                durability: Durability::Replicated {
                    replicas: 1,
                    timeout: Duration::from_millis(20),
                },
            };
            let store = connect(harness, &url, StoreOptions::default()).await;
            let unconfirmed = |what: &str, result: session_core::Result<()>| {
                let err = result.expect_err(what);
                assert!(err.is_retryable(), "{client:?} {what}: {err}");
                assert!(
                    err.to_string().contains("applied on the primary"),
                    "{client:?} {what}: {err}"
                );
            };
            let mut record = Record::new(in_an_hour());
            record.set_owner(Some("durable".into()));
            unconfirmed("create", store.create(&mut record).await);
            let stored = store.get(record.id()).await.unwrap().expect("created");
            unconfirmed(
                "touch",
                store.touch(record.id(), in_an_hour()).await.map(drop),
            );
            let mut changed = stored.clone();
            changed.insert("n", json!(1)).unwrap();
            unconfirmed("update", store.update(&mut changed).await.map(drop));
            assert_eq!(
                store
                    .get(record.id())
                    .await
                    .unwrap()
                    .unwrap()
                    .get::<i64>("n")
                    .unwrap(),
                Some(1),
                "{client:?}: the unconfirmed update was applied"
            );
            unconfirmed("destroy", store.destroy(record.id()).await.map(drop));
            assert!(
                store.get(record.id()).await.unwrap().is_none(),
                "{client:?}"
            );
        }
    }

    /// Under `Durability::Replicated`, a server that lacks the replicas the `WAIT`s ask for
    /// (one of our own, with none; on a Cluster, a primary just promoted whose old primary
    /// is not back yet) still answers reads while writers keep trying: a read waits behind
    /// at most half the call timeout of `WAIT`s (two of 200 ms here). Was (fred): each
    /// write that timed out and was tried again left one more `WAIT` in the connection's
    /// queue (fred sends a pipeline even after its caller gave up), the queue grew without
    /// bound and every read timed out with it, for as long as no replica came back (the
    /// Cluster failover test's "the store did not resume").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_go_on_while_no_replica_confirms_writes() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};

        for client in [Client::Fred, Client::RedisRs] {
            let server = match RedisServer::start() {
                Ok(server) => server,
                Err(reason) => {
                    return session_core::conformance::skip("Durability::Replicated", &reason);
                }
            };
            let harness = RedisHarness {
                client,
                backend: Backend::Redis,
                durability: Durability::Replicated {
                    replicas: 1,
                    timeout: Duration::from_millis(200),
                },
            };
            let options = StoreOptions {
                timeout: Duration::from_secs(1),
                ..StoreOptions::default()
            };
            let store = Arc::new(connect(harness, &server.url(), options).await);
            let mut record = Record::new(in_an_hour());
            // Applied on the primary although unconfirmed.
            let _ = store.create(&mut record).await;
            let stop = Arc::new(AtomicBool::new(false));
            // Many more writers than one `WAIT` a second can serve.
            let writers: Vec<_> = (0..12)
                .map(|_| {
                    let (store, stop) = (store.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut confirmed = 0;
                        while !stop.load(Ordering::Relaxed) {
                            let mut record = Record::new(in_an_hour());
                            confirmed += u32::from(store.create(&mut record).await.is_ok());
                        }
                        confirmed
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (mut answered, mut failed) = (0, Vec::new());
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                let started = Instant::now();
                match store.get(record.id()).await {
                    Ok(Some(_)) => answered += 1,
                    other => failed.push(format!("{:?}: {other:?}", started.elapsed())),
                }
            }
            stop.store(true, Ordering::Relaxed);
            for writer in writers {
                assert_eq!(writer.await.unwrap(), 0, "{client:?}: no replica confirmed");
            }
            assert!(
                failed.is_empty() && answered > 0,
                "{client:?}: {} of {} reads failed while writers waited for a replica that \
                 never answered: {failed:?}",
                failed.len(),
                failed.len() + answered
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_urls_are_config_errors() {
        for url in [
            "",
            "http://x",
            "localhost:6379",
            "redis://a:1,redis+sentinel://b:2",
        ] {
            let err = RedisStore::from_url(url).await.unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err}");
        }
        for client in [Client::Fred, Client::RedisRs] {
            let err = RedisStore::builder()
                .url("redis+sentinel://127.0.0.1:1")
                .client(client)
                .connect()
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Config(_)),
                "{client:?}, no service: {err}"
            );
        }
        if let Ok(url) = server_url(Backend::RedisCluster) {
            let err = RedisStore::builder()
                .url(&url)
                .redis_rs()
                .durability(REPLICATED)
                .connect()
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Config(_)),
                "redis-rs, Cluster, WAIT: {err}"
            );
        }
        // A sentinel that is not there is no configuration mistake: the deployment may
        // come back, so the error says to try again.
        let err = RedisStore::builder()
            .url("redis+sentinel://127.0.0.1:1?sentinelServiceName=x")
            .redis_rs()
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "redis-rs, no sentinel: {err}");
    }

    async fn survives_a_server_restart(client: Client) {
        let mut server = match RedisServer::start() {
            Ok(server) => server,
            Err(reason) => return session_core::conformance::skip("the restart test", &reason),
        };
        let timeout = Duration::from_secs(1);
        let url = server.url();
        let options = StoreOptions {
            timeout,
            ..StoreOptions::default()
        };
        let harness = RedisHarness {
            client,
            backend: Backend::Redis,
            durability: Durability::Primary,
        };
        let store = connect(harness, &url, options).await;
        let mut record = Record::new(in_an_hour());
        store.create(&mut record).await.unwrap();
        assert!(store.get(record.id()).await.unwrap().is_some());

        server.kill().unwrap();
        for _ in 0..3 {
            let started = Instant::now();
            let err = store.get(record.id()).await.unwrap_err();
            let took = started.elapsed();
            assert!(err.is_retryable(), "{client:?}: {err}");
            assert!(
                matches!(err, Error::Timeout { .. } | Error::Backend { .. }),
                "{err}"
            );
            assert!(
                took < timeout + Duration::from_millis(500),
                "{client:?}: took {took:?}"
            );
            let mut other = Record::new(in_an_hour());
            let err = store.set(&mut other).await.unwrap_err();
            assert!(err.is_retryable(), "{client:?}: {err}");
        }

        server.restart().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut fresh = Record::new(in_an_hour());
            match store.create(&mut fresh).await {
                Ok(()) => {
                    assert!(store.get(fresh.id()).await.unwrap().is_some());
                    break;
                }
                Err(err) => {
                    assert!(err.is_retryable(), "{client:?}: {err}");
                    assert!(
                        Instant::now() < deadline,
                        "{client:?} did not recover: {err}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        // Acknowledged before the crash, so the append-only file kept it.
        assert_eq!(
            store.get(record.id()).await.unwrap().as_ref(),
            Some(&record)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fred_survives_a_server_restart() {
        survives_a_server_restart(Client::Fred).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_rs_survives_a_server_restart() {
        survives_a_server_restart(Client::RedisRs).await;
    }
}

/// The same suite with the express-session format (`RedisStoreBuilder::express_session`),
/// on every client and topology, plus what only that format promises.
mod express {
    use serde_json::{Value, json};
    use session_core::{Record, SessionStore, now, unix_millis};
    use session_redis::Format;

    use super::*;

    /// [`RedisHarness`]'s server and client, storing express-session values.
    #[derive(Debug, Clone, Copy)]
    struct ExpressHarness(RedisHarness);

    #[session_core::async_trait]
    impl Harness for ExpressHarness {
        type Store = RedisStore;

        async fn available(&self) -> Result<(), Skip> {
            self.0.available().await
        }

        async fn store(&self, options: StoreOptions) -> RedisStore {
            let url = server_url(self.0.backend).unwrap();
            RedisStore::builder()
                .url(&url)
                .client(self.0.client)
                .prefix(unique_prefix())
                .options(options)
                .express_session()
                .connect()
                .await
                .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"))
        }

        async fn write_corrupt(&self, store: &RedisStore, id: &SessionId) -> Result<(), Skip> {
            self.0.write_corrupt(store, id).await
        }

        async fn slow_store(&self, options: StoreOptions) -> Result<RedisStore, Unrun> {
            self.0.slow(options, true).await
        }

        fn spans_sessions_atomically(&self) -> Result<(), &'static str> {
            self.0.one_server()
        }
    }

    mod fred_standalone {
        use super::*;
        #[test]
        fn conformance() {
            session_core::conformance::run_suite(|| {
                ExpressHarness(RedisHarness {
                    client: Client::Fred,
                    backend: Backend::Redis,
                    durability: Durability::Primary,
                })
            });
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn scan() {
            crate::check_scan(ExpressHarness(RedisHarness {
                client: Client::Fred,
                backend: Backend::Redis,
                durability: Durability::Primary,
            }))
            .await;
        }
    }

    mod fred_cluster {
        use super::*;
        #[test]
        fn conformance() {
            session_core::conformance::run_suite(|| {
                ExpressHarness(RedisHarness {
                    client: Client::Fred,
                    backend: Backend::RedisCluster,
                    durability: Durability::Primary,
                })
            });
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn scan() {
            crate::check_scan(ExpressHarness(RedisHarness {
                client: Client::Fred,
                backend: Backend::RedisCluster,
                durability: Durability::Primary,
            }))
            .await;
        }
    }

    mod redis_rs_standalone {
        use super::*;
        #[test]
        fn conformance() {
            session_core::conformance::run_suite(|| {
                ExpressHarness(RedisHarness {
                    client: Client::RedisRs,
                    backend: Backend::Redis,
                    durability: Durability::Primary,
                })
            });
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn scan() {
            crate::check_scan(ExpressHarness(RedisHarness {
                client: Client::RedisRs,
                backend: Backend::Redis,
                durability: Durability::Primary,
            }))
            .await;
        }
    }

    mod redis_rs_cluster {
        use super::*;
        #[test]
        fn conformance() {
            session_core::conformance::run_suite(|| {
                ExpressHarness(RedisHarness {
                    client: Client::RedisRs,
                    backend: Backend::RedisCluster,
                    durability: Durability::Primary,
                })
            });
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn scan() {
            crate::check_scan(ExpressHarness(RedisHarness {
                client: Client::RedisRs,
                backend: Backend::RedisCluster,
                durability: Durability::Primary,
            }))
            .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scan_passes_over_other_prefixes_and_corrupt_values() {
        for ExpressHarness(harness) in available().await {
            let url = server_url(harness.backend).unwrap();
            let builder = RedisStore::builder()
                .url(&url)
                .client(harness.client)
                .express_session();
            crate::scan_passes_over_others(builder).await;
        }
    }

    /// `at` as JavaScript's `Date.prototype.toJSON` writes it.
    fn iso(at: time::OffsetDateTime) -> String {
        let at = at.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond()
        )
    }

    const ALL: [ExpressHarness; 4] = [
        ExpressHarness(RedisHarness {
            client: Client::Fred,
            backend: Backend::Redis,
            durability: Durability::Primary,
        }),
        ExpressHarness(RedisHarness {
            client: Client::Fred,
            backend: Backend::RedisCluster,
            durability: Durability::Primary,
        }),
        ExpressHarness(RedisHarness {
            client: Client::RedisRs,
            backend: Backend::Redis,
            durability: Durability::Primary,
        }),
        ExpressHarness(RedisHarness {
            client: Client::RedisRs,
            backend: Backend::RedisCluster,
            durability: Durability::Primary,
        }),
    ];

    async fn available() -> Vec<ExpressHarness> {
        super::reachable(ALL).await
    }

    /// What connect-redis 9 stores for `{user: "alice"}` (express-session 1.19, cookie
    /// `{maxAge: 3600000, httpOnly: true, sameSite: "lax"}`), with an hour's `EX`.
    fn node_value(expires: &str) -> String {
        format!(
            r#"{{"cookie":{{"originalMaxAge":3600000,"expires":"{expires}","httpOnly":true,"path":"/","sameSite":"lax"}},"user":"alice"}}"#
        )
    }

    fn json_of(raw: &[u8]) -> Value {
        serde_json::from_slice(raw).unwrap()
    }

    #[test]
    fn format_is_reported() {
        assert_eq!(Format::default(), Format::Native);
    }

    /// A value Node wrote reads at a version derived from its bytes (2^52 and up) with no
    /// owner; `update` at that version takes it, keeps Node's cookie object (with `expires`
    /// moved) and adds the metadata.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn node_sessions_read_and_update() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            assert_eq!(store.format(), Format::ExpressSession);
            let id = SessionId::generate();
            let key = store.key_for(&id);
            let expires_ms = unix_millis(now()) + 3_600_000;
            // A stale cookie.expires (connect-redis's touch only moves the key's expiry).
            let stale = "2020-01-01T00:00:00.000Z";
            store
                .raw_set_pxat(&key, node_value(stale).as_bytes(), expires_ms)
                .await
                .unwrap();
            let mut record = store.get(&id).await.unwrap().unwrap();
            let node_version = record.version();
            assert!(node_version >= 1 << 52, "{harness:?}: {node_version}");
            assert_eq!(record.owner(), None);
            assert_eq!(record.data(), json!({"user": "alice"}).as_object().unwrap());
            assert_eq!(
                unix_millis(record.expires_at()),
                expires_ms,
                "{harness:?}: the key's expiry is the session's"
            );

            record.insert("cart", json!([1, 2])).unwrap();
            record.set_owner(Some("alice".into()));
            let later = now() + time::Duration::hours(2);
            record.set_expires_at(later);
            store.update(&mut record).await.unwrap();
            assert_eq!(record.version(), node_version + 1);
            let raw = store.raw_get(&key).await.unwrap().unwrap();
            let text = String::from_utf8(raw.clone()).unwrap();
            let expected_cookie = format!(
                r#"{{"cookie":{{"originalMaxAge":3600000,"expires":"{}","httpOnly":true,"path":"/","sameSite":"lax"}},"#,
                iso(later)
            );
            assert!(text.starts_with(&expected_cookie), "{harness:?}: {text}");
            let stored = json_of(&raw);
            assert_eq!(stored["user"], "alice");
            assert_eq!(stored["cart"], json!([1, 2]));
            assert_eq!(stored["__session_stores"]["version"], node_version + 1);
            assert_eq!(stored["__session_stores"]["owner"], "alice");
            let pttl = store.raw_pttl(&key).await.unwrap();
            assert!(
                pttl > 7_000_000,
                "{harness:?}: PXAT follows expires_at ({pttl})"
            );
            assert_eq!(
                store.list_by_owner("alice").await.unwrap(),
                vec![record.clone()]
            );

            // A stale Rust writer still conflicts (CAS on the metadata's version).
            let mut stale_record = record.clone();
            stale_record.set_version(node_version);
            assert!(
                store
                    .update(&mut stale_record)
                    .await
                    .unwrap_err()
                    .is_conflict()
            );
        }
    }

    /// JavaScript strings may hold half an emoji (a lone UTF-16 surrogate), which
    /// JSON.stringify writes as `\ud83d`: a session Node stored with one reads, with U+FFFD
    /// in its place, instead of failing on every request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn node_strings_with_lone_surrogates_read() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let id = SessionId::generate();
            let value = r#"{"cookie":{"originalMaxAge":3600000,"expires":null,"httpOnly":true,"path":"/"},"name":"ab\ud83d","pair":"\ud83d\ude00"}"#;
            let expires_ms = unix_millis(now()) + 3_600_000;
            store
                .raw_set_pxat(&store.key_for(&id), value.as_bytes(), expires_ms)
                .await
                .unwrap();
            let record = store.get(&id).await.unwrap().unwrap();
            assert_eq!(
                record.get::<String>("name").unwrap().as_deref(),
                Some("ab\u{fffd}"),
                "{harness:?}"
            );
            assert_eq!(record.get::<String>("pair").unwrap().as_deref(), Some("😀"));
        }
    }

    /// `touch` moves the key's expiry only: the value stays byte for byte.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn touch_moves_only_the_expiry() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let mut record = Record::new(now() + time::Duration::minutes(5));
            record.insert("big", u64::MAX).unwrap();
            record.insert("empty", json!({"o": {}, "a": []})).unwrap();
            record.set_owner(Some("toucher".into()));
            store.create(&mut record).await.unwrap();
            let key = store.key_for(record.id());
            let before = store.raw_get(&key).await.unwrap().unwrap();
            let later = now() + time::Duration::minutes(50);
            assert!(store.touch(record.id(), later).await.unwrap());
            assert_eq!(
                store.raw_get(&key).await.unwrap().unwrap(),
                before,
                "{harness:?}"
            );
            let back = store.get(record.id()).await.unwrap().unwrap();
            let mut expected = record.clone();
            expected.set_expires_at(later);
            assert_eq!(back, expected, "{harness:?}");
            assert_eq!(
                store.list_by_owner("toucher").await.unwrap(),
                vec![expected]
            );
        }
    }

    /// A created session carries express-session's default cookie, first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn created_sessions_have_a_default_cookie() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let mut record = Record::new(now() + time::Duration::hours(1));
            record.insert("user", "bob").unwrap();
            store.create(&mut record).await.unwrap();
            let raw = store
                .raw_get(&store.key_for(record.id()))
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8(raw.clone()).unwrap();
            assert!(
                text.starts_with(r#"{"cookie":{"originalMaxAge":"#),
                "{text}"
            );
            let stored = json_of(&raw);
            let cookie = &stored["cookie"];
            assert_eq!(cookie["expires"], iso(record.expires_at()));
            assert_eq!(cookie["httpOnly"], true);
            assert_eq!(cookie["path"], "/");
            assert_eq!(cookie["sameSite"], "lax");
            let max_age = cookie["originalMaxAge"].as_i64().unwrap();
            assert!((3_590_000..=3_600_000).contains(&max_age), "{max_age}");
            assert_eq!(stored["user"], "bob");
            // A reserved key is an encode error, nothing written.
            let mut bad = Record::new(now() + time::Duration::hours(1));
            bad.insert("cookie", json!({})).unwrap();
            assert!(matches!(
                store.create(&mut bad).await,
                Err(Error::Encode { .. })
            ));
        }
    }

    /// Values that aren't express-session sessions are decode errors naming the id, for
    /// reads and for the scripts; the value stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn foreign_values_are_decode_errors_naming_the_id() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let bad: [&[u8]; 7] = [
                b"not json at all",
                b"[1,2,3]",
                b"{}",
                br#"{"cookie":"x"}"#,
                br#"{"cookie":{},"__session_stores":7}"#,
                b"\xff\xfe\x00\x01garbage\x80",
                b"",
            ];
            let at = unix_millis(now()) + 3_600_000;
            for value in bad {
                let id = SessionId::generate();
                store
                    .raw_set_pxat(&store.key_for(&id), value, at)
                    .await
                    .unwrap();
                let err = store.get(&id).await.unwrap_err();
                assert!(
                    matches!(err, Error::Decode { .. }),
                    "{harness:?} {value:?}: {err}"
                );
                assert_eq!(err.session_id(), Some(&id));
                let err = store
                    .touch(&id, now() + time::Duration::hours(2))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, Error::Decode { .. }),
                    "{harness:?} touch {value:?}: {err}"
                );
                let mut stale = Record::with_id(id.clone(), now() + time::Duration::hours(1));
                let err = store.update(&mut stale).await.unwrap_err();
                assert!(
                    matches!(err, Error::Decode { .. }),
                    "{harness:?} update {value:?}: {err}"
                );
                assert!(store.raw_exists(&store.key_for(&id)).await.unwrap());
            }
        }
    }
}

/// [`check_scan`](session_core::conformance::check_scan) on a fresh store of `harness`; a
/// missing server is reported as a skip (a failure under CI).
async fn check_scan<H: Harness<Store = RedisStore> + std::fmt::Debug>(harness: H) {
    match harness.available().await {
        Ok(()) => {
            let store = harness.store(StoreOptions::default()).await;
            session_core::conformance::check_scan(&store).await;
        }
        Err(Skip(reason)) => {
            session_core::conformance::skip(&format!("{harness:?}: scan"), &reason)
        }
    }
}

/// A scan of a store built by `builder` returns its own sessions only: not those of a store
/// whose prefix shares all but its end (`…:app:` and `…:app2:`, disjoint as the crate docs
/// ask), not its owner indexes nor another key under its prefix that is no session, and not
/// a corrupt value, which it counts in `corrupt` and goes on past.
async fn scan_passes_over_others(builder: session_redis::RedisStoreBuilder) {
    use session_core::{Record, ScanCursor, ScanSessions, SessionStore, now};

    let base = format!("test:{}:", &SessionId::generate().expose()[..16]);
    let ours = builder
        .clone()
        .prefix(format!("{base}app:"))
        .connect()
        .await
        .unwrap();
    let theirs = builder
        .prefix(format!("{base}app2:"))
        .connect()
        .await
        .unwrap();
    let in_an_hour = now() + time::Duration::hours(1);
    let mut expected = std::collections::BTreeSet::new();
    for n in 0..6 {
        for (store, mine) in [(&ours, true), (&theirs, false)] {
            let mut record = Record::new(in_an_hour);
            record.set_owner(Some(format!("owner-{}", n % 2)));
            store.create(&mut record).await.unwrap();
            if mine {
                expected.insert(record.id().expose().to_owned());
            }
        }
    }
    let corrupt = SessionId::generate();
    let at = session_core::unix_millis(in_an_hour);
    ours.raw_set_pxat(&ours.key_for(&corrupt), b"{not json", at)
        .await
        .unwrap();
    let stray = format!("{base}app:not a session id");
    ours.raw_set_pxat(&stray, b"{}", at).await.unwrap();

    let (mut found, mut corrupt_seen, mut pages) = (Vec::new(), 0, 0);
    let mut cursor = Some(ScanCursor::start());
    while let Some(at) = cursor {
        let page = ours.scan(&at, 2).await.unwrap();
        found.extend(page.records.iter().map(|r| r.id().expose().to_owned()));
        corrupt_seen += page.corrupt;
        cursor = page.next;
        pages += 1;
        assert!(pages < 10_000, "the scan never ends");
    }
    let found_set: std::collections::BTreeSet<_> = found.iter().cloned().collect();
    assert_eq!(
        found_set,
        expected,
        "{:?}: the scan returned other keys than this store's sessions",
        ours.topology()
    );
    assert_eq!(corrupt_seen, 1, "the corrupt value is counted once");
    for key in [ours.key_for(&corrupt), stray] {
        ours.raw_set_pxat(&key, b"", 1).await.unwrap();
    }
}

/// The harnesses whose server is there; a missing one is reported (a failure under CI).
async fn reachable<H: Harness + std::fmt::Debug + Copy, const N: usize>(all: [H; N]) -> Vec<H> {
    let mut found = Vec::new();
    for harness in all {
        match harness.available().await {
            Ok(()) => found.push(harness),
            Err(Skip(reason)) => session_core::conformance::skip(&format!("{harness:?}"), &reason),
        }
    }
    found
}

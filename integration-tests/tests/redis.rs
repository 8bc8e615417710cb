//! session-redis on real servers: the conformance suite for each client and topology, plus
//! corrupt values, oversized payloads and a server that dies and comes back.

#![allow(clippy::unwrap_used)] // a failed call is a failed test

use integration_tests::{Backend, Skip, server_url};
use session_core::conformance::Harness;
use session_core::{Error, SessionId, StoreOptions};
use session_redis::{Client, RedisStore};

/// One harness for every client and topology.
#[derive(Debug, Clone, Copy)]
struct RedisHarness {
    client: Client,
    backend: Backend,
}

/// A prefix no other test uses, so parallel tests never see each other's sessions.
fn unique_prefix() -> String {
    format!("test:{}:sess:", &SessionId::generate().expose()[..16])
}

async fn connect(client: Client, url: &str, options: StoreOptions) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .client(client)
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
        connect(self.client, &url, options).await
    }

    async fn write_corrupt(&self, store: &RedisStore, id: &SessionId) -> Result<(), Skip> {
        store
            .raw_set(&store.key_for(id), b"{not json")
            .await
            .unwrap();
        Ok(())
    }
}

mod fred_standalone {
    use super::*;
    session_core::conformance_suite!(RedisHarness {
        client: Client::Fred,
        backend: Backend::Redis
    });
}

mod fred_cluster {
    use super::*;
    session_core::conformance_suite!(RedisHarness {
        client: Client::Fred,
        backend: Backend::RedisCluster
    });
}

mod redis_rs_standalone {
    use super::*;
    session_core::conformance_suite!(RedisHarness {
        client: Client::RedisRs,
        backend: Backend::Redis
    });
}

mod redis_rs_cluster {
    use super::*;
    session_core::conformance_suite!(RedisHarness {
        client: Client::RedisRs,
        backend: Backend::RedisCluster
    });
}

/// Cases beyond the suite, run for each client and topology.
mod extra {
    use std::time::{Duration, Instant};

    use serde_json::json;
    use session_core::{Record, SessionStore, now};

    use super::*;

    const ALL: [RedisHarness; 4] = [
        RedisHarness {
            client: Client::Fred,
            backend: Backend::Redis,
        },
        RedisHarness {
            client: Client::Fred,
            backend: Backend::RedisCluster,
        },
        RedisHarness {
            client: Client::RedisRs,
            backend: Backend::Redis,
        },
        RedisHarness {
            client: Client::RedisRs,
            backend: Backend::RedisCluster,
        },
    ];

    /// The harnesses whose server is there (a skip is reported, and fails under CI).
    async fn available() -> Vec<RedisHarness> {
        let mut found = Vec::new();
        for harness in ALL {
            match harness.available().await {
                Ok(()) => found.push(harness),
                Err(Skip(reason)) => {
                    eprintln!("SKIPPED {harness:?}: {reason}");
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "skipped under CI: {reason}"
                    );
                }
            }
        }
        found
    }

    fn in_an_hour() -> time::OffsetDateTime {
        now() + time::Duration::hours(1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_values_are_decode_errors_naming_the_id() {
        for harness in available().await {
            let store = harness.store(StoreOptions::default()).await;
            let mut healthy = Record::new(in_an_hour());
            healthy.insert("ok", true).unwrap();
            store.create(&mut healthy).await.unwrap();
            let bad: [&[u8]; 6] = [
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
        let err = RedisStore::builder()
            .url("redis+sentinel://127.0.0.1:1?sentinelServiceName=x")
            .redis_rs()
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    /// A `redis-server` of our own, killed and restarted by the test.
    struct Server {
        port: u16,
        dir: std::path::PathBuf,
        child: Option<std::process::Child>,
    }

    impl Server {
        fn start() -> Option<Self> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            let dir = std::env::temp_dir().join(format!("session-redis-fault-{port}"));
            std::fs::create_dir_all(&dir).ok()?;
            let mut server = Self {
                port,
                dir,
                child: None,
            };
            server.spawn().then_some(server)
        }

        fn spawn(&mut self) -> bool {
            let child = std::process::Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .stdout(std::process::Stdio::null())
                .spawn();
            let Ok(child) = child else { return false };
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        }

        fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                child.kill().ok();
                child.wait().ok();
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.kill();
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }

    async fn survives_a_server_restart(client: Client) {
        let Some(mut server) = Server::start() else {
            eprintln!("SKIPPED fault test: cannot run redis-server");
            assert!(std::env::var_os("CI").is_none(), "no redis-server under CI");
            return;
        };
        let timeout = Duration::from_secs(1);
        let url = format!("redis://127.0.0.1:{}", server.port);
        let options = StoreOptions {
            timeout,
            ..StoreOptions::default()
        };
        let store = connect(client, &url, options).await;
        let mut record = Record::new(in_an_hour());
        store.create(&mut record).await.unwrap();
        assert!(store.get(record.id()).await.unwrap().is_some());

        server.kill();
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

        assert!(server.spawn(), "redis-server did not restart");
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
        // The server came back empty (no persistence): the old session is gone, not an error.
        assert!(store.get(record.id()).await.unwrap().is_none());
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

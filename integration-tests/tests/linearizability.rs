//! The concurrent workload on every store and wrapper with a healthy server, its recorded
//! history judged by the linearizability checker (`integration-tests/lincheck`). The fault
//! tests and the soak run check the same under network faults and server crashes.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::backends::ALL;
use integration_tests::linearizable::Partitions;
use integration_tests::targets::Target;
use integration_tests::workload::Workload;
use integration_tests::{Backend, Skip, server_url};
use session_core::conformance::skip;
use session_core::{HashedIds, SessionStore};
use session_memory::{CachedStore, MemoryStore};
use session_telemetry::InstrumentedStore;

async fn check(name: &str, store: Arc<dyn SessionStore>) {
    check_with(name, store, Workload::default()).await;
}

async fn check_with(name: &str, store: Arc<dyn SessionStore>, workload: Workload) {
    let report = workload
        .start(store)
        .run(tokio::time::sleep(Duration::from_secs(4)))
        .await;
    report.assert_clean_and_linearizable(name, &format!("healthy-{name}"), "healthy");
}

/// The workload for a store whose owner-wide calls and moves are not one atomic step, as
/// its docs say (a Redis Cluster, MongoDB): those are not recorded, or not watched while
/// they run.
fn weaker() -> Workload {
    Workload {
        recorded: Some(Target::Mongo.partitions()),
        ..Workload::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend() {
    for (name, factory) in ALL {
        let workload = if *name == "mongo" {
            // A move is two writes there (insert the copy, delete the original).
            weaker()
        } else {
            Workload::default()
        };
        match factory().await {
            Ok(store) => check_with(name, store, workload).await,
            Err(Skip(reason)) => skip(&format!("linearizability on {name}"), &reason),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrappers_over_memory() {
    check(
        "hashed-memory",
        Arc::new(HashedIds::new(MemoryStore::new())),
    )
    .await;
    let cached = CachedStore::builder(MemoryStore::new()).build();
    check("cached-memory", Arc::new(cached)).await;
    let instrumented = InstrumentedStore::new(MemoryStore::new());
    std::mem::forget(instrumented.subscribe());
    check("instrumented-memory", Arc::new(instrumented)).await;
}

/// The telemetry wrapper over a real server: it must change nothing a call does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrumented_redis() {
    let (_, factory) = ALL.iter().find(|(name, _)| *name == "redis").unwrap();
    match factory().await {
        Ok(store) => {
            let instrumented = InstrumentedStore::new(store);
            std::mem::forget(instrumented.subscribe());
            check("instrumented-redis", Arc::new(instrumented)).await;
        }
        Err(Skip(reason)) => skip("linearizability on instrumented redis", &reason),
    }
}

/// The cache over Redis, evicting on Redis' client tracking (fred): its own writes come
/// back to it as invalidations, late and in any order with its reads, and must not break
/// what it promises alone (a read after a write returned sees it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_redis_tracked() {
    use session_core::{InvalidationFeed, TrackOptions};
    let url = match server_url(Backend::Redis) {
        Ok(url) => url,
        Err(Skip(reason)) => return skip("linearizability on tracked cached redis", &reason),
    };
    let redis = session_redis::RedisStore::builder()
        .url(&url)
        .prefix(format!("{}:", integration_tests::unique_name("lin")))
        .connect()
        .await
        .unwrap();
    let feed = redis
        .watch_invalidations(TrackOptions::default())
        .await
        .unwrap();
    let cached = CachedStore::builder(redis)
        .staleness(Duration::from_secs(60))
        .invalidations(feed)
        .build();
    check("cached-redis-tracked", Arc::new(cached)).await;
}

/// The in-process stores again, with every partition but one in five hot and nothing else
/// running: their calls take microseconds, so a race inside one call (a delete slipping
/// between another call's read and write) shows only when calls on one session overlap a
/// lot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_stores_under_contention() {
    let contention = || Workload {
        updaters: 0,
        churners: 0,
        recorded: Some(Partitions {
            workers: 4,
            hot_rounds: 4,
            ..Partitions::default()
        }),
        ..Workload::default()
    };
    let stores: [(&str, Arc<dyn SessionStore>); 3] = [
        ("contended-memory", Arc::new(MemoryStore::new())),
        (
            "contended-hashed-memory",
            Arc::new(HashedIds::new(MemoryStore::new())),
        ),
        (
            "contended-cached-memory",
            Arc::new(CachedStore::builder(MemoryStore::new()).build()),
        ),
    ];
    for (name, store) in stores {
        check_with(name, store, contention()).await;
    }
}

/// Both Redis clients on `backend`, each on a prefix of its own.
async fn redis_clients(backend: Backend, workload: fn() -> Workload) {
    let url = match server_url(backend) {
        Ok(url) => url,
        Err(Skip(reason)) => return skip(&format!("linearizability on {backend:?}"), &reason),
    };
    for client in [session_redis::Client::Fred, session_redis::Client::RedisRs] {
        let store = session_redis::RedisStore::builder()
            .url(&url)
            .client(client)
            .prefix(format!("{}:", integration_tests::unique_name("lin")))
            .connect()
            .await
            .unwrap();
        let name = format!("{backend:?}-{client:?}").to_lowercase();
        check_with(&name, Arc::new(store), workload()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster() {
    // Listings and revocations span nodes there, without one instant (the crate docs say
    // so): the calls on one session are checked.
    redis_clients(Backend::RedisCluster, weaker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel() {
    // One primary: every call, owner-wide ones included, is one atomic step.
    redis_clients(Backend::RedisSentinel, Workload::default).await;
}

/// session-postgres in the express-session format (connect-pg-simple's table): every call
/// there is a read, then a compare-and-swap on the text read, and `destroy_by_owner` a scan
/// then one `DELETE`: the history must still be linearizable, owner-wide calls included
/// (a first version, locking the owner's rows in a transaction, then deleting, failed here:
/// a listing between the two saw a login the revocation's snapshot had missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_express_session() {
    let url = match server_url(Backend::Postgres) {
        Ok(url) => url,
        Err(Skip(reason)) => return skip("linearizability on postgres-express", &reason),
    };
    let store = session_postgres::PostgresStore::builder()
        .schema("scenarios")
        .table(integration_tests::unique_name("lin"))
        .express_session()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    check("postgres-express", Arc::new(store)).await;
}

/// session-mongo in the express-session format (connect-mongo's documents): every write is
/// a read, then a compare-and-swap on the document read (under lease locks on FerretDB);
/// moves and owner-wide calls are not one step there, as in the native format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_express_session() {
    let url = match server_url(Backend::Mongo) {
        Ok(url) => url,
        Err(Skip(reason)) => return skip("linearizability on mongo-express", &reason),
    };
    let config = session_mongo::MongoConfig {
        collection: Some(integration_tests::unique_name("lin")),
        expiry: session_mongo::ExpiryMode::Disabled,
        format: session_mongo::Format::ExpressSession,
        ..Default::default()
    };
    let store = session_mongo::MongoStore::connect(&url, config)
        .await
        .unwrap();
    check_with("mongo-express", Arc::new(store), weaker()).await;
}

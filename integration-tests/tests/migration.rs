//! Moving sessions between backends on the real servers: the conformance suite and the
//! linearizability checker through a `MigratingStore` at each phase of a cut-over, and
//! `session_admin::migrate` between every pair of backends while traffic runs through the
//! wrapper, killed half-way and resumed.
//!
//! `SESSION_STORES_MIGRATE_SESSIONS` sets the sessions per pair (CI: 400, four pairs at a
//! time; the documented run: 100000, one pair at a time, with `-- --nocapture` for the
//! figures); `SESSION_STORES_MIGRATE_EXCLUDE`
//! (e.g. `Mongo`) leaves backends out of that run, `SESSION_STORES_MIGRATE_PAIRS` (e.g.
//! `Redis:Postgres,Mongo:Sqlite`) runs only those pairs.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use integration_tests::linearizable::Partitions;
use integration_tests::targets::Target;
use integration_tests::workload::Workload;
use integration_tests::{Backend, Skip, server_url};
use session_admin::migrate::{MigrateOptions, MigrateReport, migrate};
use session_core::conformance::{Harness, NotApplicable, Phase, PhasedMigration, Unrun, skip};
use session_core::{
    MigratingStore, Record, ScanSessions, SessionId, SessionStore, StoreOptions, async_trait,
    is_tombstone, modify,
};
use session_postgres::PostgresStore;
use session_redis::RedisStore;

fn namespace() -> String {
    integration_tests::unique_name("mig")
}

/// The Redis server's URL, in database 8 when it names none: other tests fill database 0
/// with many keys, which every scan (`count` through the wrapper, `migrate`) walks past.
fn redis_url() -> Result<String, Skip> {
    let url = server_url(Backend::Redis)?;
    let bare = url.trim_end_matches('/');
    Ok(match bare.split_once("://") {
        Some((_, rest)) if !rest.contains(['/', '?']) => format!("{bare}/8"),
        _ => url,
    })
}

/// Sessions start in Redis (fred) and move to PostgreSQL, at one phase of the cut-over.
struct RedisToPostgres(Phase);

#[async_trait]
impl Harness for RedisToPostgres {
    type Store = PhasedMigration<RedisStore, PostgresStore>;

    async fn available(&self) -> Result<(), Skip> {
        server_url(Backend::Redis)?;
        server_url(Backend::Postgres).map(drop)
    }

    async fn store(&self, options: StoreOptions) -> Self::Store {
        let old = RedisStore::builder()
            .url(redis_url().unwrap())
            .prefix(format!("{}:", namespace()))
            .options(options.clone())
            .connect()
            .await
            .unwrap();
        let new = PostgresStore::builder()
            .schema("migration")
            .table(namespace())
            .options(options)
            .max_connections(4)
            .connect(&server_url(Backend::Postgres).unwrap())
            .await
            .unwrap();
        new.migrate().await.unwrap();
        PhasedMigration::new(MigratingStore::new(old, new), self.0)
    }

    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        // Where a session of this phase is found first.
        if self.0 == Phase::InOld {
            let old = store.store.old();
            old.raw_set(&old.key_for(id), b"{not json").await.unwrap();
        } else {
            let new = store.store.new_store();
            let sql = format!(
                "INSERT INTO {} (id, data, expires_at, created_at, version, owner, format) \
                 VALUES ($1, '[1,2]'::json, now() + interval '1 hour', now(), 1, NULL, 1)",
                new.table()
            );
            session_postgres::sqlx::query(&sql)
                .bind(id.expose())
                .execute(new.pool())
                .await
                .unwrap();
        }
        Ok(())
    }

    async fn slow_store(&self, _: StoreOptions) -> Result<Self::Store, Unrun> {
        Err(NotApplicable(
            "the wrapper's own timeout is checked over slow stores in session-core's tests \
             (mutants.rs); each backend's in its own suite"
                .into(),
        )
        .into())
    }
}

#[test]
fn conformance_fresh_sessions() {
    session_core::conformance::run_suite(|| RedisToPostgres(Phase::Fresh));
}

#[test]
fn conformance_sessions_in_the_old_store() {
    session_core::conformance::run_suite(|| RedisToPostgres(Phase::InOld));
}

#[test]
fn conformance_sessions_copied() {
    session_core::conformance::run_suite(|| RedisToPostgres(Phase::Copied));
}

/// The recorded workload through the wrapper with every session it creates starting in the
/// old store: each first call on it moves it. Moves are two steps there and revocations
/// span two stores, so those are watched as on MongoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_while_sessions_move() {
    if let Err(Skip(reason)) = RedisToPostgres(Phase::InOld).available().await {
        return skip("linearizability through a migrating store", &reason);
    }
    // The default mix, then every partition but one in five hot (calls on one session
    // overlapping: a first read racing a destroy or a move shows there).
    let hot = || Workload {
        updaters: 0,
        churners: 0,
        recorded: Some(Partitions {
            workers: 4,
            hot_rounds: 4,
            ..Target::Mongo.partitions()
        }),
        ..Workload::default()
    };
    let runs = [
        (
            Phase::InOld,
            "mix",
            Workload {
                recorded: Some(Target::Mongo.partitions()),
                ..Workload::default()
            },
        ),
        (Phase::InOld, "hot", hot()),
        (Phase::Copied, "hot", hot()),
    ];
    for (phase, mix, workload) in runs {
        let store = RedisToPostgres(phase).store(StoreOptions::default()).await;
        let name = format!("migrating-{phase:?}-{mix}").to_lowercase();
        let report = workload
            .start(Arc::new(store))
            .run(tokio::time::sleep(Duration::from_secs(4)))
            .await;
        report.assert_clean_and_linearizable(&name, &format!("healthy-{name}"), "healthy");
    }
}

/// A backend a migration reads from or writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Redis,
    Postgres,
    Mysql,
    Sqlite,
    Mongo,
    /// Target only: an in-process store can't be a source for another process.
    Memory,
}

impl Place {
    const SOURCES: [Place; 5] = [
        Place::Redis,
        Place::Postgres,
        Place::Mysql,
        Place::Sqlite,
        Place::Mongo,
    ];

    /// This place's store. Its calls get 30 s (not the default 5 s): four pairs migrate side
    /// by side beside the traffic, and on a loaded CI machine a revocation across two slow
    /// stores (FerretDB's locked deletes) outran 5 s. This test judges what the migration
    /// keeps, not how fast; the timeouts have tests of their own.
    async fn open(self) -> Result<Arc<dyn ScanSessions>, Skip> {
        let options = StoreOptions {
            timeout: Duration::from_secs(30),
            ..StoreOptions::default()
        };
        let network = |target: Target, backend: Backend| {
            let options = options.clone();
            async move {
                let url = server_url(backend)?;
                Ok(target.connect_scanning(&url, options).await.unwrap())
            }
        };
        match self {
            Self::Redis => Ok(Target::RedisFred
                .connect_scanning(&redis_url()?, options)
                .await
                .unwrap()),
            Self::Postgres => network(Target::Postgres, Backend::Postgres).await,
            Self::Mysql => network(Target::Mysql, Backend::Mysql).await,
            Self::Mongo => network(Target::Mongo, Backend::Mongo).await,
            Self::Memory => Ok(Arc::new(
                session_memory::MemoryStore::builder()
                    .options(options)
                    .build(),
            )),
            Self::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", namespace()));
                let store = session_sqlite::SqliteStore::builder()
                    .options(options)
                    .connect(&format!("sqlite://{}?mode=rwc", path.display()))
                    .await
                    .unwrap();
                store.migrate().await.unwrap();
                Ok(Arc::new(store))
            }
        }
    }
}

fn sessions_per_pair() -> usize {
    std::env::var("SESSION_STORES_MIGRATE_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400)
}

/// What the traffic through the wrapper did, as acknowledged.
#[derive(Default)]
struct Traffic {
    /// Each updated session's counter, as last acknowledged.
    hits: HashMap<SessionId, u64>,
    /// Sessions destroyed or revoked (acknowledged).
    ended: HashSet<SessionId>,
    /// Sessions created through the wrapper.
    created: HashSet<SessionId>,
    calls: u64,
}

/// Updates, destroys, creations and one revocation through `store` until `stop`.
async fn traffic(
    store: Arc<MigratingStore<Arc<dyn ScanSessions>, Arc<dyn ScanSessions>>>,
    ids: Vec<SessionId>,
    stop: Arc<AtomicBool>,
) -> Traffic {
    let mut done = Traffic::default();
    // One owner revoked while the copy runs: its sessions are in both stores or either.
    done.ended.extend(
        ids.iter()
            .enumerate()
            .filter(|(n, _)| n % owners(ids.len()) == 3)
            .map(|(_, id)| id.clone()),
    );
    assert_eq!(
        store.destroy_by_owner("owner-3").await.unwrap() as usize,
        done.ended.len(),
        "the revocation missed sessions"
    );
    while !stop.load(Ordering::Relaxed) {
        let id = &ids[fastrand::usize(..ids.len())];
        done.calls += 1;
        if done.ended.contains(id) {
            assert!(
                store.get(id).await.unwrap().is_none(),
                "an ended session came back"
            );
            continue;
        }
        match fastrand::u8(..20) {
            0 => {
                store.destroy(id).await.unwrap();
                done.ended.insert(id.clone());
            }
            1 => {
                let mut record = Record::new(session_core::now() + time::Duration::hours(1));
                store.create(&mut record).await.unwrap();
                done.created.insert(record.id().clone());
            }
            _ => {
                let (_, hits) = modify(&*store, id, 16, |s| {
                    let hits = s.get::<u64>("hits").ok().flatten().unwrap_or(0) + 1;
                    s.insert("hits", hits).unwrap();
                    hits
                })
                .await
                .unwrap()
                .expect("a live session was missing");
                done.hits.insert(id.clone(), hits);
            }
        }
    }
    done
}

/// How many owners `n` seeded sessions have: 40 sessions each in CI's run, 100 each (as
/// "log out everywhere" meets them) in the documented one.
fn owners(n: usize) -> usize {
    (n / 100).max(10)
}

/// Seeds `n` sessions into `source` (owners `owner-0`, `owner-1`, ...), returning their ids.
async fn seed(source: &dyn ScanSessions, n: usize) -> Vec<SessionId> {
    stream::iter(0..n)
        .map(|i| async move {
            let mut record = Record::new(session_core::now() + time::Duration::hours(1));
            record.insert("n", i).unwrap();
            record.set_owner(Some(format!("owner-{}", i % owners(n))));
            source.create(&mut record).await.unwrap();
            record.id().clone()
        })
        .buffered(32)
        .collect()
        .await
}

/// One pair: seed, migrate with traffic through the wrapper, killed after two pages and
/// resumed; then the target alone must hold every session as last acknowledged.
async fn migrate_pair(from: Place, to: Place) -> Result<String, Skip> {
    let (source, target) = (from.open().await?, to.open().await?);
    let n = sessions_per_pair();
    let ids = seed(&*source, n).await;
    let store = Arc::new(MigratingStore::new(
        Arc::clone(&source),
        Arc::clone(&target),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(traffic(Arc::clone(&store), ids.clone(), Arc::clone(&stop)));

    let checkpoint = std::env::temp_dir().join(format!("{}.checkpoint", namespace()));
    let options = MigrateOptions {
        batch: (n / 8).max(10),
        // About three quarters of a second, so that traffic runs through the whole copy.
        rate: Some((n as u32 * 4 / 3).max(100)),
        checkpoint: Some(checkpoint.clone()),
        ..MigrateOptions::default()
    };
    let started = Instant::now();
    // Killed (the future dropped, as by Ctrl-C) once two pages are done.
    let (pages_tx, mut pages_rx) = tokio::sync::watch::channel(0);
    tokio::select! {
        finished = migrate(&*source, &*target, &options, |r| { pages_tx.send_replace(r.pages); }) => {
            panic!("the migration finished before it was killed: {finished:?}");
        }
        _ = pages_rx.wait_for(|pages| *pages >= 2) => {}
    }
    let report = migrate(&*source, &*target, &options, |_| {}).await.unwrap();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let traffic = traffic.await.unwrap();
    std::fs::remove_file(&checkpoint).ok();

    check_target(&*target, &ids, &traffic, &report).await;
    Ok(format!(
        "{from:?} -> {to:?}: {n} sessions in {:.2} s ({:.0}/s) with {} calls through the wrapper; \
         copied {}, kept {}, ended {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        traffic.calls,
        report.copied,
        report.kept,
        report.ended
    ))
}

/// The target alone, as after the cut-over: every session there as last acknowledged, none
/// ended one back.
async fn check_target(
    target: &dyn ScanSessions,
    ids: &[SessionId],
    traffic: &Traffic,
    report: &MigrateReport,
) {
    assert!(report.complete && report.resumed, "{report:?}");
    let verification = report.verification.as_ref().unwrap();
    assert!(
        verification.passed(),
        "verification failed: {verification:?}"
    );
    for id in ids.iter().chain(&traffic.created) {
        let found = target.get(id).await.unwrap();
        let found = found.filter(|r| !is_tombstone(r));
        if traffic.ended.contains(id) {
            assert!(found.is_none(), "an ended session is live in the target");
            continue;
        }
        let found = found.expect("a live session is missing from the target");
        let hits = found.get::<u64>("hits").unwrap();
        assert_eq!(
            hits,
            traffic.hits.get(id).copied(),
            "the target holds a session older than its last acknowledged write"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_between_every_pair_of_backends() {
    let excluded = std::env::var("SESSION_STORES_MIGRATE_EXCLUDE").unwrap_or_default();
    let excluded = |place: Place| excluded.split(',').any(|name| name == format!("{place:?}"));
    let chosen = std::env::var("SESSION_STORES_MIGRATE_PAIRS").unwrap_or_default();
    let chosen = |from: Place, to: Place| {
        chosen.is_empty()
            || chosen
                .split(',')
                .any(|pair| pair == format!("{from:?}:{to:?}"))
    };
    let pairs: Vec<(Place, Place)> = Place::SOURCES
        .into_iter()
        .flat_map(|from| {
            Place::SOURCES
                .into_iter()
                .chain([Place::Memory])
                .map(move |to| (from, to))
        })
        .filter(|&(from, to)| from != to && !excluded(from) && !excluded(to) && chosen(from, to))
        .collect();
    // Each copy is paced and mostly waits, so CI runs a few pairs side by side; a measuring
    // run (its own session count) runs one at a time so that its figures are the pair's own.
    let side_by_side = if std::env::var_os("SESSION_STORES_MIGRATE_SESSIONS").is_some() {
        1
    } else {
        4
    };
    let outcomes: Vec<_> = stream::iter(pairs)
        .map(|(from, to)| async move { (from, to, migrate_pair(from, to).await) })
        .buffered(side_by_side)
        .collect()
        .await;
    let mut migrated = 0;
    for (from, to, outcome) in outcomes {
        match outcome {
            Ok(line) => {
                eprintln!("{line}");
                migrated += 1;
            }
            Err(Skip(reason)) => skip(&format!("migration {from:?} -> {to:?}"), &reason),
        }
    }
    eprintln!("{migrated} pairs migrated");
}

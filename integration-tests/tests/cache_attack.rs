//! Attacks on `CachedStore`'s promise: this process never serves a session older than its
//! own last write, and its reads are linearizable with its own writes.
//!
//! The backend is a `MemoryStore` behind [`Gated`], which can hold a call at a chosen point
//! (a read after it read, a write before and after it wrote), so each interleaving runs the
//! same way every time instead of once in a few hundred contended runs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_core::{
    InvalidationSink, Invalidations, Record, Rename, Result, SessionId, SessionStore, async_trait,
    now,
};
use session_memory::{CachedStore, MemoryStore};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// A point where [`Gated`] holds a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Point {
    /// A `get`, after it read the backend.
    AfterGet,
    /// A write, before it reaches the backend.
    BeforeWrite,
    /// A write, after the backend applied it (its reply still on the way).
    AfterWrite,
}

/// One held call: the test hears when the call reached the point, and lets it go on.
#[derive(Debug)]
struct Hold {
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// The test's side of a [`Hold`].
struct Held {
    reached: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl Held {
    async fn reached(&mut self) {
        (&mut self.reached)
            .await
            .expect("the held call was dropped");
    }

    fn release(self) {
        let _ = self.release.send(());
    }
}

/// A `MemoryStore` whose next calls reaching a [`Point`] wait there until released.
#[derive(Debug, Default)]
struct Gated {
    inner: MemoryStore,
    holds: Mutex<HashMap<Point, VecDeque<Hold>>>,
}

impl Gated {
    /// Holds the next call that reaches `point`.
    fn hold(&self, point: Point) -> Held {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.holds
            .lock()
            .unwrap()
            .entry(point)
            .or_default()
            .push_back(Hold {
                reached: reached_tx,
                release: release_rx,
            });
        Held {
            reached: reached_rx,
            release: release_tx,
        }
    }

    async fn pass(&self, point: Point) {
        let hold = self
            .holds
            .lock()
            .unwrap()
            .get_mut(&point)
            .and_then(VecDeque::pop_front);
        if let Some(hold) = hold {
            let _ = hold.reached.send(());
            let _ = hold.release.await;
        }
    }

    async fn write<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.pass(Point::BeforeWrite).await;
        let result = call.await;
        self.pass(Point::AfterWrite).await;
        result
    }
}

#[async_trait]
impl SessionStore for Gated {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        let found = self.inner.get(id).await;
        self.pass(Point::AfterGet).await;
        found
    }
    async fn insert(&self, record: &mut Record) -> Result<bool> {
        self.write(self.inner.insert(record)).await
    }
    async fn set(&self, record: &mut Record) -> Result<()> {
        self.write(self.inner.set(record)).await
    }
    async fn update(&self, record: &mut Record) -> Result<()> {
        self.write(self.inner.update(record)).await
    }
    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.write(self.inner.touch(id, expires_at)).await
    }
    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.write(self.inner.destroy(id)).await
    }
    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        self.write(self.inner.rename(from, to)).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.inner.list_by_owner(owner).await
    }
    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.write(self.inner.destroy_by_owner(owner)).await
    }
    async fn count(&self) -> Result<u64> {
        self.inner.count().await
    }
    async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
        self.write(self.inner.limit_owner(owner, keep)).await
    }
}

type Cached = Arc<CachedStore<Arc<Gated>>>;

fn cached(backend: &Arc<Gated>) -> Cached {
    Arc::new(
        CachedStore::builder(Arc::clone(backend))
            .staleness(Duration::from_secs(60))
            .build(),
    )
}

async fn owned_session(store: &Cached, owner: Option<&str>, value: u32) -> Record {
    let mut record = Record::new(now() + time::Duration::hours(1));
    record.set_owner(owner.map(str::to_owned));
    record.insert("v", value).unwrap();
    store.create(&mut record).await.unwrap();
    record
}

fn value(record: &Option<Record>) -> Option<u32> {
    record.as_ref().map(|r| r.get::<u32>("v").unwrap().unwrap())
}

/// A write `W` of this process is in flight; a read `R0` read the backend before `W`
/// reached it and is held there; `W` is applied (its reply still on the way); a read `R1`
/// sees `W`'s effect and returns; `R0` goes on (it may return the old value: it overlapped
/// `W`). A read `R2` that starts after `R1` returned must see `W`'s effect too: `R1` already
/// did, so `W` took effect before `R2` began. Returns what `R1` and `R2` read.
async fn read_around_a_write_in_flight(
    backend: &Arc<Gated>,
    store: &Cached,
    id: &SessionId,
    write: impl Future<Output = ()> + Send + 'static,
) -> (Option<u32>, Option<u32>) {
    let mut before = backend.hold(Point::BeforeWrite);
    let mut after = backend.hold(Point::AfterWrite);
    let w = tokio::spawn(write);
    before.reached().await;

    let mut read = backend.hold(Point::AfterGet);
    let r0 = {
        let (store, id) = (Arc::clone(store), id.clone());
        tokio::spawn(async move { store.get(&id).await.unwrap() })
    };
    read.reached().await;

    before.release();
    after.reached().await;
    let r1 = value(&store.get(id).await.unwrap());

    read.release();
    r0.await.unwrap();
    let r2 = value(&store.get(id).await.unwrap());

    after.release();
    w.await.unwrap();
    (r1, r2)
}

#[tokio::test]
async fn a_read_overlapping_a_destroy_never_caches_what_a_later_read_saw_gone() {
    let backend = Arc::new(Gated::default());
    let store = cached(&backend);
    let record = owned_session(&store, None, 1).await;
    let id = record.id().clone();
    let write = {
        let (store, id) = (Arc::clone(&store), id.clone());
        async move { store.destroy(&id).await.unwrap() }
    };
    let (r1, r2) = read_around_a_write_in_flight(&backend, &store, &id, write).await;
    assert_eq!(r1, None);
    assert_eq!(
        r2, None,
        "a destroyed session came back after a read saw it gone"
    );
    assert_eq!(value(&store.get(&id).await.unwrap()), None);
}

#[tokio::test]
async fn a_read_overlapping_an_update_never_caches_the_older_version() {
    let backend = Arc::new(Gated::default());
    let store = cached(&backend);
    let mut record = owned_session(&store, None, 1).await;
    let id = record.id().clone();
    let write = {
        let store = Arc::clone(&store);
        async move {
            record.insert("v", 2).unwrap();
            store.update(&mut record).await.unwrap();
        }
    };
    let (r1, r2) = read_around_a_write_in_flight(&backend, &store, &id, write).await;
    assert_eq!(r1, Some(2));
    assert_eq!(
        r2,
        Some(2),
        "a read went back to the version before an update"
    );
    assert_eq!(value(&store.get(&id).await.unwrap()), Some(2));
}

#[tokio::test]
async fn a_read_overlapping_a_rename_never_caches_the_old_id() {
    let backend = Arc::new(Gated::default());
    let store = cached(&backend);
    let record = owned_session(&store, None, 1).await;
    let id = record.id().clone();
    let write = {
        let (store, id) = (Arc::clone(&store), id.clone());
        async move {
            let fresh = SessionId::generate();
            assert_eq!(store.rename(&id, &fresh).await.unwrap(), Rename::Moved);
        }
    };
    let (r1, r2) = read_around_a_write_in_flight(&backend, &store, &id, write).await;
    assert_eq!(r1, None);
    assert_eq!(
        r2, None,
        "a renamed-away id came back after a read saw it gone"
    );
}

#[tokio::test]
async fn a_read_overlapping_a_revocation_never_caches_a_revoked_session() {
    let backend = Arc::new(Gated::default());
    let store = cached(&backend);
    let record = owned_session(&store, Some("u"), 1).await;
    let id = record.id().clone();
    let write = {
        let store = Arc::clone(&store);
        async move { assert_eq!(store.destroy_by_owner("u").await.unwrap(), 1) }
    };
    let (r1, r2) = read_around_a_write_in_flight(&backend, &store, &id, write).await;
    assert_eq!(r1, None);
    assert_eq!(
        r2, None,
        "a revoked session came back after a read saw it gone"
    );
}

#[tokio::test]
async fn a_read_overlapping_limit_owner_never_caches_an_ended_session() {
    let backend = Arc::new(Gated::default());
    let store = cached(&backend);
    let oldest = owned_session(&store, Some("u"), 1).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    owned_session(&store, Some("u"), 2).await;
    let id = oldest.id().clone();
    let write = {
        let store = Arc::clone(&store);
        async move { assert_eq!(store.limit_owner("u", 1).await.unwrap(), 1) }
    };
    let (r1, r2) = read_around_a_write_in_flight(&backend, &store, &id, write).await;
    assert_eq!(r1, None);
    assert_eq!(
        r2, None,
        "a session limit_owner ended came back after a read saw it gone"
    );
}

/// A session cached `here` with no owner, which `there` (another process) then gives to
/// `u`, as a login keeping the id would: the copy cached here still says "no owner".
async fn cached_here_then_owned_there(here: &Cached, there: &Cached) -> SessionId {
    let record = owned_session(here, None, 1).await;
    let id = record.id().clone();
    assert_eq!(value(&here.get(&id).await.unwrap()), Some(1));
    let mut login = there.get(&id).await.unwrap().unwrap();
    login.set_owner(Some("u".into()));
    there.update(&mut login).await.unwrap();
    id
}

/// Another process makes a session cached here (anonymous) belong to `u`; this process then
/// revokes `u`'s sessions, which ends that one in the backend. The copy cached here still
/// says "no owner", but it is a session this process revoked: it must not be served.
#[tokio::test]
async fn a_revocation_ends_a_cached_session_another_process_gave_the_owner() {
    let backend = Arc::new(Gated::default());
    let here = cached(&backend);
    let there = cached(&backend);
    let id = cached_here_then_owned_there(&here, &there).await;

    assert_eq!(here.destroy_by_owner("u").await.unwrap(), 1);
    assert!(
        here.get(&id).await.unwrap().is_none(),
        "a session this process revoked was served from its cache"
    );
}

/// The same with `limit_owner`, the other owner-wide write.
#[tokio::test]
async fn limit_owner_ends_a_cached_session_another_process_gave_the_owner() {
    let backend = Arc::new(Gated::default());
    let here = cached(&backend);
    let there = cached(&backend);
    let id = cached_here_then_owned_there(&here, &there).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    owned_session(&there, Some("u"), 2).await;

    assert_eq!(here.limit_owner("u", 1).await.unwrap(), 1);
    assert!(
        here.get(&id).await.unwrap().is_none(),
        "a session this process's limit_owner ended was served from its cache"
    );
}

// ---------------------------------------------------------------------------------------
// Invalidation feeds: another process's write reported to this process's cache

/// A feed the test reports into, as a backend would: `CachedStore`'s side of the feed, run
/// the same way every time (the Redis feed itself is tested below, on real servers).
async fn hand_fed(backend: &Arc<Gated>) -> (Cached, InvalidationSink) {
    let (tx, rx) = oneshot::channel();
    let feed = Invalidations::spawn(|sink| async move {
        let _ = tx.send(sink.clone());
        sink.closed().await;
    });
    let store = CachedStore::builder(Arc::clone(backend))
        .staleness(Duration::from_secs(60))
        .invalidations(feed)
        .build();
    (Arc::new(store), rx.await.unwrap())
}

/// A read of this process fetched `v1` and is held before it fills the cache; another
/// process writes `v2` and the feed reports it; the read goes on. The invalidation must
/// bump the stripe like a write of this process, so the held read can't cache `v1` after
/// the eviction: a later read must see `v2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_keeps_a_read_in_flight_from_caching_what_it_replaced() {
    let backend = Arc::new(Gated::default());
    let (here, sink) = hand_fed(&backend).await;
    let there = cached(&backend);
    let mut record = owned_session(&there, None, 1).await;
    let id = record.id().clone();

    let mut read = backend.hold(Point::AfterGet);
    let r0 = {
        let (here, id) = (Arc::clone(&here), id.clone());
        tokio::spawn(async move { value(&here.get(&id).await.unwrap()) })
    };
    read.reached().await;
    record.insert("v", 2).unwrap();
    there.update(&mut record).await.unwrap();
    sink.changed(vec![id.clone()]);
    // Let the feed's task (another worker) apply it before the read fills.
    tokio::time::sleep(Duration::from_millis(20)).await;
    read.release();
    assert_eq!(
        r0.await.unwrap(),
        Some(1),
        "the held read overlapped the write"
    );
    assert_eq!(
        value(&here.get(&id).await.unwrap()),
        Some(2),
        "a read that fetched the replaced value cached it after the invalidation"
    );
}

/// While the feed is lost nothing is cached (another process's writes would go unseen),
/// and what was cached is dropped; once restored, reads fill again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_feed_empties_the_cache_and_blocks_fills_until_restored() {
    let backend = Arc::new(Gated::default());
    let (here, sink) = hand_fed(&backend).await;
    let there = cached(&backend);
    let mut record = owned_session(&there, None, 1).await;
    let id = record.id().clone();
    assert_eq!(value(&here.get(&id).await.unwrap()), Some(1));

    sink.source_down("node");
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Another process writes while the feed is lost: its invalidation never comes.
    record.insert("v", 2).unwrap();
    there.update(&mut record).await.unwrap();
    assert_eq!(
        value(&here.get(&id).await.unwrap()),
        Some(2),
        "the cache kept an entry after the feed was lost"
    );
    record.insert("v", 3).unwrap();
    there.update(&mut record).await.unwrap();
    assert_eq!(
        value(&here.get(&id).await.unwrap()),
        Some(3),
        "the cache filled while the feed was lost"
    );

    sink.source_up("node");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(value(&here.get(&id).await.unwrap()), Some(3));
    // Cached again: a write the feed doesn't report stays unseen here.
    record.insert("v", 4).unwrap();
    there.update(&mut record).await.unwrap();
    assert_eq!(
        value(&here.get(&id).await.unwrap()),
        Some(3),
        "the cache never filled again after the feed came back"
    );
}

// ---------------------------------------------------------------------------------------
// Redis client tracking, two processes on real servers

mod tracking {
    use std::collections::HashMap;
    use std::time::Instant;

    use integration_tests::{Backend, Skip, server_url, unique_name};
    use session_core::conformance::skip;
    use session_core::{InvalidationFeed, TrackOptions};
    use session_redis::RedisStore;

    use super::*;

    /// How soon another process's write must show: far below the caches' staleness, so
    /// only the feed can explain it.
    const BOUND: Duration = Duration::from_millis(500);
    const STALENESS: Duration = Duration::from_secs(60);

    type Tracked = CachedStore<RedisStore>;

    fn server(backend: Backend, test: &str) -> Option<String> {
        match server_url(backend) {
            Ok(url) => Some(url),
            Err(Skip(reason)) => {
                skip(test, &reason);
                None
            }
        }
    }

    async fn store(url: &str, prefix: &str) -> RedisStore {
        RedisStore::builder()
            .url(url)
            .prefix(prefix)
            .connect()
            .await
            .expect("a Redis server was given but the store could not connect")
    }

    /// One "process": its own connections, its own feed, its own cache.
    async fn tracked(url: &str, prefix: &str) -> Tracked {
        let redis = store(url, prefix).await;
        let feed = redis
            .watch_invalidations(TrackOptions::default().heartbeat(Duration::from_millis(200)))
            .await
            .expect("watching invalidations");
        CachedStore::builder(redis)
            .staleness(STALENESS)
            .invalidations(feed)
            .build()
    }

    /// What `b` serves of `id`: the data's `v`, `None` when missing.
    async fn seen(b: &Tracked, id: &SessionId) -> Option<u32> {
        value(&b.get(id).await.unwrap())
    }

    /// Polls `b` until it serves `want`; how long that took (`None`: not within a few
    /// bounds, it kept serving something else).
    async fn until(b: &Tracked, id: &SessionId, want: Option<u32>) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < 4 * BOUND {
            if seen(b, id).await == want {
                return Some(started.elapsed());
            }
            tokio::task::yield_now().await;
        }
        None
    }

    /// `a` changes sessions `b` has cached (updates, touches, renames, destroys,
    /// re-creations); after each of `a`'s writes returns, `b` must serve the new state
    /// within [`BOUND`], and a destroyed session must stay gone.
    async fn another_processes_writes_show_promptly(url: &str, what: &str) {
        let prefix = format!("{}:", unique_name("trk"));
        let (a, b) = (tracked(url, &prefix).await, tracked(url, &prefix).await);
        // Per change, how long `b` took to show it (`None`: not within 4 bounds).
        let mut lags: Vec<Option<Duration>> = Vec::new();
        // Reads of a destroyed or renamed-away id, after `b` once saw it gone, that served it.
        let mut came_back = 0;
        for round in 0..30 {
            let mut record = Record::new(now() + time::Duration::hours(1));
            record.insert("v", 0).unwrap();
            a.create(&mut record).await.unwrap();
            lags.push(until(&b, record.id(), Some(0)).await);
            for v in 1..=6 {
                // `b` has it cached: a few reads, all served from its cache.
                seen(&b, record.id()).await;
                record.insert("v", v).unwrap();
                if v % 3 == 0 {
                    a.set(&mut record).await.unwrap();
                } else {
                    a.update(&mut record).await.unwrap();
                }
                lags.push(until(&b, record.id(), Some(v)).await);
            }
            // A touch: the data is the same, the expiry moves.
            let later = now() + time::Duration::hours(2);
            assert!(a.touch(record.id(), later).await.unwrap());
            let started = Instant::now();
            let mut lag = None;
            while started.elapsed() < 4 * BOUND {
                let r = b.get(record.id()).await.unwrap().unwrap();
                if r.expires_at() > now() + time::Duration::minutes(90) {
                    lag = Some(started.elapsed());
                    break;
                }
                tokio::task::yield_now().await;
            }
            lags.push(lag);
            // A rotation: the old id must go, the new one show.
            let old = record.id().clone();
            seen(&b, &old).await;
            let new = if round % 2 == 0 {
                a.cycle_id(&old).await.unwrap().unwrap()
            } else {
                let new = SessionId::generate();
                assert_eq!(a.rename(&old, &new).await.unwrap(), Rename::Moved);
                new
            };
            lags.push(until(&b, &old, None).await);
            lags.push(until(&b, &new, Some(6)).await);
            // A destroy: gone, and never served again.
            seen(&b, &new).await;
            a.destroy(&new).await.unwrap();
            lags.push(until(&b, &new, None).await);
            for _ in 0..20 {
                if seen(&b, &new).await.is_some() || seen(&b, &old).await.is_some() {
                    came_back += 1;
                }
            }
            if lags.iter().filter(|lag| lag.is_none()).count() > 3 {
                // Each late change costs seconds: enough to tell.
                break;
            }
        }
        let late = lags.iter().filter(|lag| lag.is_none()).count();
        let mut lags: Vec<Duration> = lags
            .into_iter()
            .map(|lag| lag.unwrap_or(4 * BOUND))
            .collect();
        lags.sort();
        let max = *lags.last().unwrap();
        let p99 = lags[lags.len() * 99 / 100];
        let p50 = lags[lags.len() / 2];
        eprintln!(
            "{what}: {} changes by another process seen after p50 {p50:?}, p99 {p99:?}, max \
             {max:?} ({late} not within {:?}); cache staleness {STALENESS:?}",
            lags.len(),
            4 * BOUND,
        );
        assert!(
            max < BOUND,
            "{what}: another process's write showed only after {max:?} (bound {BOUND:?}; \
             {late} changes not within {:?}): the feed didn't evict the cached entry",
            4 * BOUND
        );
        assert_eq!(
            came_back, 0,
            "{what}: a destroyed or renamed-away session came back"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn standalone_writes_show_promptly() {
        let test = "invalidation feed on Redis";
        if let Some(url) = server(Backend::Redis, test) {
            another_processes_writes_show_promptly(&url, "standalone").await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cluster_writes_show_promptly() {
        let test = "invalidation feed on Redis Cluster";
        if let Some(url) = server(Backend::RedisCluster, test) {
            another_processes_writes_show_promptly(&url, "cluster").await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sentinel_writes_show_promptly() {
        let test = "invalidation feed on Redis Sentinel";
        if let Some(url) = server(Backend::RedisSentinel, test) {
            another_processes_writes_show_promptly(&url, "sentinel").await;
        }
    }

    /// Every node of the deployment `url` names (all of a Cluster's, primaries and replicas).
    async fn nodes(url: &str) -> Vec<String> {
        let first = url.split(',').next().unwrap().trim().to_owned();
        let mut conn = redis::Client::open(first.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let listing: redis::RedisResult<String> = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await;
        match listing {
            Ok(listing) => listing
                .lines()
                .filter_map(|line| {
                    let address = line.split_whitespace().nth(1)?.split('@').next()?;
                    Some(format!("redis://{address}"))
                })
                .collect(),
            // Not a cluster.
            Err(_) => vec![first],
        }
    }

    /// Closes, on every node, the tracking connections of the feeds of `prefix`; how many.
    async fn kill_tracking(nodes: &[String], prefix: &str) -> usize {
        let name = format!("name=session-stores:tracking:{prefix} ");
        let mut killed = 0;
        for node in nodes {
            let Ok(client) = redis::Client::open(node.as_str()) else {
                continue;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                continue;
            };
            let listing: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut conn)
                .await
                .unwrap();
            for line in listing.lines().filter(|line| line.contains(&name)) {
                let id = line
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("id="))
                    .unwrap();
                let n: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(id)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(0);
                killed += usize::try_from(n).unwrap_or(0);
            }
        }
        killed
    }

    /// `b`'s tracking connections are killed again and again while `a` (no cache) writes
    /// every session `b` has cached, and while `b` keeps reading: invalidations pushed
    /// meanwhile are lost. Once the killing stops and `b`'s feed is back, `b` must serve
    /// every session as `a` last wrote it: it dropped its cache when the feed was lost and
    /// cached nothing until it was back.
    async fn a_lost_feed_serves_nothing_stale(url: &str, what: &str) {
        let prefix = format!("{}:", unique_name("trk"));
        let a = store(url, &prefix).await;
        let b = Arc::new(tracked(url, &prefix).await);
        let nodes = nodes(url).await;
        let mut records = Vec::new();
        for _ in 0..200 {
            let mut record = Record::new(now() + time::Duration::hours(1));
            record.insert("v", 0).unwrap();
            a.create(&mut record).await.unwrap();
            assert_eq!(seen(&b, record.id()).await, Some(0));
            records.push(record);
        }
        let ids: Vec<SessionId> = records.iter().map(|r| r.id().clone()).collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (b, ids, stop) = (Arc::clone(&b), ids.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for id in &ids {
                        let _ = b.get(id).await;
                    }
                }
            })
        };
        let killer = {
            let (nodes, prefix, stop) = (nodes.clone(), prefix.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut killed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    killed += kill_tracking(&nodes, &prefix).await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                killed
            })
        };
        // Each session written once, spread over the killing.
        for record in &mut records {
            record.insert("v", 1).unwrap();
            a.update(record).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let killed = killer.await.unwrap();
        reader.await.unwrap();
        assert!(
            killed > 0,
            "{what}: no tracking connection of {prefix} was found to kill"
        );
        // Back within a few heartbeats.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut stale: HashMap<u32, usize> = HashMap::new();
        for id in &ids {
            let v = seen(&b, id).await.unwrap();
            if v != 1 {
                *stale.entry(v).or_default() += 1;
            }
        }
        eprintln!(
            "{what}: killed {killed} tracking connections while writing; stale after: {stale:?}"
        );
        assert!(
            stale.is_empty(),
            "{what}: after the feed was lost and came back, sessions were served stale: {stale:?}"
        );
        // And it caches again, evicting on writes as before.
        let mut record = records.pop().unwrap();
        seen(&b, record.id()).await;
        record.insert("v", 2).unwrap();
        a.update(&mut record).await.unwrap();
        let lag = until(&b, record.id(), Some(2)).await;
        assert!(
            lag.is_some_and(|lag| lag < BOUND),
            "{what}: the feed didn't come back ({lag:?})"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn standalone_lost_feed() {
        let test = "invalidation feed lost on Redis";
        if let Some(url) = server(Backend::Redis, test) {
            a_lost_feed_serves_nothing_stale(&url, "standalone").await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cluster_lost_feed() {
        let test = "invalidation feed lost on Redis Cluster";
        if let Some(url) = server(Backend::RedisCluster, test) {
            a_lost_feed_serves_nothing_stale(&url, "cluster").await;
        }
    }

    /// redis-rs has no tracking feed: a typed configuration error, not a panic or a feed
    /// that never reports.
    #[tokio::test]
    async fn redis_rs_refuses() {
        let Some(url) = server(Backend::Redis, "invalidation feed on redis-rs") else {
            return;
        };
        let redis = RedisStore::builder()
            .url(url)
            .redis_rs()
            .connect()
            .await
            .unwrap();
        let error = redis
            .watch_invalidations(TrackOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(error, session_core::Error::Config(_)), "{error:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Attacks on the Redis feed's connection: a tracking connection of our own server, through
// a toxiproxy proxy of our own, stalled or slowed while it stays open (the shared servers
// are never touched). The cached store itself talks to the server directly, so only the
// feed is affected: what `b` serves stale can only be the cache's doing.

mod tracking_stalls {
    use std::time::Instant;

    use integration_tests::servers::{DedicatedServer, RedisServer};
    use integration_tests::toxiproxy::Toxiproxy;
    use integration_tests::{Skip, unique_name};
    use serde_json::json;
    use session_core::conformance::skip;
    use session_core::{InvalidationFeed, TrackOptions};
    use session_redis::RedisStore;

    use super::*;

    const HEARTBEAT: Duration = Duration::from_millis(200);
    const STALENESS: Duration = Duration::from_secs(60);
    /// Scheduling slack on top of a bound.
    const SLACK: Duration = Duration::from_millis(300);

    /// Our own server, a proxy in front of it, and the proxy's toxics by raw API calls (the
    /// crate's `Fault`s have no downstream stall).
    struct Rig {
        _server: RedisServer,
        url: String,
        proxy_url: String,
        api: String,
        name: String,
        http: reqwest::Client,
    }

    impl Rig {
        async fn start(test: &str) -> Option<Self> {
            let toxiproxy = match Toxiproxy::from_env() {
                Ok(toxiproxy) => toxiproxy,
                Err(Skip(reason)) => {
                    skip(test, &reason);
                    return None;
                }
            };
            let server = match RedisServer::start() {
                Ok(server) => server,
                Err(reason) => {
                    skip(test, &reason);
                    return None;
                }
            };
            let url = server.url();
            let name = unique_name("trkstall");
            let upstream = url.trim_start_matches("redis://").to_owned();
            let proxy = toxiproxy.proxy(&name, &upstream).await.unwrap();
            let proxy_url = format!("redis://{}", proxy.listen());
            Some(Self {
                _server: server,
                url,
                proxy_url,
                api: std::env::var(integration_tests::toxiproxy::URL_VAR)
                    .unwrap()
                    .trim()
                    .trim_end_matches('/')
                    .to_owned(),
                name,
                http: reqwest::Client::new(),
            })
        }

        async fn toxic(&self, kind: &str, attributes: serde_json::Value) {
            let response = self
                .http
                .post(format!("{}/proxies/{}/toxics", self.api, self.name))
                .json(
                    &json!({"name": "stall", "type": kind, "stream": "downstream",
                    "toxicity": 1.0, "attributes": attributes}),
                )
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{response:?}");
        }

        async fn lift(&self) {
            let response = self
                .http
                .delete(format!("{}/proxies/{}/toxics/stall", self.api, self.name))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{response:?}");
        }

        async fn stop(self) {
            let _ = self
                .http
                .delete(format!("{}/proxies/{}", self.api, self.name))
                .send()
                .await;
        }

        async fn store(&self, url: &str, prefix: &str) -> RedisStore {
            RedisStore::builder()
                .url(url)
                .prefix(prefix)
                .connect()
                .await
                .unwrap()
        }

        /// `b`: a cache of the server (direct), fed by a feed of the same server and prefix
        /// through the proxy.
        async fn tracked(&self, prefix: &str) -> CachedStore<RedisStore> {
            let feed = self
                .store(&self.proxy_url, prefix)
                .await
                .watch_invalidations(TrackOptions::default().heartbeat(HEARTBEAT))
                .await
                .unwrap();
            CachedStore::builder(self.store(&self.url, prefix).await)
                .staleness(STALENESS)
                .invalidations(feed)
                .build()
        }
    }

    /// Polls `b` until it serves `want` for `id`; how long that took, or `None` after `within`.
    async fn until(
        b: &CachedStore<RedisStore>,
        id: &SessionId,
        want: Option<u32>,
        within: Duration,
    ) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < within {
            if value(&b.get(id).await.unwrap()) == want {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }

    /// `a` (no cache) writes `v` into `record`.
    async fn write(a: &RedisStore, record: &mut Record, v: u32) {
        record.insert("v", v).unwrap();
        a.set(record).await.unwrap();
    }

    /// The tracking connection stays open but nothing comes back from the server (toxiproxy
    /// `timeout` toxic with timeout 0 on the downstream: no bytes, no close), for longer
    /// than two heartbeats. The feed must notice by its `PING` within two heartbeats, drop
    /// the cache and bypass it: another process's writes show within that bound, and again
    /// at once while the stall lasts. Once the stall is lifted the feed must come back and
    /// evict promptly again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_stalled_tracking_connection_drops_and_bypasses_the_cache() {
        let Some(rig) = Rig::start("tracking connection stalled").await else {
            return;
        };
        let prefix = format!("{}:", unique_name("stall"));
        let a = rig.store(&rig.url, &prefix).await;
        let b = rig.tracked(&prefix).await;
        let mut record = Record::new(now() + time::Duration::hours(1));
        write(&a, &mut record, 0).await;
        let id = record.id().clone();
        assert_eq!(value(&b.get(&id).await.unwrap()), Some(0));
        assert_eq!(value(&b.get(&id).await.unwrap()), Some(0));

        rig.toxic("timeout", json!({"timeout": 0})).await;
        write(&a, &mut record, 1).await;
        let bound = 2 * HEARTBEAT + SLACK;
        let lag = until(&b, &id, Some(1), 4 * bound).await;
        assert!(
            lag.is_some_and(|lag| lag < bound),
            "a write while the tracking connection is stalled (open, silent) showed after \
             {lag:?}, bound two heartbeats + slack = {bound:?}"
        );
        // Still stalled: the cache is bypassed, so the next write shows at once.
        for v in 2..5 {
            write(&a, &mut record, v).await;
            let lag = until(&b, &id, Some(v), 4 * bound).await;
            // Not cached, it shows at the next read; the bound only leaves room for a
            // loaded machine (a cache not bypassed would serve it for its 60 s).
            assert!(
                lag.is_some_and(|lag| lag < bound),
                "while the feed is lost, a write showed only after {lag:?}: the cache was \
                 not bypassed"
            );
        }
        rig.lift().await;
        // Back within a few heartbeats (a reconnect every heartbeat).
        tokio::time::sleep(5 * HEARTBEAT + SLACK).await;
        assert_eq!(value(&b.get(&id).await.unwrap()), Some(4));
        write(&a, &mut record, 5).await;
        let lag = until(&b, &id, Some(5), 4 * bound).await;
        assert!(
            lag.is_some_and(|lag| lag < SLACK),
            "after the stall was lifted, a write showed after {lag:?}"
        );
        a.destroy(&id).await.unwrap();
        let lag = until(&b, &id, None, 4 * bound).await;
        assert!(
            lag.is_some_and(|lag| lag < SLACK),
            "destroyed, served for {lag:?}"
        );
        for _ in 0..20 {
            assert_eq!(
                value(&b.get(&id).await.unwrap()),
                None,
                "destroyed, served again"
            );
        }
        rig.stop().await;
    }

    /// The tracking connection is slow but alive: every byte from the server 150 ms late, less
    /// than the heartbeat, so every `PING` is answered in time and the feed never reports
    /// lost. Invalidations arrive late, and so the cache may serve the old value that long,
    /// but no longer: a write shows within the delay plus slack, never after two heartbeats.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_slow_tracking_connection_delays_eviction_by_its_delay_only() {
        let Some(rig) = Rig::start("tracking connection slow").await else {
            return;
        };
        let prefix = format!("{}:", unique_name("slow"));
        let a = rig.store(&rig.url, &prefix).await;
        let b = rig.tracked(&prefix).await;
        let mut record = Record::new(now() + time::Duration::hours(1));
        write(&a, &mut record, 0).await;
        let id = record.id().clone();
        assert_eq!(value(&b.get(&id).await.unwrap()), Some(0));
        rig.toxic("latency", json!({"latency": 150, "jitter": 0}))
            .await;
        // Let a heartbeat pass under the delay, so the feed is (still) whole.
        tokio::time::sleep(2 * HEARTBEAT).await;
        let bound = 2 * HEARTBEAT;
        let mut lags = Vec::new();
        for v in 1..6 {
            assert_eq!(value(&b.get(&id).await.unwrap()), Some(v - 1));
            write(&a, &mut record, v).await;
            lags.push(until(&b, &id, Some(v), 4 * bound).await);
        }
        rig.lift().await;
        eprintln!("slow feed (150 ms): lags {lags:?}");
        assert!(
            lags.iter().all(|lag| lag.is_some_and(|lag| lag < bound)),
            "with a feed 150 ms slow, writes showed after {lags:?} (bound {bound:?})"
        );
        rig.stop().await;
    }
}

/// A read fetched `v1` before the feed was lost and is held before it fills; while the feed
/// is lost another process writes `v2` (its invalidation is never heard); the feed is
/// restored; then the read goes on. The read started before `Lost` and ends after
/// `Restored`: it must not cache `v1`, which nothing would ever evict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_spanning_a_lost_feed_never_caches_what_it_fetched_before() {
    let backend = Arc::new(Gated::default());
    let (here, sink) = hand_fed(&backend).await;
    let there = cached(&backend);
    let mut record = owned_session(&there, None, 1).await;
    let id = record.id().clone();

    let mut read = backend.hold(Point::AfterGet);
    let r0 = {
        let (here, id) = (Arc::clone(&here), id.clone());
        tokio::spawn(async move { value(&here.get(&id).await.unwrap()) })
    };
    read.reached().await;
    sink.source_down("node");
    record.insert("v", 2).unwrap();
    there.update(&mut record).await.unwrap();
    sink.source_up("node");
    // Let the feed's task apply both before the read fills.
    tokio::time::sleep(Duration::from_millis(20)).await;
    read.release();
    assert_eq!(r0.await.unwrap(), Some(1));
    assert_eq!(
        value(&here.get(&id).await.unwrap()),
        Some(2),
        "a read that began before the feed was lost cached its value after it was restored"
    );
}

mod tracking_admin_writes {
    use std::time::Instant;

    use integration_tests::servers::{DedicatedServer, RedisServer};
    use session_core::conformance::skip;
    use session_core::{InvalidationFeed, TrackOptions};
    use session_redis::RedisStore;

    use super::*;

    const BOUND: Duration = Duration::from_millis(500);

    async fn store(url: &str, prefix: &str) -> RedisStore {
        RedisStore::builder()
            .url(url)
            .prefix(prefix)
            .connect()
            .await
            .unwrap()
    }

    async fn tracked(url: &str, prefix: &str) -> CachedStore<RedisStore> {
        let redis = store(url, prefix).await;
        let feed = redis
            .watch_invalidations(TrackOptions::default().heartbeat(Duration::from_millis(200)))
            .await
            .unwrap();
        CachedStore::builder(redis)
            .staleness(Duration::from_secs(60))
            .invalidations(feed)
            .build()
    }

    async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Polls until `b` serves what its backend (uncached) serves; how long, or `None`.
    async fn converges(b: &CachedStore<RedisStore>, id: &SessionId) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < 4 * BOUND {
            let backend = value(&b.inner().get(id).await.unwrap());
            if value(&b.get(id).await.unwrap()) == backend {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    /// Our own server, a session `b` has cached as `v1` in database 0, and a copy of its
    /// key as `v0` in database 1.
    async fn setup(
        test: &str,
    ) -> Option<(
        RedisServer,
        CachedStore<RedisStore>,
        SessionId,
        redis::aio::MultiplexedConnection,
    )> {
        let server = match RedisServer::start() {
            Ok(server) => server,
            Err(reason) => {
                skip(test, &reason);
                return None;
            }
        };
        let url = server.url();
        let prefix = format!("{}:", integration_tests::unique_name("adm"));
        let a = store(&url, &prefix).await;
        let b = tracked(&url, &prefix).await;
        let mut conn = raw(&url).await;
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.insert("v", 0).unwrap();
        a.set(&mut record).await.unwrap();
        let id = record.id().clone();
        let key = format!("{prefix}{}", id.expose());
        let copied: i64 = redis::cmd("COPY")
            .arg(&key)
            .arg(&key)
            .arg("DB")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(copied, 1, "the session key {key} wasn't there to copy");
        record.insert("v", 1).unwrap();
        a.set(&mut record).await.unwrap();
        assert_eq!(value(&b.get(&id).await.unwrap()), Some(1));
        assert_eq!(value(&b.get(&id).await.unwrap()), Some(1));
        Some((server, b, id, conn))
    }

    /// `SWAPDB 0 1` by another process: database 0 now holds `v0`. The store reads `v0`;
    /// its cache must not keep serving `v1`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "known gap, documented in session-redis tracking: SWAPDB is not reported \
                to the feed (like FLUSHDB), so a cache serves the swapped-out session \
                for its time-to-live"]
    async fn swapdb_evicts() {
        let Some((_server, b, id, mut conn)) = setup("tracking SWAPDB").await else {
            return;
        };
        let () = redis::cmd("SWAPDB")
            .arg(0)
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(value(&b.inner().get(&id).await.unwrap()), Some(0));
        let lag = converges(&b, &id).await;
        assert!(
            lag.is_some_and(|lag| lag < BOUND),
            "after SWAPDB by another process the backend serves v0 but the cache kept \
             serving v1 (converged: {lag:?}, bound {BOUND:?})"
        );
    }

    /// `MOVE key 1` by another process takes the session out of database 0: gone for the
    /// store, and so for its cache.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn move_evicts() {
        let Some((_server, b, id, mut conn)) = setup("tracking MOVE").await else {
            return;
        };
        let key = format!("{}{}", b.inner().prefix(), id.expose());
        let _: i64 = redis::cmd("MOVE")
            .arg(&key)
            .arg(2)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(value(&b.inner().get(&id).await.unwrap()), None);
        let lag = converges(&b, &id).await;
        assert!(
            lag.is_some_and(|lag| lag < BOUND),
            "after MOVE by another process the session is gone but the cache kept serving \
             it (converged: {lag:?})"
        );
    }
}

//! Attacks on `CachedStore`'s promise: this process never serves a session older than its
//! own last write, and its reads are linearizable with its own writes.
//!
//! The backend is a `MemoryStore` behind [`Gated`], which can hold a call at a chosen point
//! (a read after it read, a write before and after it wrote), so each interleaving runs the
//! same way every time instead of once in a few hundred contended runs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_core::{Record, Rename, Result, SessionId, SessionStore, async_trait, now};
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

//! A moka cache in front of any store, for read-heavy apps.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use moka::sync::Cache;
use session_core::{Invalidation, Invalidations, Record, Rename, Result, SessionId, SessionStore};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

/// Generation counters, striped by id: a read may fill the cache only if no write to its
/// stripe started or finished while it read the backend, and none is still running. The
/// check and the fill happen under the stripe's lock, the lock a write takes to bump the
/// counter and drop the entry: checked apart, a read could pass the check, lose the
/// processor while a destroy finished, and then cache the destroyed session for every later
/// read. A write still running counts too: its effect may already be visible in the
/// backend (another read saw it) before it returns and bumps the counter again, so a read
/// that fetched the value before it must not cache that value in between.
///
/// An invalidation from the feed ([`CachedStoreBuilder::invalidations`]) is another
/// process's write reported: it bumps its id's stripe the same way, so a read that fetched
/// the value that write replaced (the reply and the invalidation travel on different
/// connections, in either order) can't cache it. A lost feed counts as an owner-wide write
/// running until the feed is back: everything dropped, nothing filled.
const STRIPES: usize = 256;

/// A stripe's (or the owner-wide) write count, and how many of those writes are running.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Generation {
    bumps: u64,
    running: u64,
}

impl Generation {
    fn begin(&mut self) {
        self.bumps += 1;
        self.running += 1;
    }

    fn end(&mut self) {
        self.bumps += 1;
        self.running -= 1;
    }

    /// A write elsewhere, already done: what a read in flight fetched may be older.
    fn bump(&mut self) {
        self.bumps += 1;
    }
}

/// Ends a write's bracket when dropped, also when the caller drops the write's future
/// part-way (a timeout): the write may still land, so the stripe isn't left open for fills
/// of what it overwrote.
struct Writing<'a> {
    state: &'a State,
    ids: &'a [&'a SessionId],
    owner: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if self.owner {
            self.state.forget_owner(Generation::end);
        } else {
            for id in self.ids {
                self.state.forget(id, Generation::end);
            }
        }
    }
}

/// Caches reads of another store in this process.
///
/// Writes go to the backend first and then invalidate the cached entry; a read fills the
/// cache only when no write to that session overlapped it, so this process never serves
/// a session older than its own last write — including one it destroyed, rotated away or
/// revoked, even when the backend call failed. A conflicting `update` also drops the
/// entry, so retries read fresh data.
///
/// Writes by *other* processes are seen at most [`CachedStore::builder`]'s
/// `staleness` (default 1 second) late: that is the price of not asking the backend.
/// Use it where a second of staleness is acceptable for reads, e.g. in front of a
/// remote store for a read-mostly app; compare-and-swap `update`s stay exact because the
/// backend checks the version.
///
/// **With an invalidation feed** ([`CachedStoreBuilder::invalidations`], e.g. Redis
/// client tracking from `session_redis::RedisStore`), another process's write evicts the
/// entry here as soon as the backend's notice arrives (well under a millisecond on a
/// LAN), whatever the `staleness`; while the feed is lost (its connection dropped or went
/// silent) the cache is empty and every read goes to the backend, until the feed is back.
/// The `staleness` then only bounds what the feed can't report (see the feed's docs; for
/// Redis, a `FLUSHDB`).
///
/// ```
/// use session_core::SessionStore;
/// use session_memory::{CachedStore, MemoryStore};
/// use std::time::Duration;
///
/// let store = CachedStore::builder(MemoryStore::new())
///     .staleness(Duration::from_millis(500))
///     .max_entries(10_000)
///     .build();
/// ```
pub struct CachedStore<S> {
    inner: S,
    /// Shared with the task reading the invalidation feed.
    state: Arc<State>,
    staleness: StdDuration,
    /// The task applying the feed's invalidations; aborted (which drops the feed) with the
    /// store.
    follower: Option<JoinHandle<()>>,
}

/// The cache and its generation counters.
struct State {
    cache: Cache<SessionId, Record>,
    generations: Box<[Mutex<Generation>]>,
    /// Bumped around owner-wide writes, whose ids aren't known in advance, and held running
    /// while the invalidation feed is lost; a fill holds it shared, a bump exclusively.
    owner_generation: RwLock<Generation>,
    hasher: std::collections::hash_map::RandomState,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("cached", &self.state.cache.entry_count())
            .field("staleness", &self.staleness)
            .field("invalidated", &self.follower.is_some())
            .finish()
    }
}

impl<S> Drop for CachedStore<S> {
    fn drop(&mut self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
    }
}

/// Builds a [`CachedStore`].
#[derive(Debug)]
pub struct CachedStoreBuilder<S> {
    inner: S,
    staleness: StdDuration,
    max_entries: u64,
    invalidations: Option<Invalidations>,
}

impl<S> CachedStoreBuilder<S> {
    /// How long a cached read may be reused: the most another process's write can go
    /// unseen here. Default 1 second.
    pub fn staleness(mut self, staleness: StdDuration) -> Self {
        self.staleness = staleness;
        self
    }

    /// How many sessions to cache at most; default 100,000.
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Evicts what `feed` reports changed, as it arrives, so other processes' writes show
    /// here without waiting for the `staleness`; while the feed is lost, caches nothing.
    /// Use a feed of the store being cached (for Redis:
    /// `InvalidationFeed::watch_invalidations` on the same `RedisStore`): a feed of another
    /// store would evict the wrong sessions and leave these stale. The `staleness` stays
    /// as a safety net for what the feed can't report.
    ///
    /// ```no_run
    /// # async fn demo() -> session_core::Result<()> {
    /// # use session_core::{InvalidationFeed, TrackOptions};
    /// # use session_memory::{CachedStore, MemoryStore};
    /// # let redis = MemoryStore::new(); // a RedisStore in practice
    /// # fn watch(_: &MemoryStore) -> session_core::Invalidations { unimplemented!() }
    /// let feed = watch(&redis); // redis.watch_invalidations(TrackOptions::default()).await?
    /// let store = CachedStore::builder(redis)
    ///     .invalidations(feed)
    ///     .staleness(std::time::Duration::from_secs(60))
    ///     .build();
    /// # Ok(()) }
    /// ```
    pub fn invalidations(mut self, feed: Invalidations) -> Self {
        self.invalidations = Some(feed);
        self
    }

    /// The caching store. With a feed, starts the task applying it on the feed's runtime.
    pub fn build(self) -> CachedStore<S> {
        let state = Arc::new(State {
            cache: Cache::builder()
                .max_capacity(self.max_entries)
                .time_to_live(self.staleness)
                .build(),
            generations: (0..STRIPES)
                .map(|_| Mutex::new(Generation::default()))
                .collect(),
            owner_generation: RwLock::new(Generation::default()),
            hasher: std::collections::hash_map::RandomState::new(),
        });
        let follower = self.invalidations.map(|feed| {
            let runtime = feed.runtime().clone();
            runtime.spawn(follow(Arc::clone(&state), feed))
        });
        CachedStore {
            inner: self.inner,
            state,
            staleness: self.staleness,
            follower,
        }
    }
}

/// Applies the feed's invalidations to the cache, for as long as the store lives.
async fn follow(state: Arc<State>, mut feed: Invalidations) {
    // The feed starts whole: `watch_invalidations` returns once it hears every change.
    let mut whole = true;
    while let Some(event) = feed.recv().await {
        match event {
            Invalidation::Changed(ids) => {
                for id in &ids {
                    state.forget(id, Generation::bump);
                }
            }
            Invalidation::Lost if whole => {
                whole = false;
                state.forget_owner(Generation::begin);
            }
            Invalidation::Lost => state.cache.invalidate_all(),
            Invalidation::Restored if !whole => {
                whole = true;
                state.forget_owner(Generation::end);
            }
            Invalidation::Restored => {}
        }
    }
    // The feed's task died: nothing will evict entries any more, so stop caching for good.
    if whole {
        state.forget_owner(Generation::begin);
    }
}

impl<S: SessionStore> CachedStore<S> {
    /// A builder caching reads of `inner`.
    pub fn builder(inner: S) -> CachedStoreBuilder<S> {
        CachedStoreBuilder {
            inner,
            staleness: StdDuration::from_secs(1),
            max_entries: 100_000,
            invalidations: None,
        }
    }

    /// The backing store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S> CachedStore<S> {
    /// Runs a backend write on `ids`, keeping the cache from holding anything older.
    async fn write<T>(
        &self,
        ids: &[&SessionId],
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        ids.iter()
            .for_each(|id| self.state.forget(id, Generation::begin));
        let _writing = Writing {
            state: &self.state,
            ids,
            owner: false,
        };
        call.await
    }

    /// Runs a backend write on all sessions of `owner`, keeping the cache from holding any
    /// of them older.
    async fn write_owner<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.state.forget_owner(Generation::begin);
        let _writing = Writing {
            state: &self.state,
            ids: &[],
            owner: true,
        };
        call.await
    }
}

impl State {
    /// The generation lock of `id`'s stripe. Nothing panics while holding one, so a
    /// poisoned lock still holds a valid count.
    fn generation(&self, id: &SessionId) -> MutexGuard<'_, Generation> {
        self.generations[self.hasher.hash_one(id) as usize % STRIPES]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What a read of `id` must see unchanged to keep what it cached.
    fn generations_of(&self, id: &SessionId) -> (Generation, Generation) {
        let owner = *self
            .owner_generation
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (*self.generation(id), owner)
    }

    /// Caches what a read of `id` found, unless a write overlapped the read or is still
    /// running: `before` is what [`Self::generations_of`] said when it started.
    fn fill(&self, id: &SessionId, record: &Record, before: (Generation, Generation)) {
        let owner = self
            .owner_generation
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = self.generation(id);
        if (*generation, *owner) == before && generation.running == 0 && owner.running == 0 {
            self.cache.insert(id.clone(), record.clone());
        }
    }

    /// Marks a write of `id` begun or ended (`step`) and drops what the cache holds of it.
    fn forget(&self, id: &SessionId, step: fn(&mut Generation)) {
        let mut generation = self.generation(id);
        step(&mut generation);
        self.cache.invalidate(id);
    }

    /// Marks an owner-wide write begun or ended and drops the whole cache: the cached copy
    /// of a session the write ends may name another owner (or none), when another process
    /// gave the session its owner after this one cached it, so filtering by the cached
    /// owner would keep a session this process just revoked. Dropping all is one
    /// timestamp in moka, cheaper than walking the cache.
    fn forget_owner(&self, step: fn(&mut Generation)) {
        let mut generation = self
            .owner_generation
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        step(&mut generation);
        self.cache.invalidate_all();
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for CachedStore<S> {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        if let Some(record) = self.state.cache.get(id).filter(|r| !r.is_expired()) {
            return Ok(Some(record));
        }
        let before = self.state.generations_of(id);
        let record = self.inner.get(id).await?;
        if let Some(record) = &record {
            self.state.fill(id, record, before);
        }
        Ok(record)
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        let id = record.id().clone();
        self.write(&[&id], self.inner.insert(record)).await
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        let id = record.id().clone();
        self.write(&[&id], self.inner.set(record)).await
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let id = record.id().clone();
        self.write(&[&id], self.inner.update(record)).await
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.write(&[id], self.inner.touch(id, expires_at)).await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.write(&[id], self.inner.destroy(id)).await
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        self.write(&[from, to], self.inner.rename(from, to)).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.inner.list_by_owner(owner).await
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.write_owner(self.inner.destroy_by_owner(owner)).await
    }

    async fn count(&self) -> Result<u64> {
        self.inner.count().await
    }

    async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
        self.write_owner(self.inner.limit_owner(owner, keep)).await
    }

    fn timeout(&self) -> StdDuration {
        self.inner.timeout()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::MemoryStore;
    use session_core::now;

    fn two_processes(
        staleness: StdDuration,
    ) -> (CachedStore<Arc<MemoryStore>>, CachedStore<Arc<MemoryStore>>) {
        let shared = Arc::new(MemoryStore::new());
        let a = CachedStore::builder(Arc::clone(&shared))
            .staleness(staleness)
            .build();
        let b = CachedStore::builder(shared).staleness(staleness).build();
        (a, b)
    }

    #[tokio::test]
    async fn other_processes_writes_show_within_the_staleness_window() {
        let (a, b) = two_processes(StdDuration::from_millis(200));
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.insert("v", 1).unwrap();
        a.create(&mut record).await.unwrap();
        assert_eq!(
            b.get(record.id())
                .await
                .unwrap()
                .unwrap()
                .get::<u32>("v")
                .unwrap(),
            Some(1)
        );

        record.insert("v", 2).unwrap();
        a.update(&mut record).await.unwrap();
        // a never serves older than its own write; b may, for at most the window.
        assert_eq!(
            a.get(record.id())
                .await
                .unwrap()
                .unwrap()
                .get::<u32>("v")
                .unwrap(),
            Some(2)
        );
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        assert_eq!(
            b.get(record.id())
                .await
                .unwrap()
                .unwrap()
                .get::<u32>("v")
                .unwrap(),
            Some(2)
        );

        // A stale cached version makes b's update conflict, and the conflict drops the entry.
        let mut stale = b.get(record.id()).await.unwrap().unwrap();
        a.update(&mut record).await.unwrap();
        assert!(b.update(&mut stale).await.unwrap_err().is_conflict());
        assert_eq!(
            b.get(record.id()).await.unwrap().unwrap().version(),
            record.version()
        );

        a.destroy(record.id()).await.unwrap();
        assert!(a.get(record.id()).await.unwrap().is_none());
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        assert!(b.get(record.id()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn owner_revocation_drops_cached_sessions() {
        let (a, _) = two_processes(StdDuration::from_secs(60));
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.set_owner(Some("u".into()));
        a.create(&mut record).await.unwrap();
        assert!(a.get(record.id()).await.unwrap().is_some());
        assert_eq!(a.destroy_by_owner("u").await.unwrap(), 1);
        assert!(
            a.get(record.id()).await.unwrap().is_none(),
            "a revoked session was served from cache"
        );
    }
}

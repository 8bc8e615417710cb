//! A moka cache in front of any store, for read-heavy apps.

use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use moka::sync::Cache;
use session_core::{Record, Rename, Result, SessionId, SessionStore};
use time::OffsetDateTime;

/// Generation counters, striped by id: a read may fill the cache only if no write to its
/// stripe started or finished while it read the backend, and none is still running. The
/// check and the fill happen under the stripe's lock, the lock a write takes to bump the
/// counter and drop the entry: checked apart, a read could pass the check, lose the
/// processor while a destroy finished, and then cache the destroyed session for every later
/// read. A write still running counts too: its effect may already be visible in the
/// backend (another read saw it) before it returns and bumps the counter again, so a read
/// that fetched the value before it must not cache that value in between.
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
}

/// Ends a write's bracket when dropped, also when the caller drops the write's future
/// part-way (a timeout): the write may still land, so the stripe isn't left open for fills
/// of what it overwrote.
struct Writing<'a, S> {
    store: &'a CachedStore<S>,
    ids: &'a [&'a SessionId],
    owner: bool,
}

impl<S> Drop for Writing<'_, S> {
    fn drop(&mut self) {
        if self.owner {
            self.store.forget_owner(Generation::end);
        } else {
            for id in self.ids {
                self.store.forget(id, Generation::end);
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
    cache: Cache<SessionId, Record>,
    generations: Box<[Mutex<Generation>]>,
    /// Bumped around owner-wide writes, whose ids aren't known in advance; a fill holds it
    /// shared, a bump exclusively.
    owner_generation: RwLock<Generation>,
    hasher: std::collections::hash_map::RandomState,
    staleness: StdDuration,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("cached", &self.cache.entry_count())
            .field("staleness", &self.staleness)
            .finish()
    }
}

/// Builds a [`CachedStore`].
#[derive(Debug)]
pub struct CachedStoreBuilder<S> {
    inner: S,
    staleness: StdDuration,
    max_entries: u64,
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

    /// The caching store.
    pub fn build(self) -> CachedStore<S> {
        CachedStore {
            inner: self.inner,
            cache: Cache::builder()
                .max_capacity(self.max_entries)
                .time_to_live(self.staleness)
                .build(),
            generations: (0..STRIPES)
                .map(|_| Mutex::new(Generation::default()))
                .collect(),
            owner_generation: RwLock::new(Generation::default()),
            hasher: std::collections::hash_map::RandomState::new(),
            staleness: self.staleness,
        }
    }
}

impl<S: SessionStore> CachedStore<S> {
    /// A builder caching reads of `inner`.
    pub fn builder(inner: S) -> CachedStoreBuilder<S> {
        CachedStoreBuilder {
            inner,
            staleness: StdDuration::from_secs(1),
            max_entries: 100_000,
        }
    }

    /// The backing store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S> CachedStore<S> {
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

    /// Runs a backend write on `ids`, keeping the cache from holding anything older.
    async fn write<T>(
        &self,
        ids: &[&SessionId],
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        ids.iter().for_each(|id| self.forget(id, Generation::begin));
        let _writing = Writing {
            store: self,
            ids,
            owner: false,
        };
        call.await
    }

    /// Runs a backend write on all sessions of `owner`, keeping the cache from holding any
    /// of them older.
    async fn write_owner<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.forget_owner(Generation::begin);
        let _writing = Writing {
            store: self,
            ids: &[],
            owner: true,
        };
        call.await
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
        if let Some(record) = self.cache.get(id).filter(|r| !r.is_expired()) {
            return Ok(Some(record));
        }
        let before = self.generations_of(id);
        let record = self.inner.get(id).await?;
        if let Some(record) = &record {
            self.fill(id, record, before);
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

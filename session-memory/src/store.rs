//! [`MemoryStore`]: sessions in a moka cache, bounded by bytes, each expiring on its own.

use std::sync::Arc;

use async_trait::async_trait;
use moka::ops::compute::Op;
use moka::sync::Cache;
use session_core::{
    Error, Record, Rename, Result, SessionId, SessionStore, StoreOptions, codec, now,
    rename_onto_itself,
};
use time::OffsetDateTime;

use crate::entry::{ENTRY_OVERHEAD, Entry, ExpiresAt};
use crate::expired::{SharedWatchers, Watchers};
use crate::locks::Locks;

/// Builds a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_bytes: u64,
    options: StoreOptions,
}

impl MemoryStoreBuilder {
    /// The most session data (encoded JSON plus a small per-entry charge) to hold before
    /// evicting; default 256 MiB.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The options shared by every store (payload limit, corrupt-record policy).
    pub fn options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }

    /// The store.
    pub fn build(self) -> MemoryStore {
        let watchers = SharedWatchers::default();
        let listener = Arc::clone(&watchers);
        let cache = Cache::builder()
            .max_capacity(self.max_bytes)
            .weigher(|_: &SessionId, entry: &Entry| {
                u32::try_from(entry.data.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(ExpiresAt)
            .eviction_listener(move |id, entry, cause| listener.removed(&id, &entry, cause))
            .build();
        MemoryStore {
            cache,
            watchers,
            options: self.options,
            locks: Arc::default(),
        }
    }
}

/// A bounded in-process session store; see the [crate docs](crate).
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<SessionId, Entry>,
    /// Who hears of sessions ending by themselves ([`session_core::ExpiryFeed`]).
    watchers: SharedWatchers,
    options: StoreOptions,
    /// A stripe's lock for each write of one session; all of them for the calls spanning
    /// sessions, which reads look around.
    locks: Arc<Locks>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.cache.entry_count())
            .field("weighted_bytes", &self.cache.weighted_size())
            .field("options", &self.options)
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::builder().build()
    }
}

/// What a conditional write found.
enum Found {
    /// It wrote.
    Written,
    /// No live session (or, for `update`, another version).
    Missing,
    /// A record whose data doesn't decode: left alone.
    Corrupt,
}

impl MemoryStore {
    /// A builder with the defaults: 256 MiB, default [`StoreOptions`].
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_bytes: 256 * 1024 * 1024,
            options: StoreOptions::default(),
        }
    }

    /// A store with the default bounds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `data` as the raw stored data of a live session, bypassing encoding: lets tests
    /// plant a corrupt record.
    #[cfg(feature = "test-util")]
    pub async fn write_raw(&self, id: &SessionId, data: &str, expires_at: OffsetDateTime) {
        let _stripe = self.locks.one(id);
        self.cache.insert(id.clone(), Entry::raw(data, expires_at));
    }

    pub(crate) fn watchers(&self) -> &Watchers {
        &self.watchers
    }

    /// Lets moka remove what has expired now (it does so otherwise only as the cache is used).
    pub(crate) fn run_housekeeping(&self) {
        self.cache.run_pending_tasks();
    }

    fn live(&self, id: &SessionId) -> Option<Entry> {
        self.cache.get(id).filter(Entry::is_live)
    }

    /// Applies `decide` to the live entry under `id` (or `None`) under the lock of `id`'s
    /// stripe, which every write of `id` takes: nothing else changes the session between
    /// the read and the write. Returns whether it stored an entry.
    fn compute<F>(&self, id: &SessionId, decide: F) -> bool
    where
        F: FnOnce(Option<Entry>) -> Op<Entry>,
    {
        let _stripe = self.locks.one(id);
        let live = self.live(id).filter(Entry::hold);
        let old = live.clone();
        let op = decide(live);
        // Before the write: moka runs the listener for the entry it replaces or removes
        // inside the call, and the listener waits out a held entry.
        if let Some(old) = old {
            old.release(matches!(op, Op::Put(_) | Op::Remove));
        }
        match op {
            Op::Put(entry) => {
                self.cache.insert(id.clone(), entry);
                true
            }
            Op::Remove => {
                self.cache.invalidate(id);
                false
            }
            Op::Nop => false,
        }
    }

    pub(crate) fn live_entries(&self) -> impl Iterator<Item = (Arc<SessionId>, Entry)> + '_ {
        self.cache.iter().filter(|(_, entry)| entry.is_live())
    }

    /// What a conditional write that found a corrupt record returns: the decode error, or
    /// the caller's "as if missing" answer.
    fn corrupt<T>(&self, id: &SessionId, as_missing: T) -> Result<T> {
        let err = Error::decode(id, "the stored data is not a JSON object");
        self.options.on_corrupt(Err(err)).map(|_| as_missing)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        match self.locks.read(id, || self.live(id)) {
            Some(entry) => self.options.on_corrupt(entry.to_record(id)),
            None => Ok(None),
        }
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        let version = codec::check_writable(record)?;
        let entry = Entry::of(record, version, Entry::encode(record, &self.options)?);
        let inserted = self.compute(record.id(), |current| match current {
            Some(_) => Op::Nop,
            None => Op::Put(entry),
        });
        if inserted {
            record.set_version(version);
        }
        Ok(inserted)
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        codec::check_writable(record)?;
        let data = Entry::encode(record, &self.options)?;
        let mut stored = Err(Error::Conflict {
            id: record.id().clone(),
        });
        self.compute(record.id(), |current| {
            let above = current.map_or(0, |e| e.version).max(record.version());
            match Record::version_after(record.id(), above) {
                Ok(version) => {
                    stored = Ok(version);
                    Op::Put(Entry::of(record, version, data))
                }
                Err(err) => {
                    stored = Err(err);
                    Op::Nop
                }
            }
        });
        record.set_version(stored?);
        Ok(())
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let version = codec::check_writable(record)?;
        let entry = Entry::of(record, version, Entry::encode(record, &self.options)?);
        let expected = record.version();
        let mut found = Found::Missing;
        self.compute(record.id(), |current| match current {
            Some(stored) if !stored.decodes => {
                found = Found::Corrupt;
                Op::Nop
            }
            Some(stored) if stored.version == expected => {
                found = Found::Written;
                Op::Put(entry)
            }
            _ => Op::Nop,
        });
        let conflict = Error::Conflict {
            id: record.id().clone(),
        };
        match found {
            Found::Written => {
                record.set_version(version);
                Ok(())
            }
            Found::Missing => Err(conflict),
            Found::Corrupt => self.corrupt(record.id(), ()).and(Err(conflict)),
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        let mut found = Found::Missing;
        self.compute(id, |current| match current {
            Some(entry) if !entry.decodes => {
                found = Found::Corrupt;
                Op::Nop
            }
            Some(entry) => {
                let capped = entry.deadline.map_or(expires_at, |d| expires_at.min(d));
                found = Found::Written;
                Op::Put(entry.renewed(session_core::to_millis(capped)))
            }
            None => Op::Nop,
        });
        match found {
            Found::Written => Ok(true),
            Found::Missing => Ok(false),
            Found::Corrupt => self.corrupt(id, false),
        }
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.compute(id, |_| Op::Remove);
        Ok(())
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        if from == to {
            return rename_onto_itself(self, from).await;
        }
        let _changing = self.locks.changing();
        let Some(source) = self.live(from) else {
            return Ok(Rename::SourceMissing);
        };
        if !source.decodes {
            return self.corrupt(from, Rename::SourceMissing);
        }
        if self.live(to).is_some() {
            return Ok(Rename::TargetTaken);
        }
        // Nothing else runs while this holds the store alone: the move is one step. Only
        // moka's listener may have reported the source expired since it was read.
        if !source.supersede() {
            return Ok(Rename::SourceMissing);
        }
        self.cache
            .insert(to.clone(), source.renewed(source.expires_at));
        self.cache.invalidate(from);
        Ok(Rename::Moved)
    }

    async fn delete_expired(&self) -> Result<u64> {
        // moka expires each entry at its own time; this only makes it happen now.
        self.run_housekeeping();
        Ok(0)
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        let _alone = self.locks.all();
        self.live_entries()
            .filter(|(_, entry)| entry.owned_by(owner))
            .filter_map(|(id, entry)| self.options.on_corrupt(entry.to_record(&id)).transpose())
            .collect()
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        let _changing = self.locks.changing();
        let ids: Vec<_> = self
            .live_entries()
            .filter(|(_, entry)| entry.owned_by(owner) && entry.supersede())
            .map(|(id, _)| id)
            .collect();
        for id in &ids {
            self.cache.invalidate(&**id);
        }
        Ok(ids.len() as u64)
    }

    async fn count(&self) -> Result<u64> {
        let now = now();
        Ok(self
            .cache
            .iter()
            .filter(|(_, entry)| entry.expires_at > now)
            .count() as u64)
    }

    fn timeout(&self) -> std::time::Duration {
        self.options.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[tokio::test]
    async fn capacity_bounds_the_store() {
        let store = MemoryStore::builder().max_bytes(100 * 1024).build();
        for _ in 0..1_000 {
            let mut record = Record::new(now() + Duration::hours(1));
            record.insert("blob", "x".repeat(1_000)).unwrap();
            store.create(&mut record).await.unwrap();
        }
        store.cache.run_pending_tasks();
        assert!(store.cache.weighted_size() <= 100 * 1024);
        assert!(store.count().await.unwrap() < 1_000);
    }

    #[tokio::test]
    async fn debug_shows_no_data() {
        let store = MemoryStore::new();
        let mut record = Record::new(now() + Duration::hours(1));
        record.insert("token", "hunter2").unwrap();
        store.create(&mut record).await.unwrap();
        store.cache.run_pending_tasks();
        let shown = format!("{store:?}");
        assert!(
            shown.starts_with("MemoryStore") && shown.contains("entries: 1"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn the_builder_keeps_its_settings() {
        assert_eq!(MemoryStore::builder().max_bytes, 256 * 1024 * 1024);
        let timeout = std::time::Duration::from_millis(1234);
        let store = MemoryStore::builder()
            .options(StoreOptions {
                timeout,
                ..StoreOptions::default()
            })
            .build();
        assert_eq!(store.timeout(), timeout);
    }

    /// What the capacity counts: the data's JSON plus a fixed overhead per entry.
    #[tokio::test]
    async fn an_entry_weighs_its_data_and_the_overhead() {
        let store = MemoryStore::new();
        let mut record = Record::new(now() + Duration::hours(1));
        record.insert("blob", "x".repeat(1_000)).unwrap();
        store.create(&mut record).await.unwrap();
        store.cache.run_pending_tasks();
        let data = codec::data_json(&record, &StoreOptions::default()).unwrap();
        assert_eq!(
            store.cache.weighted_size(),
            (data.len() + ENTRY_OVERHEAD) as u64
        );
    }

    /// Expired sessions free their memory by themselves (no `delete_expired` needed),
    /// whether they were created short-lived or shortened by a later write.
    #[tokio::test]
    async fn expired_entries_leave_the_cache() {
        let store = MemoryStore::new();
        let mut short = Record::new(now() + Duration::milliseconds(50));
        store.create(&mut short).await.unwrap();
        let mut shortened = Record::new(now() + Duration::hours(1));
        store.create(&mut shortened).await.unwrap();
        shortened.set_expires_at(now() + Duration::milliseconds(50));
        store.update(&mut shortened).await.unwrap();
        store.cache.run_pending_tasks();
        assert_eq!(store.cache.entry_count(), 2);
        // moka's timer wheel turns at about one-second ticks.
        let started = std::time::Instant::now();
        while store.cache.entry_count() > 0 && started.elapsed().as_secs() < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            store.cache.run_pending_tasks();
        }
        assert_eq!(store.cache.entry_count(), 0, "expired sessions still held");
    }

    /// Reads in a row by one reader, each of one session, racing `rename` and
    /// `destroy_by_owner` (a get looks without a lock, between two reads of the count those
    /// calls bump): every read must find the store in a state no earlier than the reads
    /// before it found. Before the rename (0): x and y; after it (1): the new id and y;
    /// after the revocation (2): nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_get_never_sees_half_a_call_spanning_sessions() {
        let store = Arc::new(MemoryStore::new());
        for round in 0..2_000 {
            let mut ids = Vec::new();
            for _ in 0..2 {
                let mut record = Record::new(now() + Duration::hours(1));
                record.set_owner(Some("u".to_owned()));
                store.create(&mut record).await.unwrap();
                ids.push(record.id().clone());
            }
            let (x, y, renamed) = (ids[0].clone(), ids[1].clone(), SessionId::generate());
            // Each id in the reads' order (the pairs in a row cover each half-done step),
            // with the states in which it is present.
            let reads = [
                (renamed.clone(), [false, true, false]),
                (x.clone(), [true, false, false]),
                (renamed.clone(), [false, true, false]),
                (y.clone(), [true, true, false]),
            ];
            let reader = {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut state = 0;
                    for (id, present_in) in reads.iter().cycle() {
                        let present = store.get(id).await.unwrap().is_some();
                        match (state..3).find(|&s| present_in[s] == present) {
                            Some(2) => return Ok(()),
                            Some(later) => state = later,
                            None => {
                                return Err(format!("{id:?} present: {present} in state {state}"));
                            }
                        }
                    }
                    unreachable!("the reads cycle")
                })
            };
            tokio::task::yield_now().await;
            assert_eq!(store.rename(&x, &renamed).await.unwrap(), Rename::Moved);
            assert_eq!(store.destroy_by_owner("u").await.unwrap(), 2);
            if let Err(seen) = reader.await.unwrap() {
                panic!("round {round}: a get saw half a call: {seen}");
            }
        }
    }

    /// Defect: `destroy` bypassed moka's per-key lock, so an `update` or `touch` that had
    /// read the entry wrote it back after the delete (about 10 of 100 sessions came back).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_destroy_racing_writers_stays_destroyed() {
        let store = Arc::new(MemoryStore::new());
        for _ in 0..200 {
            let mut record = Record::new(now() + Duration::hours(1));
            record.insert("n", 0).unwrap();
            store.create(&mut record).await.unwrap();
            let id = record.id().clone();
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    let (store, id) = (Arc::clone(&store), id.clone());
                    tokio::spawn(async move {
                        for _ in 0..20 {
                            let _ = session_core::modify(&*store, &id, 4, |r| {
                                let n = r.get::<u64>("n").ok().flatten().unwrap_or(0);
                                r.insert("n", n + 1).ok();
                            })
                            .await;
                            let _ = store.touch(&id, now() + Duration::hours(2)).await;
                        }
                    })
                })
                .collect();
            tokio::task::yield_now().await;
            store.destroy(&id).await.unwrap();
            for writer in writers {
                writer.await.unwrap();
            }
            assert!(
                store.get(&id).await.unwrap().is_none(),
                "a destroyed session came back"
            );
        }
    }
}

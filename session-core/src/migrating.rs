//! Moving sessions from one store to another while the application runs: reads find a
//! session in the new store or, failing that, in the old one, which moves it over.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::record::Record;
use crate::scan::{ScanCursor, ScanSessions};
use crate::store::{Rename, SessionStore, rename_onto_itself};
use crate::time_util::{from_unix_millis, now, unix_millis};

/// The data key that marks a record in the new store as a tombstone: the session was
/// destroyed (or moved away) while the old store may still hold a copy. Reserved.
pub const TOMBSTONE_KEY: &str = "__session_stores_tombstone";

/// Whether `record`, as a store holds it, is a tombstone a [`MigratingStore`] wrote into its
/// new store (an empty session but for [`TOMBSTONE_KEY`]; it expires by itself).
pub fn is_tombstone(record: &Record) -> bool {
    record.data().len() == 1 && record.data().contains_key(TOMBSTONE_KEY)
}

/// The version a tombstone is written at (at least): far above any session's, so the
/// compare-and-swap that clears a tombstone can never match a session that took the id
/// meanwhile at the same version (a session would need 2^52 writes to get there).
const TOMBSTONE_VERSION: u64 = 1 << 52;

/// How long a read of the old store may take before its copy into the new one is sent; a
/// slower read is read again. This bounds how late a copy taken before a destroy or a move
/// can land; anything else copying into the new store while the wrapper serves
/// (`session-admin migrate`) keeps to it too.
pub const MIGRATION_COPY_WINDOW: Duration = Duration::from_millis(250);

/// How old a tombstone must be before a new session may take its id: past
/// [`MIGRATION_COPY_WINDOW`] (with room for a copy already sent), no copy taken before the destroy
/// can land any more.
const TOMBSTONE_SETTLE: Duration = Duration::from_secs(1);

/// How many sessions of one owner a revocation ends at once.
const BURIALS_AT_ONCE: usize = 16;

/// How long ago `tombstone` was written (by the clock of the process that wrote it).
fn tombstone_age(tombstone: &Record) -> Duration {
    let written = tombstone.data()[TOMBSTONE_KEY]
        .as_i64()
        .and_then(from_unix_millis)
        .unwrap_or_else(now);
    Duration::try_from(now() - written).unwrap_or_default()
}

/// How many rounds a call makes when other calls keep changing the session under it.
const ROUNDS: usize = 8;

/// The cut-over from an `Old` store to a `New` one without downtime: every session's truth
/// is in the new store once it is there, and the old store only serves sessions that have
/// not moved yet.
///
/// - **Reads** look in the new store, then in the old; a session found only in the old one
///   is copied to the new one (insert-if-free, every field and the version kept) and served
///   from there from then on.
/// - **Writes** (`set`, `update`, `touch`, `rename`) move the session to the new store first,
///   remove the old copy, then write the new store: a compare-and-swap compares the
///   version the caller read, in either store.
/// - **Destroys and revocations** act on both: a *tombstone* in the new store (a record
///   holding only [`TOMBSTONE_KEY`], no owner) keeps a copy that a concurrent read took
///   from the old store from coming back, for as long as that copy could live.
/// - `session-admin migrate` copies the remaining sessions meanwhile (insert-if-free, so it
///   never overwrites a newer session or a tombstone).
///
/// Every call on one session stays atomic (a write never lost, a destroyed session never
/// back) as long as **every process uses this wrapper** during the cut-over: a process
/// still writing only the old store would write a copy the new store shadows. Deploy it
/// everywhere at once (or stop old-only writers first). Why writes are not mirrored into
/// the old store: an unconditional mirror arriving after a destroy would bring the session
/// back there, and the two stores can't be changed in one step; to go back, migrate the
/// other way.
///
/// Costs during the cut-over: a first read of a session not yet moved is two reads and an
/// insert; a write adds a read of the new store and a delete in the old; a destroy adds a
/// read of the old; `count` walks both stores ([`ScanSessions`]). Tombstones live in the
/// new store for [`tombstone_ttl`](Self::tombstone_ttl) (default 60 s, or as long as the
/// old copy would have), and read as missing.
///
/// A new session may take the id of one destroyed less than a second ago only once the
/// tombstone is a second old (the call waits): until then a copy taken from the old store
/// before the destroy could still land. A residual window, stated: a session whose expiry
/// a `touch` (or a write) shortens to within one round trip, while another process's first
/// read of it is copying it from the old store, can be copied back after it ends.
///
/// ```
/// # async fn demo(old: impl session_core::ScanSessions, new: impl session_core::ScanSessions) {
/// use session_core::{MigratingStore, SessionStore};
/// let store = MigratingStore::new(old, new);
/// let sessions = store.count().await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MigratingStore<Old, New> {
    old: Old,
    new: New,
    tombstone_ttl: Duration,
}

/// Where a session stands, seen through both stores.
enum Found {
    Live(Record),
    Tombstone(Record),
    Missing,
}

impl<Old: ScanSessions, New: ScanSessions> MigratingStore<Old, New> {
    /// Serves sessions from `new`, moving them over from `old` as they are used.
    pub fn new(old: Old, new: New) -> Self {
        Self {
            old,
            new,
            tombstone_ttl: Duration::from_secs(60),
        }
    }

    /// How long a tombstone keeps a destroyed session from being copied back at least
    /// (default 60 s): longer than any call of any process using this wrapper, or than a
    /// `session-admin migrate` page takes between its read and its inserts.
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl;
        self
    }

    /// The store sessions move from.
    pub fn old(&self) -> &Old {
        &self.old
    }

    /// The store sessions move to.
    pub fn new_store(&self) -> &New {
        &self.new
    }

    /// The session under `id`, copied into the new store if only the old one had it.
    async fn find(&self, id: &SessionId) -> Result<Found> {
        for _ in 0..ROUNDS {
            match self.new.get(id).await? {
                Some(record) if is_tombstone(&record) => return Ok(Found::Tombstone(record)),
                Some(record) => return Ok(Found::Live(record)),
                None => {}
            }
            let reading = std::time::Instant::now();
            let Some(old) = self.old.get(id).await? else {
                // Moved over between the two reads (copied, then the old copy removed)?
                return Ok(match self.new.get(id).await? {
                    Some(record) if is_tombstone(&record) => Found::Tombstone(record),
                    Some(record) => Found::Live(record),
                    None => Found::Missing,
                });
            };
            if reading.elapsed() > MIGRATION_COPY_WINDOW {
                continue; // too slow to copy safely (see TOMBSTONE_SETTLE): read again
            }
            let mut copy = old.clone();
            // `insert` stores the record's version + 1: the copy keeps the old version.
            copy.set_version(old.version() - 1);
            if self.new.insert(&mut copy).await? {
                return Ok(Found::Live(copy));
            }
            // Taken meanwhile: another read copied it, or a destroy left a tombstone.
        }
        Err(Error::Conflict { id: id.clone() })
    }

    /// The live session under `id`, moved to the new store with no copy left in the old
    /// one, ready for a write there; `None` when there is none.
    async fn claim(&self, id: &SessionId) -> Result<Option<Record>> {
        match self.find(id).await? {
            Found::Live(record) => {
                // A copy left in the old store would outlive a write that shortens the
                // session, and come back through `find` once the new one expired.
                self.old.destroy(id).await?;
                Ok(Some(record))
            }
            Found::Tombstone(_) | Found::Missing => Ok(None),
        }
    }

    fn ttl(&self) -> time::Duration {
        time::Duration::try_from(self.tombstone_ttl).unwrap_or(time::Duration::MINUTE)
    }

    /// A tombstone for `id`, live until `until` or [`Self::tombstone_ttl`] from now.
    fn tombstone(&self, id: &SessionId, until: Option<OffsetDateTime>) -> Record {
        let ttl = self.ttl();
        let expires_at = until.map_or(now() + ttl, |until| until.max(now() + ttl));
        let mut record = Record::with_id(id.clone(), expires_at);
        // When it was written, for `clear_tombstone`.
        record
            .data_mut()
            .insert(TOMBSTONE_KEY.into(), unix_millis(now()).into());
        record.set_version(TOMBSTONE_VERSION);
        record
    }

    /// Ends `id` in both stores: a tombstone first (so a copy a concurrent read took from the
    /// old store can't land), then the old copy. With `report`, whether a live session was
    /// there (one more read); else `false`.
    async fn end(&self, id: &SessionId, report: bool) -> Result<bool> {
        let old = match self.old.get(id).await {
            Ok(old) => old,
            // A corrupt old copy: destroyed below; nothing could copy it meanwhile.
            Err(Error::Decode { .. }) => None,
            Err(err) => return Err(err),
        };
        let was_live = match report.then_some(self.new.get(id).await) {
            None => false,
            Some(Ok(Some(record))) => !is_tombstone(&record),
            Some(Ok(None)) => old.is_some(),
            Some(Err(Error::Decode { .. })) => true,
            Some(Err(err)) => return Err(err),
        };
        let buried = self.bury(id, old.as_ref().map(Record::expires_at)).await?;
        Ok(was_live && buried)
    }

    /// A tombstone under `id` that outlives an old copy expiring at `old_expiry`, then the
    /// old copy removed. `false` when a tombstone was there already (another call ended the
    /// session first): `set` stores one more than the live version it replaced.
    async fn bury(&self, id: &SessionId, old_expiry: Option<OffsetDateTime>) -> Result<bool> {
        let mut tombstone = self.tombstone(id, old_expiry);
        self.new.set(&mut tombstone).await?;
        self.old.destroy(id).await?;
        Ok(tombstone.version() == TOMBSTONE_VERSION + 1)
    }

    /// Gives a tombstone a racing `touch` shortened its life back. Unconditionally while it
    /// is younger than [`TOMBSTONE_SETTLE`] (no new session can have taken the id yet, and
    /// the touch may have expired it already), else by compare-and-swap.
    async fn restore(&self, tombstone: Record) -> Result<()> {
        let mut restored = tombstone;
        restored.set_expires_at(restored.expires_at().max(now() + self.ttl()));
        if tombstone_age(&restored) < TOMBSTONE_SETTLE {
            return self.new.set(&mut restored).await;
        }
        match self.new.update(&mut restored).await {
            Ok(()) | Err(Error::Conflict { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Clears `tombstone` (and any old copy behind it), so its id takes a new session at the
    /// version the caller's write gives it, not one counted on from the tombstone's. The
    /// tombstone is expired by a compare-and-swap, never deleted: a delete could remove a
    /// session another call put there meanwhile.
    async fn clear_tombstone(&self, tombstone: Record) -> Result<()> {
        if let Some(wait) = TOMBSTONE_SETTLE.checked_sub(tombstone_age(&tombstone)) {
            tokio::time::sleep(wait).await;
        }
        let id = tombstone.id().clone();
        let mut expired = tombstone;
        expired.set_expires_at(now() - time::Duration::SECOND);
        match self.new.update(&mut expired).await {
            // Replaced meanwhile: the caller's insert finds what is there.
            Ok(()) | Err(Error::Conflict { .. }) => {}
            Err(err) => return Err(err),
        }
        self.old.destroy(&id).await
    }

    async fn insert_once(&self, record: &mut Record) -> Result<bool> {
        match self.find(record.id()).await {
            Ok(Found::Live(_)) | Err(Error::Decode { .. }) => Ok(false),
            // `false` when taken meanwhile, or by a record the new store keeps but treats
            // as missing.
            Ok(Found::Missing) => self.new.insert(record).await,
            Ok(Found::Tombstone(tombstone)) => {
                self.clear_tombstone(tombstone).await?;
                self.new.insert(record).await
            }
            Err(err) => Err(err),
        }
    }

    /// One try of `set`, by insert or compare-and-swap so that a tombstone written
    /// meanwhile never counts in the version it stores; `false` when the session changed
    /// under it.
    async fn set_once(&self, record: &mut Record) -> Result<bool> {
        let id = record.id().clone();
        match self.find(&id).await {
            Ok(Found::Tombstone(tombstone)) => {
                self.clear_tombstone(tombstone).await?;
                self.new.insert(record).await
            }
            Ok(Found::Missing) => {
                self.old.destroy(&id).await?;
                self.new.insert(record).await
            }
            Ok(Found::Live(live)) if record.version() <= live.version() => {
                // An old copy must not outlive what this writes.
                self.old.destroy(&id).await?;
                let mut swap = record.clone();
                swap.set_version(live.version());
                match self.new.update(&mut swap).await {
                    Ok(()) => {
                        record.set_version(swap.version());
                        Ok(true)
                    }
                    Err(Error::Conflict { .. }) => Ok(false),
                    Err(err) => Err(err),
                }
            }
            // A record newer than the stored one, or a corrupt record: overwritten.
            Ok(Found::Live(_)) | Err(Error::Decode { .. }) => {
                self.old.destroy(&id).await?;
                self.new.set(record).await.map(|()| true)
            }
            Err(err) => Err(err),
        }
    }

    async fn rename_once(&self, from: &SessionId, to: &SessionId) -> Result<Option<Rename>> {
        // Whether the old store holds a copy (read before `claim` could copy it over).
        let copied_from_old = !matches!(self.old.get(from).await, Ok(None));
        if self.claim(from).await?.is_none() {
            return Ok(Some(Rename::SourceMissing));
        }
        if copied_from_old {
            // A read that took the old copy before `claim` removed it sends its copy within
            // MIGRATION_COPY_WINDOW; once the session has moved away, that copy would bring
            // it back under `from`. Wait it out (once per session, while it moves).
            tokio::time::sleep(MIGRATION_COPY_WINDOW + MIGRATION_COPY_WINDOW / 5).await;
        }
        match self.find(to).await? {
            Found::Live(_) => return Ok(Some(Rename::TargetTaken)),
            Found::Missing => {}
            Found::Tombstone(tombstone) => self.clear_tombstone(tombstone).await?,
        }
        // The new store's own move: atomic where it is, every field kept, a touch or write
        // racing it never lost.
        match self.new.rename(from, to).await? {
            Rename::Moved => match self.new.get(to).await? {
                // A destroy's tombstone came between the claim and the move, and moved:
                // the session had ended. Put the tombstone back where it guards.
                Some(tombstone) if is_tombstone(&tombstone) => {
                    self.new.rename(to, from).await?;
                    Ok(Some(Rename::SourceMissing))
                }
                _ => Ok(Some(Rename::Moved)),
            },
            // Taken meanwhile (a session, or a tombstone written since): look again.
            Rename::TargetTaken => Ok(None),
            Rename::SourceMissing => Ok(Some(Rename::SourceMissing)),
        }
    }

    /// Runs `call` within this store's timeout.
    async fn within<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout(self.timeout(), call)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    backend: "migrating",
                    operation,
                    after: self.timeout(),
                })
            })
    }
}

#[async_trait]
impl<Old: ScanSessions, New: ScanSessions> SessionStore for MigratingStore<Old, New> {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        self.within("get", async {
            Ok(match self.find(id).await? {
                Found::Live(record) => Some(record),
                Found::Tombstone(_) | Found::Missing => None,
            })
        })
        .await
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        self.within("insert", self.insert_once(record)).await
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        self.within("set", async {
            for _ in 0..ROUNDS {
                if self.set_once(record).await? {
                    return Ok(());
                }
            }
            // Kept busy all along: overwrite (the version may then count on from a
            // tombstone's).
            self.new.set(record).await
        })
        .await
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        self.within("update", async {
            match self.claim(record.id()).await? {
                Some(_) => self.new.update(record).await,
                None => Err(Error::Conflict {
                    id: record.id().clone(),
                }),
            }
        })
        .await
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.within("touch", async {
            if self.claim(id).await?.is_none() {
                return Ok(false);
            }
            if expires_at <= now() {
                // Ending it: a tombstone, as for a destroy, so no copy comes back.
                return self.end(id, true).await;
            }
            if !self.new.touch(id, expires_at).await? {
                return Ok(false);
            }
            // A destroy between the claim and this touch: it touched the tombstone. Give the
            // tombstone its life back; the touch came after the destroy.
            match self.new.get(id).await? {
                Some(tombstone) if is_tombstone(&tombstone) => {
                    self.restore(tombstone).await?;
                    Ok(false)
                }
                // Ended already by this touch's short expiry (the session's, or a
                // tombstone's it shortened): a tombstone where none is, so that no copy
                // from the old store lands.
                None => {
                    let mut guard = self.tombstone(id, None);
                    self.new.insert(&mut guard).await?;
                    Ok(true)
                }
                Some(_) => Ok(true),
            }
        })
        .await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.within("destroy", async { self.end(id, false).await.map(drop) })
            .await
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        if from == to {
            return rename_onto_itself(self, from).await;
        }
        self.within("rename", async {
            for _ in 0..ROUNDS {
                if let Some(outcome) = self.rename_once(from, to).await? {
                    return Ok(outcome);
                }
            }
            Err(Error::Conflict { id: from.clone() })
        })
        .await
    }

    /// Purges both stores; returns the larger of their counts: a session copied to the new
    /// store and expired in both counts once (the sum would count it twice), so this is a
    /// lower bound while some sessions are in one store only.
    async fn delete_expired(&self) -> Result<u64> {
        self.within("delete_expired", async {
            let old = self.old.delete_expired().await?;
            Ok(old.max(self.new.delete_expired().await?))
        })
        .await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.within("list_by_owner", async {
            // The old store first: a session moving meanwhile shows in one list or both.
            let old = self.old.list_by_owner(owner).await?;
            let mut listed = self.new.list_by_owner(owner).await?;
            let ids: HashSet<SessionId> = listed.iter().map(|r| r.id().clone()).collect();
            for record in old.into_iter().filter(|r| !ids.contains(r.id())) {
                // The new store's copy (or tombstone), if any, is the truth.
                match self.new.get(record.id()).await? {
                    None => listed.push(record),
                    Some(moved) if !is_tombstone(&moved) && moved.owner() == Some(owner) => {
                        listed.push(moved)
                    }
                    Some(_) => {}
                }
            }
            Ok(listed)
        })
        .await
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.within("destroy_by_owner", async {
            // A session the old store lists is live (its old copy goes when the wrapper ends
            // or writes it) unless a call ended it meanwhile, which left a tombstone: `bury`
            // tells. Its tombstone replaces any copy in the new store, so the new store's
            // own revocation doesn't count it again.
            let listed = self.old.list_by_owner(owner).await?;
            let mut ended = 0;
            for batch in listed.chunks(BURIALS_AT_ONCE) {
                let mut burials = Vec::with_capacity(batch.len());
                for record in batch {
                    burials.push(self.bury(record.id(), Some(record.expires_at())));
                }
                for buried in futures::future::join_all(burials).await {
                    ended += u64::from(buried?);
                }
            }
            Ok(ended + self.new.destroy_by_owner(owner).await?)
        })
        .await
    }

    async fn count(&self) -> Result<u64> {
        // Each store counts its own; a session copied but still in the old store, or a
        // tombstone, would count wrong: walk both and count ids, the old store first (a
        // session moving meanwhile is seen in one walk or both).
        self.within("count", async {
            let mut seen = HashSet::new();
            scan_each(&self.old, |record| {
                seen.insert(record.id().clone());
            })
            .await?;
            scan_each(&self.new, |record| {
                if is_tombstone(&record) {
                    seen.remove(record.id());
                } else {
                    seen.insert(record.id().clone());
                }
            })
            .await?;
            Ok(seen.len() as u64)
        })
        .await
    }

    fn timeout(&self) -> Duration {
        self.new.timeout().max(self.old.timeout())
    }
}

/// Calls `each` with every record a full scan of `store` returns.
async fn scan_each<S: ScanSessions + ?Sized>(
    store: &S,
    mut each: impl FnMut(Record),
) -> Result<()> {
    let mut cursor = ScanCursor::start();
    loop {
        let page = store.scan(&cursor, 1000).await?;
        page.records.into_iter().for_each(&mut each);
        match page.next {
            Some(next) => cursor = next,
            None => return Ok(()),
        }
    }
}

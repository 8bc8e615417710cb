//! A [`MigratingStore`] at each phase of a cut-over, for the suite: where the sessions a
//! case creates start out.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::Result;
use crate::id::SessionId;
use crate::migrating::MigratingStore;
use crate::record::Record;
use crate::scan::ScanSessions;
use crate::store::{Rename, SessionStore};

/// Where the sessions a case creates are put, i.e. which phase of the cut-over it tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created through the wrapper (sessions that began after it was deployed).
    Fresh,
    /// Created in the old store only (sessions from before, not moved yet).
    InOld,
    /// Created in the old store and copied to the new one, as `session-admin migrate`
    /// copies them while the wrapper serves.
    Copied,
}

/// A [`MigratingStore`] whose `insert` puts new sessions where `phase` says; every other
/// call goes through the wrapper.
///
/// A session put into the old store appears at once to the wrapper's calls (they wait
/// while it is written): in a real cut-over those sessions were there before the wrapper
/// ran, so no call of it races their creation.
#[derive(Debug)]
pub struct PhasedMigration<Old, New> {
    /// The store under test.
    pub store: MigratingStore<Old, New>,
    /// Where sessions start.
    pub phase: Phase,
    creating: tokio::sync::RwLock<()>,
}

impl<Old, New> PhasedMigration<Old, New> {
    /// `store`, with sessions starting where `phase` says.
    pub fn new(store: MigratingStore<Old, New>, phase: Phase) -> Self {
        Self {
            store,
            phase,
            creating: tokio::sync::RwLock::new(()),
        }
    }
}

impl<Old: ScanSessions, New: ScanSessions> PhasedMigration<Old, New> {
    /// Inserts into the old store, as a session from before the cut-over; `None` when the
    /// new store already holds something under the id (then the wrapper decides).
    async fn insert_old(&self, record: &mut Record) -> Result<Option<bool>> {
        // Anything there, corrupt records included, is for the wrapper to judge.
        if !matches!(self.store.new_store().get(record.id()).await, Ok(None)) {
            return Ok(None);
        }
        let inserted = self.store.old().insert(record).await?;
        if inserted && self.phase == Phase::Copied {
            let mut copy = record.clone();
            copy.set_version(record.version() - 1);
            self.store.new_store().insert(&mut copy).await?;
        }
        Ok(Some(inserted))
    }
}

#[async_trait]
impl<Old: ScanSessions, New: ScanSessions> SessionStore for PhasedMigration<Old, New> {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        let _shared = self.creating.read().await;
        self.store.get(id).await
    }
    async fn insert(&self, record: &mut Record) -> Result<bool> {
        if self.phase != Phase::Fresh {
            let _alone = self.creating.write().await;
            if let Some(inserted) = self.insert_old(record).await? {
                return Ok(inserted);
            }
        }
        let _shared = self.creating.read().await;
        self.store.insert(record).await
    }
    async fn set(&self, record: &mut Record) -> Result<()> {
        let _shared = self.creating.read().await;
        self.store.set(record).await
    }
    async fn update(&self, record: &mut Record) -> Result<()> {
        let _shared = self.creating.read().await;
        self.store.update(record).await
    }
    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        let _shared = self.creating.read().await;
        self.store.touch(id, expires_at).await
    }
    async fn destroy(&self, id: &SessionId) -> Result<()> {
        let _shared = self.creating.read().await;
        self.store.destroy(id).await
    }
    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        let _shared = self.creating.read().await;
        self.store.rename(from, to).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        let _shared = self.creating.read().await;
        self.store.delete_expired().await
    }
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        let _shared = self.creating.read().await;
        self.store.list_by_owner(owner).await
    }
    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        let _shared = self.creating.read().await;
        self.store.destroy_by_owner(owner).await
    }
    async fn count(&self) -> Result<u64> {
        let _shared = self.creating.read().await;
        self.store.count().await
    }
    fn timeout(&self) -> Duration {
        self.store.timeout()
    }
}

//! Ids at rest: store a one-way hash of each id instead of the id.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::Result;
use crate::id::SessionId;
use crate::record::Record;
use crate::store::{Rename, SessionStore};

/// Wraps any store so it keys records by the SHA-256 of the session id.
///
/// A leaked store or backup then holds no usable cookie: the cookie carries the id, the
/// store only its hash, and the hash can't be turned back. It costs one hash per call.
///
/// Off by default, because another app sharing the store (an express-session app reading
/// the same Redis) looks sessions up by the plain id. Turn it on when only this crate
/// family reads the store. Switching it on or off orphans existing sessions (users log in
/// again once).
///
/// [`SessionStore::list_by_owner`] returns records under their stored (hashed) ids.
///
/// ```
/// # async fn demo(store: impl session_core::SessionStore) {
/// let store = session_core::HashedIds::new(store);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HashedIds<S> {
    inner: S,
}

impl<S> HashedIds<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The wrapped store, which sees hashed ids only.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// Re-keys `record` to its hashed id and returns the caller's id, to put back after the call.
fn rekey(record: &mut Record) -> SessionId {
    let id = record.id().clone();
    record.set_id(id.hashed());
    id
}

#[async_trait]
impl<S: SessionStore> SessionStore for HashedIds<S> {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        let mut record = self.inner.get(&id.hashed()).await?;
        if let Some(record) = &mut record {
            record.set_id(id.clone());
        }
        Ok(record)
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        let id = rekey(record);
        let result = self.inner.insert(record).await;
        record.set_id(id);
        result
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        let id = rekey(record);
        let result = self.inner.set(record).await;
        record.set_id(id);
        result
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let id = rekey(record);
        let result = self.inner.update(record).await;
        record.set_id(id);
        result
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.inner.touch(&id.hashed(), expires_at).await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.inner.destroy(&id.hashed()).await
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        self.inner.rename(&from.hashed(), &to.hashed()).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.inner.list_by_owner(owner).await
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.inner.destroy_by_owner(owner).await
    }

    async fn count(&self) -> Result<u64> {
        self.inner.count().await
    }

    /// Delegates whole: the listed ids are already stored (hashed) ids.
    async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
        self.inner.limit_owner(owner, keep).await
    }
}

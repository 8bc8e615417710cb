//! Ids at rest: store a one-way hash of each id instead of the id.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{Error, Result};
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
/// [`SessionStore::list_by_owner`] returns records under their stored (hashed) ids. Errors
/// about one session name it by the caller's id (its fingerprint matches what the app logs),
/// not by the hashed id the inner store saw.
///
/// Combined with `EncryptedStore` (crate `session-encrypted`), put `HashedIds` outside:
/// `HashedIds::new(EncryptedStore::new(store, keys)?)`, so the data is sealed to the id the
/// store keeps and listings can open it.
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

/// `result` with an error about the hashed id made to name the caller's `id` instead.
fn named<T>(result: Result<T>, id: &SessionId) -> Result<T> {
    result.map_err(|err| match err {
        Error::Encode { reason, .. } => Error::Encode {
            id: id.clone(),
            reason,
        },
        Error::Decode { reason, .. } => Error::Decode {
            id: id.clone(),
            reason,
        },
        Error::Conflict { .. } => Error::Conflict { id: id.clone() },
        Error::PayloadTooLarge { size, max, .. } => Error::PayloadTooLarge {
            id: id.clone(),
            size,
            max,
        },
        other => other,
    })
}

/// A scan lists stored (hashed) ids, like `list_by_owner`: what a migration copies as is.
#[async_trait]
impl<S: crate::ScanSessions> crate::ScanSessions for HashedIds<S> {
    async fn scan(&self, cursor: &crate::ScanCursor, limit: usize) -> Result<crate::ScanPage> {
        self.inner.scan(cursor, limit).await
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for HashedIds<S> {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        let mut record = named(self.inner.get(&id.hashed()).await, id)?;
        if let Some(record) = &mut record {
            record.set_id(id.clone());
        }
        Ok(record)
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        let id = rekey(record);
        let result = self.inner.insert(record).await;
        record.set_id(id.clone());
        named(result, &id)
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        let id = rekey(record);
        let result = self.inner.set(record).await;
        record.set_id(id.clone());
        named(result, &id)
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let id = rekey(record);
        let result = self.inner.update(record).await;
        record.set_id(id.clone());
        named(result, &id)
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        named(self.inner.touch(&id.hashed(), expires_at).await, id)
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        named(self.inner.destroy(&id.hashed()).await, id)
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        named(self.inner.rename(&from.hashed(), &to.hashed()).await, from)
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

    fn timeout(&self) -> std::time::Duration {
        self.inner.timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_callers_id() {
        let id = SessionId::generate();
        let hashed = id.hashed();
        let err = named::<()>(Err(Error::decode(&hashed, "bad")), &id).unwrap_err();
        assert_eq!(err.session_id(), Some(&id));
        let err = named::<()>(Err(Error::Conflict { id: hashed }), &id).unwrap_err();
        assert_eq!(err.session_id(), Some(&id));
    }
}

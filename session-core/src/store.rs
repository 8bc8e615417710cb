//! The store trait every backend implements.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::record::Record;

/// How many fresh ids [`SessionStore::create`] and [`SessionStore::cycle_id`] try before
/// giving up. With 192-bit ids a single collision already means a broken random source.
pub const MAX_ID_ATTEMPTS: usize = 8;

/// What [`SessionStore::rename`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    /// The record now lives under the new id only.
    Moved,
    /// There was no live record under the old id; nothing changed.
    SourceMissing,
    /// The new id is taken by another live record; nothing changed.
    TargetTaken,
}

/// A session store. Every method means the same on every backend; the conformance suite
/// (feature `conformance`) checks that.
///
/// Writes (`insert`, `set`, `update`) store the record at `version + 1` and, on success,
/// advance the caller's record to that version.
///
/// A record whose `expires_at` has passed is gone for every method, whether or not the
/// backend has removed it yet: `get` returns `None`, `update` conflicts, `touch` returns
/// `false`, `insert` may take its id.
#[async_trait]
pub trait SessionStore: Send + Sync + Debug {
    /// The live record under `id`, or `None` when missing or expired.
    async fn get(&self, id: &SessionId) -> Result<Option<Record>>;

    /// Stores `record` only if its id is free (no live record); atomic on the server.
    /// Returns `false`, changing nothing, when the id is taken. Prefer [`Self::create`].
    async fn insert(&self, record: &mut Record) -> Result<bool>;

    /// Stores `record` whatever is there: last writer wins, as in express-session and
    /// tower-sessions. Use [`Self::update`] when concurrent requests must not lose writes.
    async fn set(&self, record: &mut Record) -> Result<()>;

    /// Compare-and-swap: stores `record` only if the live stored version equals
    /// `record.version()`; then the stored version is that plus one. Otherwise returns
    /// [`Error::Conflict`] and changes nothing, also when the session is missing, expired,
    /// destroyed or was cycled away: an update never resurrects a session.
    async fn update(&self, record: &mut Record) -> Result<()>;

    /// Moves a live session's expiry to `expires_at`, capped at its deadline, without
    /// rewriting its data. Returns whether a live session was there; never resurrects.
    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool>;

    /// Removes the session; removing a missing session is not an error.
    async fn destroy(&self, id: &SessionId) -> Result<()>;

    /// Moves the live record under `from` to `to` (data, expiry, version and owner kept).
    /// The record is written under `to` before `from` is removed, so a failure in between
    /// never loses the session. Prefer [`Self::cycle_id`].
    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename>;

    /// Removes expired records and returns how many. Backends whose server expires records
    /// by itself (Redis, the memory store) return 0.
    async fn delete_expired(&self) -> Result<u64>;

    /// The live sessions of `owner`, in no particular order.
    ///
    /// Behind [`HashedIds`](crate::HashedIds) the listed records carry their stored
    /// (hashed) ids, which are not usable as cookies.
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>>;

    /// Removes every session of `owner` ("log out everywhere") and returns how many.
    async fn destroy_by_owner(&self, owner: &str) -> Result<u64>;

    /// How many live sessions the store holds (an upper bound on backends that expire
    /// lazily).
    async fn count(&self) -> Result<u64>;

    /// Stores a new session, never overwriting another: when `record`'s id is taken, it
    /// gets a fresh id and tries again (at most [`MAX_ID_ATTEMPTS`] times).
    async fn create(&self, record: &mut Record) -> Result<()> {
        for _ in 0..MAX_ID_ATTEMPTS {
            if self.insert(record).await? {
                return Ok(());
            }
            record.set_id(SessionId::generate());
        }
        Err(Error::Conflict {
            id: record.id().clone(),
        })
    }

    /// Moves a live session to a fresh id (the defence against session fixation: call it
    /// at login) and returns the new id, or `None` when there was no live session.
    async fn cycle_id(&self, id: &SessionId) -> Result<Option<SessionId>> {
        for _ in 0..MAX_ID_ATTEMPTS {
            let fresh = SessionId::generate();
            match self.rename(id, &fresh).await? {
                Rename::Moved => return Ok(Some(fresh)),
                Rename::SourceMissing => return Ok(None),
                Rename::TargetTaken => continue,
            }
        }
        Err(Error::Conflict { id: id.clone() })
    }

    /// Keeps the `keep` newest live sessions of `owner` (by creation time) and destroys the
    /// rest, returning how many it destroyed: "at most N devices; a new login ends the
    /// oldest". Built on the owner index, so it works on every backend.
    ///
    /// Two logins racing may both trim, ending one more session than needed, never fewer.
    async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
        let mut sessions = self.list_by_owner(owner).await?;
        if sessions.len() <= keep {
            return Ok(0);
        }
        sessions.sort_by_key(|s| std::cmp::Reverse((s.created_at(), s.version())));
        let mut destroyed = 0;
        for session in &sessions[keep..] {
            self.destroy(session.id()).await?;
            destroyed += 1;
        }
        Ok(destroyed)
    }
}

macro_rules! forward_store {
    ($($wrapper:ty),*) => {$(
        #[async_trait]
        impl<S: SessionStore + ?Sized> SessionStore for $wrapper {
            async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
                (**self).get(id).await
            }
            async fn insert(&self, record: &mut Record) -> Result<bool> {
                (**self).insert(record).await
            }
            async fn set(&self, record: &mut Record) -> Result<()> {
                (**self).set(record).await
            }
            async fn update(&self, record: &mut Record) -> Result<()> {
                (**self).update(record).await
            }
            async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
                (**self).touch(id, expires_at).await
            }
            async fn destroy(&self, id: &SessionId) -> Result<()> {
                (**self).destroy(id).await
            }
            async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
                (**self).rename(from, to).await
            }
            async fn delete_expired(&self) -> Result<u64> {
                (**self).delete_expired().await
            }
            async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
                (**self).list_by_owner(owner).await
            }
            async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
                (**self).destroy_by_owner(owner).await
            }
            async fn count(&self) -> Result<u64> {
                (**self).count().await
            }
            async fn create(&self, record: &mut Record) -> Result<()> {
                (**self).create(record).await
            }
            async fn cycle_id(&self, id: &SessionId) -> Result<Option<SessionId>> {
                (**self).cycle_id(id).await
            }
            async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
                (**self).limit_owner(owner, keep).await
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);

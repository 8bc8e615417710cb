//! Owners named in data Node writes (`owner_path`). A session Node created and Rust never
//! wrote is in no owner index, so finding an owner's sessions walks every session:
//! `list_by_owner` adds what the walk finds to what the index lists, and `destroy_by_owner`
//! removes what the walk finds, judging every session by its owner as read (the path first),
//! so the two always agree.
//!
//! The guarantee: `destroy_by_owner` removes every session that names the owner and exists
//! throughout the call (one Node creates meanwhile may be missed: a login after the
//! logout began); `list_by_owner` lists them. The cost is a read of every session, in pages
//! of [`SWEEP_PAGE`] keys with reads pipelined, on every primary of a Cluster.

use futures::{StreamExt, TryStreamExt};
use session_core::{Record, Result, ScanCursor, SessionId};

use crate::scripts::ScriptId;
use crate::store::{RedisStore, Stored};

/// Keys per scan page of a sweep.
const SWEEP_PAGE: usize = 1000;
/// Deletes a sweep has in flight at once.
const DELETES_IN_FLIGHT: usize = 64;
/// How many times a sweep deletes a session again that changed under it.
const DELETE_ATTEMPTS: usize = 8;

impl RedisStore {
    /// `listed` (from the owner index) and every other live session whose owner is `owner`.
    pub(crate) async fn with_swept(
        &self,
        owner: &str,
        mut listed: Vec<Record>,
    ) -> Result<Vec<Record>> {
        let known: std::collections::HashSet<SessionId> =
            listed.iter().map(|r| r.id().clone()).collect();
        for (record, _) in self.sweep(owner).await? {
            if !known.contains(record.id()) {
                listed.push(record);
            }
        }
        Ok(listed)
    }

    /// Deletes every session the index missed whose owner is `owner`; returns how many.
    pub(crate) async fn revoke_swept(&self, owner: &str) -> Result<u64> {
        let found = self.sweep(owner).await?;
        let removed: Vec<u64> =
            futures::stream::iter(found)
                .map(|(record, stored)| async move {
                    self.delete_owned(record.id(), stored, owner).await
                })
                .buffer_unordered(DELETES_IN_FLIGHT)
                .try_collect()
                .await?;
        Ok(removed.into_iter().sum())
    }

    /// Every live session whose owner is `owner`, with the value it was read as.
    async fn sweep(&self, owner: &str) -> Result<Vec<(Record, Stored)>> {
        let mut cursor = ScanCursor::start();
        let mut found = Vec::new();
        loop {
            let (page, next) = self.scan_stored(&cursor, SWEEP_PAGE).await?;
            for (id, stored) in page {
                // A value no one can read is nobody's session as far as anyone can tell.
                if let Ok(record) = self.decode_record(&id, &stored)
                    && !record.is_expired()
                    && record.owner() == Some(owner)
                {
                    found.push((record, stored));
                }
            }
            match next {
                Some(next) => cursor = next,
                None => return Ok(found),
            }
        }
    }

    /// Deletes the session under `id` if it still holds `stored`; if it changed since (a
    /// Node or Rust write), reads it again and deletes that while it still names `owner`.
    /// Returns 1 when it deleted it.
    async fn delete_owned(&self, id: &SessionId, mut stored: Stored, owner: &str) -> Result<u64> {
        for _ in 0..DELETE_ATTEMPTS {
            let removed = self
                .eval(
                    ScriptId::CompareAndDelete,
                    self.key_for(id),
                    vec![stored.value.clone()],
                )
                .await?
                .into_int()?;
            if removed != 0 {
                return Ok(1);
            }
            let Some(now) = self.read(id).await? else {
                return Ok(0);
            };
            match self.decode_record(id, &now) {
                Ok(record) if record.owner() == Some(owner) && !record.is_expired() => {
                    stored = now;
                }
                _ => return Ok(0),
            }
        }
        Err(session_core::Error::Conflict { id: id.clone() })
    }
}

//! The owner index, and the calls that use it: listing and revoking an owner's sessions.
//!
//! On one server (standalone or Sentinel) a listing and a revocation are each one script
//! over the index and every session it lists, so they see the owner's sessions as of one
//! instant (a session being renamed is never missed: the rename is one script too). On a
//! cluster those keys live on different nodes; see the crate docs for what that allows.

use bytes::Bytes;
use session_core::{Error, Record, Result, SessionId, now, unix_millis};

use crate::conn::Reply;
use crate::scripts::{INDEX_CHANGED, ScriptId};
use crate::store::{RESTARTS, RedisStore, Stored, arg};

/// How many list-and-revoke passes a cluster's `destroy_by_owner` makes at most.
const REVOKE_PASSES: usize = 16;

impl RedisStore {
    /// Indexes `id` under its owner before the session itself is written: the index may point
    /// at a missing session (tolerated), never miss a live one.
    pub(crate) async fn index_add(
        &self,
        owner: &str,
        id: &SessionId,
        expires_ms: i64,
    ) -> Result<()> {
        let now_ms = unix_millis(now());
        if expires_ms <= now_ms {
            return Ok(());
        }
        let args = vec![arg(id.expose()), arg(expires_ms), arg(now_ms)];
        self.eval(ScriptId::IndexAdd, self.keys().owner(owner), args)
            .await?;
        Ok(())
    }

    /// The members of `owner`'s index whose score is still ahead (pruning the rest), as
    /// stored.
    async fn index_members(&self, owner: &str) -> Result<Vec<Bytes>> {
        let members = self
            .eval(
                ScriptId::IndexList,
                self.keys().owner(owner),
                vec![arg(unix_millis(now()))],
            )
            .await?
            .into_array()?;
        Ok(members
            .into_iter()
            .filter_map(|member| member.into_opt_bytes().ok().flatten())
            .collect())
    }

    /// The index key followed by the session key of every member, for the scripts that check
    /// the index still holds exactly those.
    fn index_and_sessions(&self, owner: &str, members: &[Bytes]) -> Vec<String> {
        let prefix = self.keys().prefix();
        let mut keys = vec![self.keys().owner(owner)];
        keys.extend(
            members
                .iter()
                .map(|member| format!("{prefix}{}", String::from_utf8_lossy(member))),
        );
        keys
    }

    /// The script argument naming the format for [`ScriptId::OwnerDelete`] and
    /// [`ScriptId::RevokeOwner`].
    fn format_arg(&self) -> Bytes {
        Bytes::from_static(if self.format().reads_expiry() {
            b"express"
        } else {
            b"native"
        })
    }

    /// `list_by_owner`: one script on one server, a read per session on a cluster.
    pub(crate) async fn list_inner(&self, owner: &str) -> Result<Vec<Record>> {
        if !self.one_server() {
            return self.list_each(owner).await;
        }
        for _ in 0..RESTARTS {
            let members = self.index_members(owner).await?;
            let keys = self.index_and_sessions(owner, &members);
            let reads_expiry = if self.format().reads_expiry() {
                "1"
            } else {
                "0"
            };
            let args = vec![
                arg(unix_millis(now())),
                arg(self.keys().prefix()),
                arg(reads_expiry),
            ];
            let reply = self.conn().eval(ScriptId::ListOwner, &keys, args).await?;
            if reply == Reply::Int(INDEX_CHANGED) {
                continue;
            }
            let mut records = Vec::new();
            let mut items = reply.into_array()?.into_iter();
            while let (Some(at), Some(value), Some(expiry)) =
                (items.next(), items.next(), items.next())
            {
                let at = usize::try_from(at.into_int()?).unwrap_or(0);
                let Some(id) = members
                    .get(at.wrapping_sub(1))
                    .and_then(|m| SessionId::parse(&String::from_utf8_lossy(m)).ok())
                else {
                    continue;
                };
                let stored = value.into_opt_bytes()?.map(|value| Stored {
                    value,
                    expiry: Some(expiry.into_int().unwrap_or(-1)),
                });
                records.extend(self.decode_live(&id, stored.as_ref())?);
            }
            records.retain(|record| record.owner() == Some(owner));
            return Ok(records);
        }
        Err(changing_index())
    }

    /// A cluster's listing: the index, then each session read on its own node.
    async fn list_each(&self, owner: &str) -> Result<Vec<Record>> {
        let ids: Vec<SessionId> = self
            .index_members(owner)
            .await?
            .iter()
            .filter_map(|member| SessionId::parse(&String::from_utf8_lossy(member)).ok())
            .collect();
        let reads = ids.iter().map(|id| async move {
            let stored = self.read(id).await?;
            self.decode_live(id, stored.as_ref())
        });
        let found = futures::future::try_join_all(reads).await?;
        Ok(found
            .into_iter()
            .flatten()
            .filter(|record| record.owner() == Some(owner))
            .collect())
    }

    /// `destroy_by_owner`: one script on one server; passes of owner-checked deletes on a
    /// cluster.
    pub(crate) async fn revoke_inner(&self, owner: &str) -> Result<u64> {
        if !self.one_server() {
            return self.revoke_each(owner).await;
        }
        for _ in 0..RESTARTS {
            let members = self.index_members(owner).await?;
            let keys = self.index_and_sessions(owner, &members);
            let args = vec![
                arg(owner),
                arg(unix_millis(now())),
                arg(self.keys().prefix()),
                self.format_arg(),
            ];
            match self
                .conn()
                .eval(ScriptId::RevokeOwner, &keys, args)
                .await?
                .into_int()?
            {
                INDEX_CHANGED => continue,
                removed => return Ok(removed.max(0) as u64),
            }
        }
        Err(changing_index())
    }

    /// A cluster's revocation: every session the index lists is deleted if the owner owns it
    /// (whatever its version, so a busy session goes too), pass after pass while a pass
    /// deletes something or the index gained members: a session a concurrent rename moves is
    /// indexed under its new id before it moves, so a later pass finds it (unless the move
    /// lands after the last pass looked: the weaker guarantee the crate docs state).
    async fn revoke_each(&self, owner: &str) -> Result<u64> {
        let mut removed = 0;
        let mut seen: std::collections::HashSet<Bytes> = std::collections::HashSet::new();
        for _ in 0..REVOKE_PASSES {
            let members = self.index_members(owner).await?;
            let mut joined = false;
            let mut found = 0;
            for member in &members {
                joined |= seen.insert(member.clone());
                let Ok(id) = SessionId::parse(&String::from_utf8_lossy(member)) else {
                    continue;
                };
                let args = vec![arg(owner), arg(unix_millis(now())), self.format_arg()];
                let key = self.keys().session(&id);
                found += self
                    .eval(ScriptId::OwnerDelete, key, args)
                    .await?
                    .into_int()?;
            }
            removed += found.max(0) as u64;
            if found == 0 && !joined {
                break;
            }
        }
        Ok(removed)
    }
}

/// The error when an owner's index changed at every attempt to read it whole.
fn changing_index() -> Error {
    Error::transient(
        crate::conn::BACKEND,
        "the owner's session index changed at every attempt (sessions created or moved \
         without pause); try again",
    )
}

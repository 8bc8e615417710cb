//! `rename` (and so `cycle_id`): one script on one server; copy, then compare-and-delete on
//! a cluster, where the two keys may live on different nodes.

use session_core::{Error, Rename, Result, SessionId, now, unix_millis};

use crate::conn::{Command, Reply, unexpected};
use crate::scripts::{MISSING, SOURCE_CHANGED, ScriptId, TARGET_TAKEN};
use crate::store::{RESTARTS, RedisStore, Stored, arg, pxat};

impl RedisStore {
    pub(crate) async fn rename_inner(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        for _ in 0..RESTARTS {
            let stored = self.read(from).await?;
            let Some(record) = self.decode_live(from, stored.as_ref())? else {
                return Ok(Rename::SourceMissing);
            };
            let Some(Stored { value: raw, .. }) = stored else {
                return Ok(Rename::SourceMissing);
            };
            let at = pxat(record.expires_at());
            let outcome = if self.one_server() {
                self.move_at_once(from, to, raw, at, record.owner()).await?
            } else {
                self.move_stepwise(from, to, raw, at, record.owner())
                    .await?
            };
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
        Err(Error::Conflict { id: from.clone() })
    }

    /// One script: checks the source still holds what was read, the target is free, then
    /// `RENAME`s the key (keeping its expiry) and moves the owner index entry. `None`: the
    /// source changed since it was read.
    async fn move_at_once(
        &self,
        from: &SessionId,
        to: &SessionId,
        raw: bytes::Bytes,
        at: i64,
        owner: Option<&str>,
    ) -> Result<Option<Rename>> {
        let mut keys = vec![self.keys().session(from), self.keys().session(to)];
        keys.extend(owner.map(|owner| self.keys().owner(owner)));
        let args = vec![
            raw,
            arg(to.expose()),
            arg(from.expose()),
            arg(at),
            arg(unix_millis(now())),
        ];
        Ok(
            match self
                .conn()
                .eval(ScriptId::Rename, &keys, args)
                .await?
                .into_int()?
            {
                1 => Some(Rename::Moved),
                MISSING => Some(Rename::SourceMissing),
                TARGET_TAKEN => Some(Rename::TargetTaken),
                SOURCE_CHANGED => None,
                other => return Err(unexpected("0, 1, 2 or 3", &Reply::Int(other))),
            },
        )
    }

    /// Not atomic across nodes: index the new id, copy the value there (`SET NX`, never
    /// overwriting a live target), then delete the source only if it still holds exactly
    /// the value copied. If it changed (a write to keep) or ended (nothing to resurrect),
    /// the copy is deleted again (only if unchanged) and `None` says to start over. A crash
    /// between copy and delete leaves the session under both ids until it expires, never
    /// under none.
    async fn move_stepwise(
        &self,
        from: &SessionId,
        to: &SessionId,
        raw: bytes::Bytes,
        at: i64,
        owner: Option<&str>,
    ) -> Result<Option<Rename>> {
        if let Some(owner) = owner {
            self.index_add(owner, to, at).await?;
        }
        let copy = Command::Set {
            value: raw.clone(),
            only_if_absent: true,
            expire_at_ms: Some(at),
        };
        if self.conn().command(copy, &self.keys().session(to)).await? == Reply::Nil {
            return Ok(Some(Rename::TargetTaken));
        }
        let removed = self
            .eval(
                ScriptId::CompareAndDelete,
                self.keys().session(from),
                vec![raw.clone()],
            )
            .await?
            .into_int()?;
        if removed != 0 {
            // `removed` is the source's expiry when it went: an express-session touch since
            // the read changed only that, and the copy must not lose it.
            if removed > 0 && removed != at {
                self.carry_expiry(to, removed, owner).await?;
            }
            return Ok(Some(Rename::Moved));
        }
        self.eval(
            ScriptId::CompareAndDelete,
            self.keys().session(to),
            vec![raw],
        )
        .await?;
        Ok(None)
    }

    /// Gives the moved copy `to` the expiry its source had when it was deleted, indexing it
    /// there first (an index entry never ends before its session).
    async fn carry_expiry(&self, to: &SessionId, at: i64, owner: Option<&str>) -> Result<()> {
        if let Some(owner) = owner {
            self.index_add(owner, to, at).await?;
        }
        self.conn()
            .command(Command::PexpireAt(at), &self.keys().session(to))
            .await?;
        Ok(())
    }
}

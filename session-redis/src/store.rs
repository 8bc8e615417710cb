//! The store: every operation, written once over the [`Connection`] primitives.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use session_core::{
    Error, Record, Rename, Result, SessionId, SessionStore, StoreOptions, now, unix_millis,
};
use time::OffsetDateTime;

use crate::config::{Client, RedisStoreBuilder, Topology, check_version, parse_target};
use crate::conn::{BACKEND, Command, Connection, Reply, unexpected};
use crate::format::Format;
use crate::keys::Keys;
use crate::scripts::{CORRUPT, DONE, MISSING, ScriptId};

/// How often `rename` starts over when the source changes under it.
const RENAME_ATTEMPTS: usize = 8;
/// How many list-and-delete passes `destroy_by_owner` makes at most.
const REVOKE_PASSES: usize = 4;

/// A session store on Redis (standalone, Cluster or Sentinel), over fred or redis-rs.
///
/// Cheap to clone: clones share the connection(s). See the [crate docs](crate) for the key
/// layout and what each operation guarantees on a cluster.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Box<dyn Connection>,
    keys: Keys,
    options: StoreOptions,
    topology: Topology,
    client: Client,
    format: Format,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.keys.prefix())
            .field("topology", &self.inner.topology)
            .field("client", &self.inner.client)
            .field("format", &self.inner.format)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// A stored value and, when the format reads it, the key's expiry (Unix ms, -1: none).
struct Stored {
    value: Bytes,
    expiry: Option<i64>,
}

/// Unix milliseconds for `PXAT`; never below 1, which Redis would reject (a time that far
/// back simply means "already expired").
fn pxat(at: OffsetDateTime) -> i64 {
    unix_millis(at).max(1)
}

fn arg(value: impl ToString) -> Vec<u8> {
    value.to_string().into_bytes()
}

impl RedisStore {
    /// A builder; see [`RedisStoreBuilder`].
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    /// Connects with the default client and options to `url`: one URL for a standalone
    /// server, several comma-separated URLs or `redis+cluster://` for a cluster,
    /// `redis+sentinel://` for Sentinel (see the crate docs).
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::builder().url(url).connect().await
    }

    pub(crate) async fn connect(builder: RedisStoreBuilder) -> Result<Self> {
        let target = parse_target(&builder.url)?;
        let timeout = builder.effective_connect_timeout();
        let topology = target.topology;
        let connecting = async {
            let conn: Box<dyn Connection> = match builder.client {
                #[cfg(feature = "fred")]
                Client::Fred => {
                    Box::new(crate::fred_client::FredConnection::connect(&target, &builder).await?)
                }
                #[cfg(feature = "redis")]
                Client::RedisRs => Box::new(
                    crate::redis_rs_client::RedisRsConnection::connect(&target, &builder).await?,
                ),
            };
            check_version(&conn.info_server().await?)?;
            Ok::<_, Error>(conn)
        };
        let conn = match tokio::time::timeout(timeout, connecting).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(Error::Timeout {
                    backend: BACKEND,
                    operation: "connect",
                    after: timeout,
                });
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                keys: crate::keys::Keys::new(builder.prefix),
                options: builder.options,
                topology,
                client: builder.client,
                format: builder.format,
            }),
        })
    }

    /// The key a session is stored under: `{prefix}{id}`.
    pub fn key_for(&self, id: &SessionId) -> String {
        self.inner.keys.session(id)
    }

    /// The key of an owner's index: `{prefix}owner:{<owner>}`.
    pub fn owner_key(&self, owner: &str) -> String {
        self.inner.keys.owner(owner)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The options this store was built with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The deployment the store talks to.
    pub fn topology(&self) -> Topology {
        self.inner.topology
    }

    /// The client library in use.
    pub fn client(&self) -> Client {
        self.inner.client
    }

    /// What the session keys hold.
    pub fn format(&self) -> Format {
        self.inner.format
    }

    /// Test support: writes `value` under `key` as it is (no expiry), bypassing the codec,
    /// to plant corrupt records.
    #[doc(hidden)]
    pub async fn raw_set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.call(
            "raw_set",
            self.inner
                .conn
                .command(Command::set(value.to_vec(), None), key),
        )
        .await
        .map(drop)
    }

    /// Test support: writes `value` under `key` as it is, expiring at `at_ms` (Unix ms),
    /// bypassing the codec, to plant values another app wrote.
    #[doc(hidden)]
    pub async fn raw_set_pxat(&self, key: &str, value: &[u8], at_ms: i64) -> Result<()> {
        let command = Command::set(value.to_vec(), Some(at_ms));
        self.call("raw_set", self.inner.conn.command(command, key))
            .await
            .map(drop)
    }

    /// Test support: the value under `key`, as it is.
    #[doc(hidden)]
    pub async fn raw_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let reply = self
            .call("raw_get", self.inner.conn.command(Command::Get, key))
            .await?;
        Ok(reply.into_opt_bytes()?.map(Vec::from))
    }

    /// Test support: `PTTL key` (ms left, -1 without expiry, -2 missing).
    #[doc(hidden)]
    pub async fn raw_pttl(&self, key: &str) -> Result<i64> {
        let reply = self
            .call("raw_pttl", self.inner.conn.command(Command::Pttl, key))
            .await?;
        reply.into_int()
    }

    /// Test support: whether `key` exists.
    #[doc(hidden)]
    pub async fn raw_exists(&self, key: &str) -> Result<bool> {
        let reply = self
            .call("raw_exists", self.inner.conn.command(Command::Exists, key))
            .await?;
        Ok(reply.into_int()? > 0)
    }

    async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        self.inner
            .options
            .within_timeout(BACKEND, operation, fut)
            .await
    }

    fn conn(&self) -> &dyn Connection {
        &*self.inner.conn
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// A stored value as a live record, applying the corrupt-record policy.
    fn decode_live(&self, id: &SessionId, raw: Option<&Stored>) -> Result<Option<Record>> {
        let Some(stored) = raw else { return Ok(None) };
        let decoded = self.format().decode(id, &stored.value, stored.expiry);
        let record = self.inner.options.on_corrupt(decoded)?;
        Ok(record.filter(|record| !record.is_expired()))
    }

    /// The value under `id` (with the key's expiry when the format needs it): `GET`, or a
    /// script that reads both at once.
    async fn read(&self, id: &SessionId) -> Result<Option<Stored>> {
        self.read_or_take(id, false).await
    }

    /// Like [`Self::read`], deleting the key (`GETDEL`).
    async fn take(&self, id: &SessionId) -> Result<Option<Stored>> {
        self.read_or_take(id, true).await
    }

    async fn read_or_take(&self, id: &SessionId, delete: bool) -> Result<Option<Stored>> {
        let key = self.keys().session(id);
        if !self.format().reads_expiry() {
            let command = if delete {
                Command::GetDel
            } else {
                Command::Get
            };
            let value = self.conn().command(command, &key).await?;
            return Ok(value.into_opt_bytes()?.map(|value| Stored {
                value,
                expiry: None,
            }));
        }
        let script = if delete {
            ScriptId::ExpressTake
        } else {
            ScriptId::ExpressRead
        };
        let reply = self.conn().eval(script, &key, vec![]).await?;
        if reply == Reply::Nil {
            return Ok(None);
        }
        let mut items = reply.into_array()?.into_iter();
        let value = items
            .next()
            .map(Reply::into_opt_bytes)
            .transpose()?
            .flatten();
        let expiry = items.next().map(Reply::into_int).transpose()?;
        Ok(value.map(|value| Stored { value, expiry }))
    }

    /// What a script's "the stored value is corrupt" reply means under the policy: the decode
    /// error, or `Ok(())` meaning "treat as missing".
    fn corrupt(&self, id: &SessionId, what: &str) -> Result<()> {
        let err = Error::decode(
            id,
            format!("the stored value is not a session record ({what})"),
        );
        self.inner.options.on_corrupt(Err(err)).map(drop)
    }

    /// Indexes `id` under its owner before the session itself is written: the index may point
    /// at a missing session (tolerated), never miss a live one.
    async fn index_add(&self, owner: &str, id: &SessionId, expires_ms: i64) -> Result<()> {
        let now_ms = unix_millis(now());
        if expires_ms <= now_ms {
            return Ok(());
        }
        let args = vec![arg(id.expose()), arg(expires_ms), arg(now_ms)];
        self.conn()
            .eval(ScriptId::IndexAdd, &self.keys().owner(owner), args)
            .await?;
        Ok(())
    }

    /// Removes a dead session's index entry unless a concurrent write raised it.
    async fn index_remove(&self, owner: &str, id: &SessionId, expires_ms: i64) -> Result<()> {
        let args = vec![arg(id.expose()), arg(expires_ms)];
        self.conn()
            .eval(ScriptId::IndexRemove, &self.keys().owner(owner), args)
            .await?;
        Ok(())
    }

    /// Index clean-up after the real change succeeded: a failure only leaves an entry that
    /// is skipped on listing and pruned at its expiry, so it is logged, not returned.
    async fn index_remove_best_effort(&self, owner: &str, id: &SessionId, expires_ms: i64) {
        if let Err(err) = self.index_remove(owner, id, expires_ms).await {
            tracing::debug!(session = %id.fingerprint(), %err, "owner index clean-up failed");
        }
    }

    /// `SET key value [NX] PXAT expiry`, after indexing the owner; advances the version.
    /// (`set` in a format with a set script runs that script instead of the plain `SET`.)
    async fn write(&self, record: &mut Record, only_if_absent: bool) -> Result<bool> {
        let encoded = self.format().encode(record, &self.inner.options)?;
        let id = record.id();
        let key = self.keys().session(id);
        let at = pxat(record.expires_at());
        if let Some(owner) = record.owner() {
            self.index_add(owner, id, at).await?;
        }
        let written = match self.format().set_script() {
            Some(script) if !only_if_absent => {
                let mut args = vec![encoded.value, arg(at)];
                args.extend(encoded.extra);
                self.conn().eval(script, &key, args).await?.into_int()? == DONE
            }
            _ => {
                let command = Command::Set {
                    value: encoded.value,
                    only_if_absent,
                    expire_at_ms: Some(at),
                };
                self.conn().command(command, &key).await? != Reply::Nil
            }
        };
        if written {
            record.set_version(record.version() + 1);
        }
        Ok(written)
    }

    /// The live records of `owner` with their raw stored values.
    async fn owned(&self, owner: &str) -> Result<Vec<(Record, Vec<u8>)>> {
        let now_ms = unix_millis(now());
        let members = self
            .conn()
            .eval(
                ScriptId::IndexList,
                &self.keys().owner(owner),
                vec![arg(now_ms)],
            )
            .await?
            .into_array()?;
        let ids: Vec<SessionId> = members
            .into_iter()
            .filter_map(|member| member.into_opt_bytes().ok().flatten())
            .filter_map(|bytes| String::from_utf8(bytes.into()).ok())
            .filter_map(|text| SessionId::parse(&text).ok())
            .collect();
        let reads = ids.iter().map(|id| async move {
            let stored = self.read(id).await?;
            let record = self.decode_live(id, stored.as_ref())?;
            Ok::<_, Error>(record.zip(stored.map(|stored| Vec::from(stored.value))))
        });
        let found = futures::future::try_join_all(reads).await?;
        Ok(found
            .into_iter()
            .flatten()
            .filter(|(record, _)| record.owner() == Some(owner))
            .collect())
    }

    async fn rename_inner(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        let from_key = self.keys().session(from);
        let to_key = self.keys().session(to);
        for _ in 0..RENAME_ATTEMPTS {
            let stored = self.read(from).await?;
            let Some(record) = self.decode_live(from, stored.as_ref())? else {
                return Ok(Rename::SourceMissing);
            };
            let Some(Stored { value: raw, .. }) = stored else {
                return Ok(Rename::SourceMissing);
            };
            let at = pxat(record.expires_at());
            if let Some(owner) = record.owner() {
                self.index_add(owner, to, at).await?;
            }
            // 1. Copy, never overwriting a live target.
            let copy = Command::Set {
                value: raw.to_vec(),
                only_if_absent: true,
                expire_at_ms: Some(at),
            };
            if self.conn().command(copy, &to_key).await? == Reply::Nil {
                return Ok(Rename::TargetTaken);
            }
            // 2. Remove the source only if nobody wrote it since we read it.
            let removed = self
                .conn()
                .eval(ScriptId::CompareAndDelete, &from_key, vec![raw.to_vec()])
                .await?
                .into_int()?;
            if removed == 1 {
                if let Some(owner) = record.owner() {
                    self.index_remove_best_effort(owner, from, at).await;
                }
                return Ok(Rename::Moved);
            }
            // The source changed (a write to keep) or ended (nothing to resurrect): drop our
            // now stale copy, unless someone already wrote to the new id, and start over.
            self.conn()
                .eval(ScriptId::CompareAndDelete, &to_key, vec![raw.into()])
                .await?;
        }
        Err(Error::Conflict { id: from.clone() })
    }

    async fn destroy_by_owner_inner(&self, owner: &str) -> Result<u64> {
        let mut removed = 0;
        // A concurrent rename may move a session from an id we read to one we didn't list
        // yet; its new index entry is written before the old key goes, so one more pass
        // finds it.
        for _ in 0..REVOKE_PASSES {
            let owned = self.owned(owner).await?;
            if owned.is_empty() {
                break;
            }
            for (record, raw) in owned {
                let key = self.keys().session(record.id());
                let reply = self
                    .conn()
                    .eval(ScriptId::CompareAndDelete, &key, vec![raw])
                    .await?;
                if reply.into_int()? == 1 {
                    removed += 1;
                    let at = pxat(record.expires_at());
                    self.index_remove_best_effort(owner, record.id(), at).await;
                }
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        self.call("get", async {
            let stored = self.read(id).await?;
            self.decode_live(id, stored.as_ref())
        })
        .await
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        self.call("insert", self.write(record, true)).await
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        self.call("set", self.write(record, false)).await.map(drop)
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        self.call("update", async {
            let encoded = self.format().encode(record, &self.inner.options)?;
            let id = record.id();
            let at = pxat(record.expires_at());
            if let Some(owner) = record.owner() {
                self.index_add(owner, id, at).await?;
            }
            let mut args = vec![
                arg(record.version()),
                encoded.value,
                arg(at),
                arg(unix_millis(now())),
            ];
            args.extend(encoded.extra);
            let key = self.keys().session(id);
            match self
                .conn()
                .eval(self.format().update_script(), &key, args)
                .await?
                .into_int()?
            {
                DONE => {
                    record.set_version(record.version() + 1);
                    Ok(())
                }
                MISSING => Err(Error::Conflict { id: id.clone() }),
                CORRUPT => {
                    self.corrupt(id, "update")?;
                    Err(Error::Conflict { id: id.clone() })
                }
                other => Err(unexpected("0, 1 or -1", &Reply::Int(other))),
            }
        })
        .await
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.call("touch", async {
            let args = vec![arg(pxat(expires_at)), arg(unix_millis(now()))];
            let key = self.keys().session(id);
            let script = self.format().touch_script();
            let reply = self.conn().eval(script, &key, args).await?;
            let mut items = reply.into_array()?.into_iter();
            let status = items.next().map(Reply::into_int).transpose()?;
            match status {
                Some(DONE) => {
                    // The owner index follows the new expiry (its score must never be lower).
                    let owner = items
                        .next()
                        .map(Reply::into_opt_bytes)
                        .transpose()?
                        .flatten();
                    let at = items
                        .next()
                        .map(Reply::into_opt_bytes)
                        .transpose()?
                        .flatten();
                    if let (Some(owner), Some(at)) = (owner, at) {
                        let owner = String::from_utf8_lossy(&owner);
                        let at = String::from_utf8_lossy(&at)
                            .parse::<i64>()
                            .unwrap_or(i64::MAX);
                        self.index_add(&owner, id, at).await?;
                    }
                    Ok(true)
                }
                Some(MISSING) => Ok(false),
                Some(CORRUPT) => self.corrupt(id, "touch").map(|()| false),
                other => Err(unexpected(
                    "[1], [0] or [-1]",
                    &Reply::Int(other.unwrap_or(i64::MIN)),
                )),
            }
        })
        .await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.call("destroy", async {
            let stored = self.take(id).await?;
            // Clean the owner index when the old value tells whose it was.
            if let Some(stored) = stored
                && let Ok(record) = self.format().decode(id, &stored.value, stored.expiry)
                && let Some(owner) = record.owner()
            {
                self.index_remove_best_effort(owner, id, pxat(record.expires_at()))
                    .await;
            }
            Ok(())
        })
        .await
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        if from == to {
            let live = self.get(from).await?.is_some();
            return Ok(if live {
                Rename::TargetTaken
            } else {
                Rename::SourceMissing
            });
        }
        self.call("rename", self.rename_inner(from, to)).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        // Redis expires every key at its PXAT by itself.
        Ok(0)
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.call("list_by_owner", async {
            Ok(self
                .owned(owner)
                .await?
                .into_iter()
                .map(|(record, _)| record)
                .collect())
        })
        .await
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.call("destroy_by_owner", self.destroy_by_owner_inner(owner))
            .await
    }

    async fn count(&self) -> Result<u64> {
        self.call("count", async {
            let keys = self.conn().scan(&self.keys().scan_pattern()).await?;
            let sessions: HashSet<Vec<u8>> = keys
                .into_iter()
                .filter(|key| self.keys().is_session_key(key))
                .collect();
            Ok(sessions.len() as u64)
        })
        .await
    }
}

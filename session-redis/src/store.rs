//! The store: every operation, written once over the
//! [`Connection`](crate::conn::Connection) primitives.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use session_core::express::object;
use session_core::{
    Error, OwnerPath, Record, Rename, Result, SessionId, SessionStore, StoreOptions, now,
    rename_onto_itself, unix_millis,
};
use time::OffsetDateTime;

use crate::config::{Client, RedisStoreBuilder, Target, Topology, check_version, parse_target};
use crate::conn::{BACKEND, Command, Conn, Reply, unexpected};
use crate::format::Format;
use crate::keys::Keys;
use crate::scripts::{CORRUPT, DONE, MISSING, OWNER_CHANGED, ScriptId, VERSION_EXHAUSTED};

/// How often a call that found its inputs changed under it (a rename's source, an owner's
/// index, a touched session's owner) starts over before giving up with a conflict.
pub(crate) const RESTARTS: usize = 8;

/// A session store on Redis (standalone, Cluster or Sentinel), over fred or redis-rs.
///
/// Cheap to clone: clones share the connection(s). See the [crate docs](crate) for the key
/// layout and what each operation guarantees on a cluster.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    keys: Keys,
    options: StoreOptions,
    topology: Topology,
    client: Client,
    format: Format,
    /// Where the owner is in data Node writes (express-session format only).
    owner_path: Option<OwnerPath>,
    /// Where the store connects, for the expiry feed's own connections.
    target: Target,
    connect_timeout: std::time::Duration,
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
pub(crate) struct Stored {
    pub(crate) value: Bytes,
    pub(crate) expiry: Option<i64>,
}

/// Unix milliseconds for `PXAT`; never below 1, which Redis would reject (a time that far
/// back simply means "already expired").
pub(crate) fn pxat(at: OffsetDateTime) -> i64 {
    unix_millis(at).max(1)
}

pub(crate) fn arg(value: impl ToString) -> Bytes {
    value.to_string().into()
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
        let owner_path = builder
            .owner_path
            .as_deref()
            .map(OwnerPath::parse)
            .transpose()?;
        if owner_path.is_some() && builder.format == Format::Native {
            return Err(Error::Config(
                "owner_path reads the owner from data another program writes: use it with \
                 the express-session format (the native format stores the owner itself)"
                    .into(),
            ));
        }
        builder.durability.check(builder.options.timeout)?;
        let timeout = builder.effective_connect_timeout();
        let topology = target.topology;
        let connecting = async {
            let conn = match builder.client {
                #[cfg(feature = "fred")]
                Client::Fred => Conn::Fred(
                    crate::fred_client::FredConnection::connect(&target, &builder).await?,
                ),
                #[cfg(feature = "redis")]
                Client::RedisRs => Conn::RedisRs(
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
                owner_path,
                target,
                connect_timeout: timeout,
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
                .command(Command::set(Bytes::copy_from_slice(value), None), key),
        )
        .await
        .map(drop)
    }

    /// Test support: writes `value` under `key` as it is, expiring at `at_ms` (Unix ms),
    /// bypassing the codec, to plant values another app wrote.
    #[doc(hidden)]
    pub async fn raw_set_pxat(&self, key: &str, value: &[u8], at_ms: i64) -> Result<()> {
        let command = Command::set(Bytes::copy_from_slice(value), Some(at_ms));
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

    pub(crate) async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        self.inner
            .options
            .within_timeout(BACKEND, operation, fut)
            .await
    }

    pub(crate) fn conn(&self) -> &Conn {
        &self.inner.conn
    }

    /// Where the store connects, and how long a connection may take.
    pub(crate) fn target(&self) -> (&Target, std::time::Duration) {
        (&self.inner.target, self.inner.connect_timeout)
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Whether the store talks to one server, where a script may span keys (standalone or
    /// Sentinel), rather than a cluster.
    pub(crate) fn one_server(&self) -> bool {
        self.inner.topology != Topology::Cluster
    }

    /// Runs a one-key script.
    pub(crate) async fn eval(
        &self,
        script: ScriptId,
        key: String,
        args: Vec<Bytes>,
    ) -> Result<Reply> {
        self.conn()
            .eval(script, std::slice::from_ref(&key), args)
            .await
    }

    /// Runs a write script on a session, raising `owner`'s index first: in the same script
    /// on one server (see `lua/index_first.lua`), in a round trip of its own on a cluster.
    async fn eval_owned(
        &self,
        script: ScriptId,
        id: &SessionId,
        owner: Option<&str>,
        at: i64,
        mut args: Vec<Bytes>,
    ) -> Result<Reply> {
        let mut keys = vec![self.keys().session(id)];
        match owner {
            Some(owner) if self.one_server() => {
                keys.push(self.keys().owner(owner));
                args.extend([arg(id.expose()), arg(at), arg(unix_millis(now()))]);
            }
            Some(owner) => self.index_add(owner, id, at).await?,
            None => {}
        }
        self.conn().eval(script, &keys, args).await
    }

    /// A stored value as a record: the format's decoding, and the owner at the owner path
    /// when one is configured and the data has one there.
    pub(crate) fn decode_record(&self, id: &SessionId, stored: &Stored) -> Result<Record> {
        let mut record = self.format().decode(id, &stored.value, stored.expiry)?;
        if let Some(owner) = self
            .inner
            .owner_path
            .as_ref()
            .and_then(|path| path.owner_in(record.data()))
        {
            record.set_owner(Some(owner));
        }
        Ok(record)
    }

    /// Whether owners are read from the data (so not every session is indexed).
    pub(crate) fn owners_in_data(&self) -> bool {
        self.inner.owner_path.is_some()
    }

    /// A stored value as a live record, applying the corrupt-record policy.
    pub(crate) fn decode_live(
        &self,
        id: &SessionId,
        raw: Option<&Stored>,
    ) -> Result<Option<Record>> {
        let Some(stored) = raw else { return Ok(None) };
        let decoded = self.decode_record(id, stored);
        let record = self.inner.options.on_corrupt(decoded)?;
        Ok(record.filter(|record| !record.is_expired()))
    }

    /// The value under `id` (with the key's expiry when the format needs it): `GET`, or a
    /// script that reads both at once.
    pub(crate) async fn read(&self, id: &SessionId) -> Result<Option<Stored>> {
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
        let (script, args) = if delete {
            (ScriptId::ExpressTake, vec![])
        } else {
            (ScriptId::ExpressRead, vec![arg(unix_millis(now()))])
        };
        let reply = self.eval(script, key, args).await?;
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
    pub(crate) fn corrupt(&self, id: &SessionId, what: &str) -> Result<()> {
        let err = Error::decode(
            id,
            format!("the stored value is not a session record ({what})"),
        );
        self.inner.options.on_corrupt(Err(err)).map(drop)
    }

    /// `insert`: `SET key value NX PXAT expiry`, indexing the owner first (on one server in
    /// the same script, `lua/insert.lua`).
    async fn insert_inner(&self, record: &mut Record) -> Result<bool> {
        let encoded = self.format().encode(record, &self.inner.options)?;
        let seal = self.format().written_seal(&encoded.value);
        let at = pxat(record.expires_at());
        let written = match record.owner() {
            Some(owner) if self.one_server() => {
                let args = vec![encoded.value, arg(at)];
                self.eval_owned(ScriptId::Insert, record.id(), Some(owner), at, args)
                    .await?
            }
            owner => {
                if let Some(owner) = owner {
                    self.index_add(owner, record.id(), at).await?;
                }
                let command = Command::Set {
                    value: encoded.value,
                    only_if_absent: true,
                    expire_at_ms: Some(at),
                };
                let key = self.keys().session(record.id());
                self.conn().command(command, &key).await?
            }
        } != Reply::Nil;
        if written {
            record.set_version(encoded.version);
            object::set_written_seal(record, seal);
        }
        Ok(written)
    }

    /// `set`: the format's set script (never reusing a version), indexing the owner first.
    async fn set_inner(&self, record: &mut Record) -> Result<()> {
        let encoded = self.format().encode(record, &self.inner.options)?;
        let at = pxat(record.expires_at());
        let digits = encoded.version.to_string().len();
        let mut args = vec![
            encoded.value,
            arg(at),
            arg(record.version()),
            arg(unix_millis(now())),
            arg(encoded.version_at),
            arg(digits),
        ];
        args.extend(encoded.extra);
        let script = self.format().set_script();
        match self
            .eval_owned(script, record.id(), record.owner(), at, args)
            .await?
            .into_int()?
        {
            // The error `version_after` gives for a version at the maximum.
            VERSION_EXHAUSTED => Record::version_after(record.id(), Record::MAX_VERSION).map(drop),
            version if version > 0 => {
                record.set_version(version as u64);
                // The script may have kept the stored cookie object: the seal it wrote is
                // unknown here, so the record's next update checks the version only.
                object::set_written_seal(record, None);
                Ok(())
            }
            other => Err(unexpected("a version", &Reply::Int(other))),
        }
    }

    /// `update`: the format's compare-and-swap script, indexing the owner first.
    async fn update_inner(&self, record: &mut Record) -> Result<()> {
        let encoded = self.format().encode(record, &self.inner.options)?;
        let id = record.id();
        let at = pxat(record.expires_at());
        let mut args = vec![
            arg(record.version()),
            encoded.value,
            arg(at),
            arg(unix_millis(now())),
        ];
        args.extend(encoded.extra);
        let script = self.format().update_script();
        let reply = self
            .eval_owned(script, id, record.owner(), at, args)
            .await?;
        // The express-session script answers a write with the written value's seal, which
        // the record's next compare-and-swap expects (`object::read_seal`).
        if let Reply::Bytes(seal) = &reply {
            let seal =
                object::Seal::try_from(&seal[..]).map_err(|_| unexpected("a seal", &reply))?;
            record.set_version(encoded.version);
            object::set_written_seal(record, Some(seal));
            return Ok(());
        }
        match reply.into_int()? {
            DONE => {
                record.set_version(encoded.version);
                Ok(())
            }
            MISSING => Err(Error::Conflict { id: id.clone() }),
            CORRUPT => {
                self.corrupt(id, "update")?;
                Err(Error::Conflict { id: id.clone() })
            }
            other => Err(unexpected("0, 1 or -1", &Reply::Int(other))),
        }
    }

    /// `touch`: the touch script, naming the owner whose index was raised first; when the
    /// session turns out to have another owner, that owner's index is raised and it asks
    /// again, so an index entry never expires before its session. On one server the native
    /// script raises the index itself, in the same round trip.
    async fn touch_inner(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        let at = pxat(expires_at);
        let key = self.keys().session(id);
        // The owner whose index was raised, marked as the scripts mark it: empty for none,
        // `=` and the owner for one (an owner may be the empty string).
        let mut marked = Bytes::new();
        for _ in 0..RESTARTS {
            let mut args = vec![arg(at), arg(unix_millis(now())), marked.clone()];
            if self.one_server() {
                // The script raises the owner's index itself (see `lua/touch.lua`).
                args.extend([arg(self.keys().owner_prefix()), arg(id.expose())]);
            }
            let reply = self
                .eval(self.format().touch_script(), key.clone(), args)
                .await?;
            let mut items = reply.into_array()?.into_iter();
            match items.next().map(Reply::into_int).transpose()? {
                Some(DONE) => return Ok(true),
                Some(MISSING) => return Ok(false),
                Some(CORRUPT) => return self.corrupt(id, "touch").map(|()| false),
                Some(OWNER_CHANGED) => {
                    marked = items
                        .next()
                        .map(Reply::into_opt_bytes)
                        .transpose()?
                        .flatten()
                        .unwrap_or_default();
                    match marked.strip_prefix(b"=").map(std::str::from_utf8) {
                        None => {}
                        Some(Ok(owner)) => self.index_add(owner, id, at).await?,
                        // An owner that is not UTF-8: `get` reports the record corrupt.
                        Some(Err(_)) => return self.corrupt(id, "touch").map(|()| false),
                    }
                }
                other => {
                    return Err(unexpected(
                        "[1], [0], [-1] or [2, owner]",
                        &Reply::Int(other.unwrap_or(i64::MIN)),
                    ));
                }
            }
        }
        Err(Error::Conflict { id: id.clone() })
    }

    /// `destroy`: `GETDEL` (the owner index entry leaves at its score, see `index_add`).
    async fn destroy_inner(&self, id: &SessionId) -> Result<()> {
        self.take(id).await.map(drop)
    }

    async fn count_inner(&self) -> Result<u64> {
        let keys = self.conn().scan(&self.keys().scan_pattern()).await?;
        let sessions: HashSet<Vec<u8>> = keys
            .into_iter()
            .filter(|key| self.keys().is_session_key(key))
            .collect();
        Ok(sessions.len() as u64)
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
        self.call("insert", self.insert_inner(record)).await
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        self.call("set", self.set_inner(record)).await
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        self.call("update", self.update_inner(record)).await
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.call("touch", self.touch_inner(id, expires_at)).await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.call("destroy", self.destroy_inner(id)).await
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        if from == to {
            return rename_onto_itself(self, from).await;
        }
        self.call("rename", self.rename_inner(from, to)).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        // Redis expires every key at its PXAT by itself.
        Ok(0)
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.call("list_by_owner", async {
            let listed = self.list_inner(owner).await?;
            if !self.owners_in_data() {
                return Ok(listed);
            }
            self.with_swept(owner, listed).await
        })
        .await
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.call("destroy_by_owner", async {
            // With owners in the data the walk finds every session, and judges each by its
            // owner as read (the path first), as `list_by_owner` does; the index's scripts
            // know only the owner Rust stored.
            if self.owners_in_data() {
                return self.revoke_swept(owner).await;
            }
            self.revoke_inner(owner).await
        })
        .await
    }

    async fn count(&self) -> Result<u64> {
        self.call("count", self.count_inner()).await
    }

    fn timeout(&self) -> std::time::Duration {
        self.inner.options.timeout
    }
}

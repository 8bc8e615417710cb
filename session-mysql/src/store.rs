//! The store: configuration, migration, and the `SessionStore` implementation.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use session_core::codec::{CURRENT_FORMAT, StoredRecord, encode_data};
use session_core::{
    Error, Pruner, Record, Rename, Result, SessionId, SessionStore, StoreOptions, async_trait,
    codec, now, rename_onto_itself, to_millis, unix_millis,
};
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPoolOptions, MySqlRow};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Connection as _, Executor as _, MySql, MySqlPool, Row};

use crate::error::{BACKEND, DUPLICATE_KEY, backend, is_deadlock, number, write};
use crate::schema::{
    DEFAULT_TABLE, EXPIRES_INDEX, MAX_OWNER_BYTES, OWNER_INDEX, Statements, TableName,
    migration_sql,
};

/// Rows `delete_expired` removes per statement unless configured otherwise.
pub const DEFAULT_PURGE_BATCH: u32 = 1_000;

/// Connections a pool built from a URL holds at most unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long a connection of a pool built from a URL may sit idle before it is pinged when
/// taken: see [`MysqlStoreBuilder::connect_lazy`].
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The named lock (`GET_LOCK`, server-wide) every migration of this crate holds while it
/// runs, so app instances starting together take turns.
const MIGRATION_LOCK: &str = "session_mysql.migrate";

/// How often `set` tries its update-else-insert when each step loses a race to another
/// writer (a row appearing and vanishing in between, again and again).
const SET_ATTEMPTS: usize = 4;

/// How often `insert` and `rename` try their statements when the id they need keeps
/// holding a row that is gone by the time they look at it (expired, then removed by others).
const TAKE_ATTEMPTS: usize = 4;

/// A session store over a MySQL or MariaDB (InnoDB) table (see the crate docs).
///
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct MysqlStore {
    pool: MySqlPool,
    inner: Arc<Inner>,
}

struct Inner {
    name: TableName,
    quoted: String,
    sql: Statements,
    options: StoreOptions,
    purge_batch: u32,
}

impl fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the pool's connect options: they hold the password.
        f.debug_struct("MysqlStore")
            .field("table", &self.inner.quoted)
            .field("options", &self.inner.options)
            .field("purge_batch", &self.inner.purge_batch)
            .field("pool_size", &self.pool.size())
            .finish()
    }
}

/// What one [`MysqlStore::purge_expired`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Expired rows removed.
    pub removed: u64,
    /// `DELETE` statements run (each its own short transaction).
    pub batches: u64,
}

/// Configures a [`MysqlStore`]: table, options, and the pool when built from a URL.
#[derive(Debug, Clone)]
pub struct MysqlStoreBuilder {
    table: String,
    options: StoreOptions,
    purge_batch: u32,
    max_connections: u32,
    acquire_timeout: Option<Duration>,
}

impl Default for MysqlStoreBuilder {
    fn default() -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            options: StoreOptions::default(),
            purge_batch: DEFAULT_PURGE_BATCH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: None,
        }
    }
}

impl MysqlStoreBuilder {
    /// The table's name (default `sessions`), in the connection's database. Checked when
    /// building: lowercase ASCII letters, digits and `_`, not starting with a digit, at
    /// most 64 bytes.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Payload limit, per-call timeout and corrupt-record policy.
    pub fn options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }

    /// Rows one `DELETE` of [`SessionStore::delete_expired`] removes at most (default
    /// 1,000; at least 1), so a large purge never holds many row locks for long.
    pub fn purge_batch(mut self, rows: u32) -> Self {
        self.purge_batch = rows.max(1);
        self
    }

    /// Most connections of a pool built by [`Self::connect`] (default 10).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits for a free connection of a pool built by [`Self::connect`]
    /// (default: the options' timeout); then it fails with a retryable error.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    /// A store over the caller's pool. Fails with [`Error::Config`] on a bad table name;
    /// does no I/O.
    pub fn build(self, pool: MySqlPool) -> Result<MysqlStore> {
        let name = TableName::new(&self.table)?;
        Ok(MysqlStore {
            pool,
            inner: Arc::new(Inner {
                quoted: name.quoted(),
                sql: Statements::new(&name),
                name,
                options: self.options,
                purge_batch: self.purge_batch,
            }),
        })
    }

    /// A store with a pool of its own that connects when first used. Fails with
    /// [`Error::Config`] on a malformed URL or a bad name; does no I/O.
    ///
    /// Each new connection sets `innodb_lock_wait_timeout` to the call timeout (rounded up
    /// to whole seconds), so a statement the store gave up on stops waiting for row locks
    /// soon after instead of holding its connection for the server's 50 s default, and
    /// adds `STRICT_ALL_TABLES` to `sql_mode`, so a value that doesn't fit is refused rather
    /// than truncated. The pool pings a connection it hands out only when it sat idle for a
    /// second or more (sqlx's default pings every time, one extra round trip per call).
    pub fn connect_lazy(self, url: &str) -> Result<MysqlStore> {
        // sqlx reads any scheme; a postgres:// URL here is a mistake worth naming.
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(Error::Config(
                "invalid MySQL URL: it must start with mysql:// or mariadb://".to_owned(),
            ));
        }
        let connect: MySqlConnectOptions = url
            .parse()
            .map_err(|err| Error::Config(format!("invalid MySQL URL: {err}")))?;
        let lock_wait = self.options.timeout.as_secs_f64().ceil().max(1.0) as u64;
        let pool = MySqlPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout.unwrap_or(self.options.timeout))
            .test_before_acquire(false)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    // Only a number of ours goes into the text (SET takes no parameters here).
                    let set = format!(
                        "SET SESSION innodb_lock_wait_timeout = {lock_wait}, \
                         sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')"
                    );
                    connection.execute(set.as_str()).await.map(drop)
                })
            })
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(connect);
        self.build(pool)
    }

    /// Like [`Self::connect_lazy`], then opens one connection (within the timeout) to
    /// prove the server is there: a retryable error when it is not.
    pub async fn connect(self, url: &str) -> Result<MysqlStore> {
        let store = self.connect_lazy(url)?;
        let pool = store.pool.clone();
        store
            .inner
            .options
            .within_timeout(BACKEND, "connect", async move {
                pool.acquire().await.map(drop).map_err(backend)
            })
            .await?;
        Ok(store)
    }
}

impl MysqlStore {
    /// A store over `pool` using the table `sessions` and default options. Run
    /// [`Self::migrate`] (or apply [`Self::migration_sql`]) before using it.
    pub fn new(pool: MySqlPool) -> Self {
        MysqlStoreBuilder::default()
            .build(pool)
            .unwrap_or_else(|_| unreachable!("the default name is valid"))
    }

    /// Configures a store: table name, options, pool.
    pub fn builder() -> MysqlStoreBuilder {
        MysqlStoreBuilder::default()
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The table, backquoted (`` `sessions` ``), ready for SQL.
    pub fn table(&self) -> &str {
        &self.inner.quoted
    }

    /// The table's name, unquoted.
    pub fn table_name(&self) -> &str {
        self.inner.name.table()
    }

    /// The names of the table's indexes: primary key, `expires_at`, `owner`.
    pub fn index_names(&self) -> [&'static str; 3] {
        ["PRIMARY", EXPIRES_INDEX, OWNER_INDEX]
    }

    /// The store's options.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The idempotent migration [`Self::migrate`] runs, to apply with your own tool
    /// instead: one `CREATE TABLE IF NOT EXISTS` with the indexes.
    pub fn migration_sql(&self) -> String {
        migration_sql(&self.inner.name)
    }

    /// Creates the table and its indexes when missing; safe to run at every start-up, also
    /// from several instances at once (they take turns on a named lock, `GET_LOCK`).
    pub async fn migrate(&self) -> Result<()> {
        let sql = self.migration_sql();
        let wait = self.inner.options.timeout.as_secs_f64().ceil().max(1.0) as i64;
        self.timed("migrate", async {
            let mut connection = self.pool.acquire().await.map_err(backend)?;
            // The lock belongs to the connection: closing it (rather than handing it back
            // to the pool) frees the lock whatever happens, a timeout that drops this
            // future included.
            connection.close_on_drop();
            let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
                .bind(MIGRATION_LOCK)
                .bind(wait)
                .fetch_one(&mut *connection)
                .await
                .map_err(backend)?;
            if locked != Some(1) {
                return Err(Error::transient(
                    BACKEND,
                    "another migration holds the migration lock",
                ));
            }
            sqlx::query(&sql)
                .persistent(false)
                .execute(&mut *connection)
                .await
                .map_err(backend)?;
            sqlx::query("SELECT RELEASE_LOCK(?)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *connection)
                .await
                .map(drop)
                .map_err(backend)
        })
        .await
    }

    /// Runs [`SessionStore::delete_expired`] every `interval` in the background, with
    /// session-core's [`Pruner`]; stop it with [`Pruner::stop`] (or by dropping it). A zero
    /// interval is an [`Error::Config`].
    pub fn spawn_pruner(&self, interval: Duration) -> Result<Pruner> {
        Pruner::spawn(Arc::new(self.clone()), interval)
    }

    /// Deletes expired rows in batches of the configured size, each its own statement
    /// (`DELETE ... ORDER BY expires_at LIMIT n`, along the `expires_at` index), until a
    /// batch comes back short. The timeout applies to each batch.
    pub async fn purge_expired(&self) -> Result<PurgeStats> {
        let batch = self.inner.purge_batch;
        let mut stats = PurgeStats::default();
        loop {
            let removed = self
                .retried("delete_expired", move || async move {
                    let (mut connection, now) = self.connection().await?;
                    sqlx::query(&self.inner.sql.purge_batch)
                        .bind(now)
                        .bind(batch)
                        .execute(&mut *connection)
                        .await
                        .map(|done| done.rows_affected())
                        .map_err(backend)
                })
                .await?;
            stats.removed += removed;
            stats.batches += 1;
            if removed < u64::from(batch) {
                return Ok(stats);
            }
        }
    }

    /// The SQL of one of the store's statements (`get`, `purge_batch`, `list_by_owner`,
    /// ...), for tests that `EXPLAIN` it.
    #[doc(hidden)]
    pub fn statement_sql(&self, name: &str) -> Option<&str> {
        self.inner.sql.by_name(name)
    }

    /// [`Self::timed`] for a call made of autocommitted statements, run again (within the
    /// same timeout) when InnoDB chose it as a deadlock's victim: the server rolled the
    /// statement back whole, so its outcome is known (nothing) and sending it again can't
    /// apply anything twice. Earlier statements of the call only removed expired rows,
    /// and each statement re-judges the row as it finds it. Any other error, a lost reply
    /// above all, is returned as it is.
    pub(crate) async fn retried<T, F, Fut>(&self, operation: &'static str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.timed(operation, async {
            loop {
                match call().await {
                    Err(err) if is_deadlock(&err) => {
                        tracing::debug!(operation, "deadlock victim; running the call again");
                    }
                    other => return other,
                }
            }
        })
        .await
    }

    pub(crate) fn statements(&self) -> &Statements {
        &self.inner.sql
    }

    pub(crate) async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.inner
            .options
            .within_timeout(BACKEND, operation, call)
            .await
    }

    /// A connection from the pool, and the application's clock (Unix milliseconds) read
    /// once it is in hand: the `now` to bind into a statement that judges liveness.
    ///
    /// Read before the pool hands out a connection, `now` would go stale while the call
    /// waits for one (a busy pool): the statement would then count a session that expired
    /// meanwhile as live, and `update` or `touch` would bring it back. Call it inside
    /// [`Self::timed`], so the wait counts against the call's timeout.
    pub(crate) async fn connection(&self) -> Result<(PoolConnection<MySql>, i64)> {
        let connection = self.pool.acquire().await.map_err(backend)?;
        Ok((connection, unix_millis(now())))
    }

    /// Deletes the row under `id` if it has expired (by the clock now); how many it deleted.
    async fn take_expired(&self, connection: &mut PoolConnection<MySql>, id: &str) -> Result<u64> {
        sqlx::query(&self.inner.sql.take_expired)
            .bind(id)
            .bind(unix_millis(now()))
            .execute(&mut **connection)
            .await
            .map(|done| done.rows_affected())
            .map_err(backend)
    }

    /// Whether a row that has not expired (by the clock now; live or corrupt) is under `id`:
    /// what makes a duplicate key mean "taken" for `insert` and `rename`.
    async fn holds_live_row(
        &self,
        connection: &mut PoolConnection<MySql>,
        id: &str,
    ) -> Result<bool> {
        sqlx::query(&self.inner.sql.get)
            .bind(id)
            .bind(unix_millis(now()))
            .fetch_optional(&mut **connection)
            .await
            .map(|row| row.is_some())
            .map_err(backend)
    }

    /// Decodes rows, applying the corrupt-record policy to each.
    fn decode_many(&self, rows: Vec<MySqlRow>) -> Result<Vec<Record>> {
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let id: &[u8] = row.try_get("id").map_err(backend)?;
            // Bytes that aren't UTF-8 become U+FFFD, which no valid id holds.
            let decoded = match SessionId::parse(&String::from_utf8_lossy(id)) {
                Ok(id) => self.inner.options.on_corrupt(decode_row(&id, &row)),
                Err(_)
                    if self.inner.options.corrupt
                        == session_core::CorruptPolicy::TreatAsMissing =>
                {
                    tracing::warn!("a stored session id is malformed; skipping the row");
                    Ok(None)
                }
                Err(err) => Err(Error::InvalidId(err)),
            };
            records.extend(decoded?);
        }
        Ok(records)
    }

    /// `set`'s update-else-insert, on one connection; see [`Statements::set_update`].
    async fn set_on(
        &self,
        connection: &mut PoolConnection<MySql>,
        params: &WriteParams<'_>,
        mut now: i64,
        id: &SessionId,
    ) -> Result<u64> {
        for _ in 0..SET_ATTEMPTS {
            let updated = sqlx::query(&self.inner.sql.set_update)
                .bind(now)
                .bind(params.version)
                .bind(params.version)
                .bind(&params.data)
                .bind(params.expires_at)
                .bind(params.deadline)
                .bind(params.created_at)
                .bind(params.owner)
                .bind(params.format)
                .bind(params.id)
                .bind(now)
                .execute(&mut **connection)
                .await
                .map_err(|err| write(id, err))?;
            if updated.rows_affected() == 1 {
                // The stored version, returned by LAST_INSERT_ID(..); at least 1.
                return match updated.last_insert_id() {
                    0 => Err(Error::permanent(
                        BACKEND,
                        "the server did not return the stored version (LAST_INSERT_ID)",
                    )),
                    version => Ok(version),
                };
            }
            match params
                .bind(&self.inner.sql.insert)
                .execute(&mut **connection)
                .await
            {
                Ok(_) => return Ok(params.version as u64),
                Err(err) if number(&err) == Some(DUPLICATE_KEY) => {}
                Err(err) => return Err(write(id, err)),
            }
            // Neither matched: a live row at the maximum version, or a row that appeared
            // between the two statements (then the update goes again).
            now = unix_millis(session_core::now());
            let blocked = sqlx::query(&self.inner.sql.set_blocked)
                .bind(params.id)
                .bind(now)
                .fetch_optional(&mut **connection)
                .await
                .map_err(backend)?;
            if blocked.is_some() {
                return Record::version_after(id, Record::MAX_VERSION);
            }
        }
        Err(Error::transient(
            BACKEND,
            "set lost every race between its update and its insert",
        ))
    }
}

/// One write's parameters, in [`Statements::insert`]'s order.
struct WriteParams<'a> {
    id: &'a str,
    data: String,
    expires_at: i64,
    deadline: Option<i64>,
    created_at: i64,
    version: i64,
    owner: Option<&'a str>,
    format: i32,
}

impl<'a> WriteParams<'a> {
    /// Encodes (size-checked by core) before anything reaches the server.
    fn of(record: &'a Record, options: &StoreOptions) -> Result<Self> {
        let data = encode_data(record, options)?;
        // At most Record::MAX_VERSION (2^53 - 1), checked by the codec: fits a BIGINT.
        let version = codec::check_writable(record)? as i64;
        let owner = record.owner();
        if owner.is_some_and(|owner| owner.len() > MAX_OWNER_BYTES) {
            return Err(Error::Encode {
                id: record.id().clone(),
                reason: format!("the owner is longer than {MAX_OWNER_BYTES} bytes"),
            });
        }
        Ok(Self {
            id: record.id().expose(),
            data,
            expires_at: unix_millis(record.expires_at()),
            deadline: record.deadline().map(unix_millis),
            created_at: unix_millis(record.created_at()),
            version,
            owner,
            format: CURRENT_FORMAT as i32,
        })
    }

    fn bind<'q>(&'q self, sql: &'q str) -> Query<'q, MySql, MySqlArguments> {
        sqlx::query(sql)
            .bind(self.id)
            .bind(&self.data)
            .bind(self.expires_at)
            .bind(self.deadline)
            .bind(self.created_at)
            .bind(self.version)
            .bind(self.owner)
            .bind(self.format)
    }
}

/// A row of [`Statements::get`]'s columns as a record, or [`Error::Decode`] naming `id`.
///
/// Text columns are read as bytes: `id` and `owner` are `VARBINARY`, and sqlx refuses to
/// read a column with a binary collation (`data`'s `utf8mb4_bin`) as a string.
pub(crate) fn decode_row(id: &SessionId, row: &MySqlRow) -> Result<Record> {
    let column = |err: sqlx::Error| Error::decode(id, err);
    let data: &[u8] = row.try_get("data").map_err(column)?;
    let data = codec::parse_json(id, data)?;
    let version: i64 = row.try_get("version").map_err(column)?;
    let format: i32 = row.try_get("format").map_err(column)?;
    let owner: Option<Vec<u8>> = row.try_get("owner").map_err(column)?;
    let owner = owner
        .map(String::from_utf8)
        .transpose()
        .map_err(|err| Error::decode(id, err))?;
    let stored = StoredRecord {
        format: u32::try_from(format)
            .map_err(|_| Error::decode(id, format!("unknown stored format {format}")))?,
        version: u64::try_from(version)
            .map_err(|_| Error::decode(id, format!("negative version {version}")))?,
        created_at: row.try_get("created_at").map_err(column)?,
        expires_at: row.try_get("expires_at").map_err(column)?,
        deadline: row.try_get("deadline").map_err(column)?,
        owner: owner.map(Cow::Owned),
        data: Cow::Owned(data),
    };
    stored.into_record(id)
}

#[async_trait]
impl SessionStore for MysqlStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        let row = self
            .retried("get", move || async move {
                let (mut connection, now) = self.connection().await?;
                sqlx::query(&self.inner.sql.get)
                    .bind(id.expose())
                    .bind(now)
                    .fetch_optional(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        match row {
            None => Ok(None),
            Some(row) => self.inner.options.on_corrupt(decode_row(id, &row)),
        }
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        let params = &WriteParams::of(record, &self.inner.options)?;
        let id = record.id();
        let written = self
            .retried("insert", move || async move {
                // The INSERT, and when the id is taken by an expired row, that row's removal
                // and one more INSERT. A duplicate-key error is the server's answer that
                // nothing was written, so sending the INSERT again can't write twice.
                let (mut connection, _) = self.connection().await?;
                for _ in 0..TAKE_ATTEMPTS {
                    match params
                        .bind(&self.inner.sql.insert)
                        .execute(&mut *connection)
                        .await
                    {
                        Ok(_) => return Ok(true),
                        Err(err) if number(&err) == Some(DUPLICATE_KEY) => {}
                        Err(err) => return Err(write(id, err)),
                    }
                    // A duplicate key says a row was there, live or expired: only a live
                    // one means the id is taken. When the DELETE frees nothing, the row may
                    // be live, or gone (a concurrent destroy or purge took the expired row):
                    // then the id is free and the INSERT goes again.
                    if self.take_expired(&mut connection, params.id).await? == 0
                        && self.holds_live_row(&mut connection, params.id).await?
                    {
                        return Ok(false);
                    }
                }
                Err(Error::transient(
                    BACKEND,
                    "insert lost every race for an id whose rows kept expiring and vanishing",
                ))
            })
            .await?;
        if written {
            record.set_version(params.version as u64);
        }
        Ok(written)
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        let params = &WriteParams::of(record, &self.inner.options)?;
        let id = record.id();
        let version = self
            .retried("set", move || async move {
                let (mut connection, now) = self.connection().await?;
                self.set_on(&mut connection, params, now, id).await
            })
            .await?;
        record.set_version(version);
        Ok(())
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let params = &WriteParams::of(record, &self.inner.options)?;
        let expected = params.version - 1;
        let id = record.id();
        let updated = self
            .retried("update", move || async move {
                let (mut connection, now) = self.connection().await?;
                sqlx::query(&self.inner.sql.update)
                    .bind(&params.data)
                    .bind(params.expires_at)
                    .bind(params.deadline)
                    .bind(params.created_at)
                    .bind(params.version)
                    .bind(params.owner)
                    .bind(params.format)
                    .bind(params.id)
                    .bind(expected)
                    .bind(now)
                    .execute(&mut *connection)
                    .await
                    .map(|done| done.rows_affected() == 1)
                    .map_err(|err| write(id, err))
            })
            .await?;
        if !updated {
            return Err(Error::Conflict {
                id: record.id().clone(),
            });
        }
        record.set_version(params.version as u64);
        Ok(())
    }

    async fn touch(&self, id: &SessionId, expires_at: time::OffsetDateTime) -> Result<bool> {
        let expires_at = unix_millis(to_millis(expires_at));
        self.retried("touch", move || async move {
            let (mut connection, now) = self.connection().await?;
            sqlx::query(&self.inner.sql.touch)
                .bind(expires_at)
                .bind(expires_at)
                .bind(id.expose())
                .bind(now)
                .execute(&mut *connection)
                .await
                .map(|done| done.rows_affected() == 1)
                .map_err(backend)
        })
        .await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.retried("destroy", move || async move {
            sqlx::query(&self.inner.sql.destroy)
                .bind(id.expose())
                .execute(&self.pool)
                .await
                .map(drop)
                .map_err(backend)
        })
        .await
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        if from == to {
            return rename_onto_itself(self, from).await;
        }
        self.retried("rename", move || async move {
            // One UPDATE of the key (see `Statements::rename_move`); a live row under `to`
            // makes it fail with a duplicate key, an expired one gives way first. All run
            // on the one connection, each with the clock read just before it.
            let (mut connection, mut at) = self.connection().await?;
            for _ in 0..TAKE_ATTEMPTS {
                let moved = sqlx::query(&self.inner.sql.rename_move)
                    .bind(to.expose())
                    .bind(from.expose())
                    .bind(at)
                    .execute(&mut *connection)
                    .await;
                match moved {
                    Ok(done) if done.rows_affected() == 1 => return Ok(Rename::Moved),
                    Ok(_) => return Ok(Rename::SourceMissing),
                    Err(err) if number(&err) == Some(DUPLICATE_KEY) => {}
                    Err(err) => return Err(backend(err)),
                }
                // As in `insert`: a DELETE that frees nothing finds a live target, or none
                // at all (a concurrent destroy took the expired one): then move again.
                if self.take_expired(&mut connection, to.expose()).await? == 0
                    && self.holds_live_row(&mut connection, to.expose()).await?
                {
                    return Ok(Rename::TargetTaken);
                }
                at = unix_millis(now());
            }
            Err(Error::transient(
                BACKEND,
                "rename lost every race for a target whose rows kept expiring and vanishing",
            ))
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.purge_expired().await.map(|stats| stats.removed)
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        let rows = self
            .retried("list_by_owner", move || async move {
                let (mut connection, now) = self.connection().await?;
                sqlx::query(&self.inner.sql.list_by_owner)
                    .bind(owner)
                    .bind(now)
                    .fetch_all(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        self.decode_many(rows)
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.retried("destroy_by_owner", move || async move {
            let (mut connection, now) = self.connection().await?;
            sqlx::query(&self.inner.sql.destroy_by_owner)
                .bind(owner)
                .bind(now)
                .execute(&mut *connection)
                .await
                .map(|done| done.rows_affected())
                .map_err(backend)
        })
        .await
    }

    async fn count(&self) -> Result<u64> {
        let count: i64 = self
            .retried("count", move || async move {
                let (mut connection, now) = self.connection().await?;
                sqlx::query_scalar(&self.inner.sql.count)
                    .bind(now)
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        Ok(count.max(0) as u64)
    }

    fn timeout(&self) -> Duration {
        self.inner.options.timeout
    }
}

/// Compile-time check: the inherent async methods can be spawned.
#[allow(dead_code)]
fn inherent_futures_are_send(store: &MysqlStore) {
    fn send<T: Send>(_: T) {}
    send(store.migrate());
    send(store.purge_expired());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn lazy(url: &str) -> Result<MysqlStore> {
        MysqlStore::builder().connect_lazy(url)
    }

    #[tokio::test]
    async fn debug_shows_no_password() {
        let store = lazy("mysql://app:hunter2@db.example:3306/app").unwrap();
        let debug = format!("{store:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("`sessions`"), "{debug}");
    }

    #[tokio::test]
    async fn bad_urls_and_names_are_config_errors() {
        for url in [
            "not a url",
            "postgres://x@y/z",
            "mysql://a:b@host:notaport/db",
        ] {
            assert!(matches!(lazy(url), Err(Error::Config(_))), "{url}");
        }
        for url in ["mysql://a:b@localhost/db", "mariadb://a@127.0.0.1:3306/db"] {
            assert!(lazy(url).is_ok(), "{url}");
        }
        let built = MysqlStore::builder()
            .table("Bad")
            .connect_lazy("mysql://a@localhost/db");
        assert!(matches!(built, Err(Error::Config(_))));
    }

    #[test]
    fn long_owners_are_refused_before_any_io() {
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.set_owner(Some("ö".repeat(MAX_OWNER_BYTES / 2)));
        assert!(WriteParams::of(&record, &StoreOptions::default()).is_ok());
        record.set_owner(Some(format!("{}x", "ö".repeat(MAX_OWNER_BYTES / 2))));
        let err = WriteParams::of(&record, &StoreOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, Error::Encode { .. }), "{err}");
    }

    #[test]
    fn write_params_are_unix_millis() {
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.set_deadline(Some(now() + time::Duration::hours(2)));
        let params = WriteParams::of(&record, &StoreOptions::default()).unwrap();
        assert_eq!(params.expires_at, unix_millis(record.expires_at()));
        assert_eq!(params.deadline, record.deadline().map(unix_millis));
        assert_eq!(params.version, 1);
        assert_eq!(params.format, 1);
        assert_eq!(params.data, "{}");
    }
}

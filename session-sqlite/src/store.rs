//! The store: configuration, migration, and the `SessionStore` implementation.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use session_core::codec::{CURRENT_FORMAT, StoredRecord, encode_data};
use session_core::{
    Data, Error, Pruner, Record, Rename, Result, SessionId, SessionStore, StoreOptions,
    async_trait, codec, now, rename_onto_itself, unix_millis,
};
use sqlx::error::ErrorKind as SqlErrorKind;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{BACKEND, backend, write};
use crate::schema::{DEFAULT_TABLE, Statements, TableName, migration_sql, migration_statements};

/// Rows `delete_expired` removes per statement unless configured otherwise.
pub const DEFAULT_PURGE_BATCH: u32 = 1_000;

/// Connections a pool built from a file URL holds at most unless configured otherwise.
/// SQLite runs one write at a time whatever the pool's size; more connections let reads
/// run beside a write (WAL mode) and while other calls wait for the write lock.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;

/// The statement that starts every write judging liveness: it takes the database's write
/// lock at once, so nothing can change between the clock read and the write.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// A session store over an SQLite table (see the crate docs).
///
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    inner: Arc<Inner>,
}

struct Inner {
    /// One write transaction of this store at a time. SQLite runs one writer per database
    /// anyway; without this, writers of this process would find the lock taken and wait in
    /// SQLite's busy handler, which sleeps (1, 2, 5 ... 100 ms) instead of waking when the
    /// lock frees: at 64 concurrent writers that halved throughput. Queued here they wake
    /// in order, and hold no pooled connection while they wait, so reads go on. Writers
    /// of other processes still meet the busy handler.
    writer: Semaphore,
    name: TableName,
    quoted: String,
    sql: Statements,
    options: StoreOptions,
    purge_batch: u32,
}

impl Inner {
    fn new(name: TableName, options: StoreOptions, purge_batch: u32) -> Self {
        Self {
            writer: Semaphore::new(1),
            quoted: name.quoted(),
            sql: Statements::new(&name),
            name,
            options,
            purge_batch,
        }
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.inner.quoted)
            .field("options", &self.inner.options)
            .field("purge_batch", &self.inner.purge_batch)
            .field("pool_size", &self.pool.size())
            .finish()
    }
}

/// What one [`SqliteStore::purge_expired`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Expired rows removed.
    pub removed: u64,
    /// `DELETE` statements run (each its own short write transaction).
    pub batches: u64,
}

/// Configures a [`SqliteStore`]: table, options, and the pool when built from a URL.
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    table: String,
    options: StoreOptions,
    purge_batch: u32,
    max_connections: u32,
    acquire_timeout: Option<Duration>,
    busy_timeout: Option<Duration>,
}

impl Default for SqliteStoreBuilder {
    fn default() -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            options: StoreOptions::default(),
            purge_batch: DEFAULT_PURGE_BATCH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: None,
            busy_timeout: None,
        }
    }
}

impl SqliteStoreBuilder {
    /// The table's name (default `sessions`). Checked when building: lowercase ASCII
    /// letters, digits and `_`, not starting with a digit or `sqlite_`, at most 63 bytes.
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
    /// 1,000; at least 1), so a large purge never holds the write lock for long.
    pub fn purge_batch(mut self, rows: u32) -> Self {
        self.purge_batch = rows.max(1);
        self
    }

    /// Most connections of a pool built by [`Self::connect`] from a file URL (default 4).
    /// An in-memory database always gets one connection (see the crate docs).
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

    /// How long a statement of a pool built by [`Self::connect`] waits for a lock another
    /// connection (or process) holds on the database (default: the options' timeout); then
    /// it fails with a retryable error (`SQLITE_BUSY`).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = Some(timeout);
        self
    }

    /// A store over the caller's pool. Fails with [`Error::Config`] on a bad table name;
    /// does no I/O. The pool's connections should have a busy timeout (sqlx's default is
    /// 5 s), or a call finding the database locked fails at once.
    pub fn build(self, pool: SqlitePool) -> Result<SqliteStore> {
        let name = TableName::new(&self.table)?;
        Ok(SqliteStore {
            pool,
            inner: Arc::new(Inner::new(name, self.options, self.purge_batch)),
        })
    }

    /// A store with a pool of its own that opens the database when first used: a file
    /// (`sqlite://path/to/sessions.db`, created if missing; `sqlite:///abs/path.db`) or
    /// an in-memory database (`sqlite::memory:`). Fails with [`Error::Config`] on a
    /// malformed URL or a bad name; does no I/O.
    ///
    /// An in-memory database lives as long as a connection to it is open, and each
    /// connection to `:memory:` would open a database of its own, so its pool has exactly
    /// one connection, opened at once and never closed for being idle or old: every call
    /// sees the same sessions, one call at a time, until the pool is closed or dropped.
    pub fn connect_lazy(self, url: &str) -> Result<SqliteStore> {
        // sqlx would take any other string for a file name.
        if !url.starts_with("sqlite:") {
            return Err(Error::Config(
                "invalid SQLite URL: it must start with `sqlite:`".into(),
            ));
        }
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|err| Error::Config(format!("invalid SQLite URL: {err}")))?
            .create_if_missing(true)
            .busy_timeout(self.busy_timeout.unwrap_or(self.options.timeout));
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(self.acquire_timeout.unwrap_or(self.options.timeout))
            // No network between the store and the database: a connection in the pool is
            // alive (sqlx pings it as it comes back), so checking it again costs for nothing.
            .test_before_acquire(false);
        let pool = if is_memory_url(url) {
            pool.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(self.max_connections)
        };
        self.build(pool.connect_lazy_with(connect))
    }

    /// Like [`Self::connect_lazy`], then opens one connection (within the timeout) to
    /// prove the database can be opened: a permanent error when it can't (a missing
    /// directory, no permission).
    pub async fn connect(self, url: &str) -> Result<SqliteStore> {
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

/// Whether `url` names an in-memory database (`sqlite::memory:`, `sqlite://:memory:`,
/// `...?mode=memory`), which sqlx opens per connection.
fn is_memory_url(url: &str) -> bool {
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path == ":memory:" || query.split('&').any(|param| param == "mode=memory")
}

impl SqliteStore {
    /// A store over `pool` using the table `sessions` and default options. Run
    /// [`Self::migrate`] (or apply [`Self::migration_sql`]) before using it.
    pub fn new(pool: SqlitePool) -> Self {
        let name = TableName::new(DEFAULT_TABLE)
            .unwrap_or_else(|_| unreachable!("the default name is valid"));
        Self {
            pool,
            inner: Arc::new(Inner::new(
                name,
                StoreOptions::default(),
                DEFAULT_PURGE_BATCH,
            )),
        }
    }

    /// Configures a store: table name, options, pool.
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The table, quoted (`"sessions"`), ready for SQL.
    pub fn table(&self) -> &str {
        &self.inner.quoted
    }

    /// The table's name, unquoted.
    pub fn table_name(&self) -> &str {
        self.inner.name.table()
    }

    /// The names of the table's indexes: primary key (SQLite's own
    /// `sqlite_autoindex_<table>_1`), `expires_at`, `owner`.
    pub fn index_names(&self) -> [String; 3] {
        let name = &self.inner.name;
        [name.primary_key(), name.expires_index(), name.owner_index()]
    }

    /// The store's options.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The idempotent migration [`Self::migrate`] runs, to apply with your own tool
    /// instead: `CREATE TABLE/INDEX IF NOT EXISTS` statements. (Run
    /// `PRAGMA journal_mode = WAL` once on the file too, outside a transaction.)
    pub fn migration_sql(&self) -> String {
        migration_sql(&self.inner.name)
    }

    /// Switches a file database to WAL mode (kept in the file: readers then never wait for
    /// a writer) and creates the table and indexes when missing, in one `BEGIN IMMEDIATE`
    /// transaction; safe to run at every start-up, also from several processes at once
    /// (they take turns on SQLite's write lock).
    pub async fn migrate(&self) -> Result<()> {
        let statements = migration_statements(&self.inner.name);
        self.timed("migrate", async {
            // Racing migrations of a new file can get SQLITE_BUSY at once, without the busy
            // handler (SQLite's answer to a lock upgrade that could deadlock). Every step is
            // idempotent, so the whole migration is tried again until the call's timeout.
            loop {
                match self.migrate_once(&statements).await {
                    Err(err) if err.is_retryable() => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    done => return done,
                }
            }
        })
        .await
    }

    async fn migrate_once(&self, statements: &[String]) -> Result<()> {
        self.use_wal().await?;
        let mut tx = self.begin_immediate().await?;
        for statement in statements {
            sqlx::query(statement)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// `PRAGMA journal_mode = WAL`: it waits for other connections' locks like any
    /// statement (the busy timeout). An in-memory database stays in its `memory` mode.
    async fn use_wal(&self) -> Result<()> {
        sqlx::query("PRAGMA journal_mode = WAL")
            .persistent(false)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(backend)
    }

    /// Runs [`SessionStore::delete_expired`] every `interval` in the background, with
    /// session-core's [`Pruner`]; stop it with [`Pruner::stop`] (or by dropping it). A zero
    /// interval is an [`Error::Config`].
    pub fn spawn_pruner(&self, interval: Duration) -> Result<Pruner> {
        Pruner::spawn(Arc::new(self.clone()), interval)
    }

    /// Deletes expired rows in batches of the configured size, oldest first, each its own
    /// statement (so other writers get the lock between batches), until a batch comes back
    /// short. The timeout applies to each batch.
    pub async fn purge_expired(&self) -> Result<PurgeStats> {
        let batch = self.inner.purge_batch;
        let mut stats = PurgeStats::default();
        loop {
            let removed = self
                .timed("delete_expired", async {
                    let (mut connection, now) = self.connection().await?;
                    sqlx::query(&self.inner.sql.purge_batch)
                        .bind(i64::from(batch))
                        .bind(now)
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
    /// once it is in hand: the `now` to bind into a read that judges liveness. Read before,
    /// it would go stale while the call waits for a connection. Call it inside
    /// [`Self::timed`], so the wait counts against the call's timeout.
    pub(crate) async fn connection(&self) -> Result<(PoolConnection<Sqlite>, i64)> {
        let connection = self.pool.acquire().await.map_err(backend)?;
        Ok((connection, unix_millis(now())))
    }

    /// A `BEGIN IMMEDIATE` transaction, holding the database's write lock, and the clock
    /// read once the lock is held: the `now` for a write that judges liveness.
    ///
    /// A statement waiting for the lock (another writer, up to the busy timeout) would
    /// otherwise judge a session by the time it started waiting: one that expired
    /// meanwhile, which readers already saw gone, would count as live, and `update` or
    /// `touch` would bring it back. Call it inside [`Self::timed`].
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<(Transaction<'static, Sqlite>, i64, SemaphorePermit<'_>)> {
        let writer = self.writer_turn().await?;
        let tx = self.begin_immediate().await?;
        Ok((tx, unix_millis(now()), writer))
    }

    /// `BEGIN IMMEDIATE` on a pooled connection, run to the end in a task of its own.
    ///
    /// sqlx builds the `Transaction` (which rolls back when dropped) only after it has
    /// checked, in a second step, that the custom `BEGIN` opened one: a call cancelled by
    /// its timeout between the two left the connection in an open transaction holding the
    /// write lock, back in the pool; every other connection's write then waited for the
    /// lock until it failed, and writes on that connection were never committed. In a task
    /// of its own the `BEGIN` is never cut off halfway: a cancelled caller drops the task's
    /// `JoinHandle`, and the `Transaction` the task returns is dropped, rolled back.
    async fn begin_immediate(&self) -> Result<Transaction<'static, Sqlite>> {
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.begin_with(BEGIN_WRITE).await })
            .await
            .map_err(|err| Error::transient(BACKEND, err))?
            .map_err(backend)
    }

    /// A connection for a write of one statement, its turn in this store's writer queue
    /// taken first. The statement reads the clock itself once it holds the lock
    /// ([`crate::schema::WRITE_NOW`]); autocommitted, it needs no `BEGIN`/`COMMIT`, two
    /// trips to sqlx's connection thread fewer. Call it inside [`Self::timed`].
    async fn single_write(&self) -> Result<(PoolConnection<Sqlite>, SemaphorePermit<'_>)> {
        let writer = self.writer_turn().await?;
        let connection = self.pool.acquire().await.map_err(backend)?;
        Ok((connection, writer))
    }

    async fn writer_turn(&self) -> Result<SemaphorePermit<'_>> {
        // The semaphore is never closed, so this can't fail.
        self.inner
            .writer
            .acquire()
            .await
            .map_err(|_| Error::Config("the store's writer queue was closed".into()))
    }

    /// Decodes rows, applying the corrupt-record policy to each.
    fn decode_many(&self, rows: Vec<SqliteRow>) -> Result<Vec<Record>> {
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id").map_err(backend)?;
            let decoded = match SessionId::parse(&id) {
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
}

/// One write's parameters: `?1` id .. `?8` format (see [`Statements`]).
struct WriteParams<'a> {
    id: &'a str,
    data: String,
    expires_at: i64,
    deadline: Option<i64>,
    created_at: i64,
    version: i64,
    owner: Option<&'a str>,
    format: i64,
}

impl<'a> WriteParams<'a> {
    /// Encodes (size-checked by core) before anything reaches the database.
    fn of(record: &'a Record, options: &StoreOptions) -> Result<Self> {
        let data = encode_data(record, options)?;
        // At most Record::MAX_VERSION (2^53 - 1), checked by the codec: fits an INTEGER.
        let version = codec::check_writable(record)? as i64;
        Ok(Self {
            id: record.id().expose(),
            data,
            expires_at: unix_millis(record.expires_at()),
            deadline: record.deadline().map(unix_millis),
            created_at: unix_millis(record.created_at()),
            version,
            owner: record.owner(),
            format: i64::from(CURRENT_FORMAT),
        })
    }

    fn bind<'q>(&'q self, sql: &'q str) -> Query<'q, Sqlite, SqliteArguments<'q>> {
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
pub(crate) fn decode_row(id: &SessionId, row: &SqliteRow) -> Result<Record> {
    let column = |err: sqlx::Error| Error::decode(id, err);
    // Bytes, not a `String`: text that is not UTF-8 (a hand edit) is the codec's decode
    // error like any other bad JSON.
    let data_bytes: &[u8] = row.try_get("data").map_err(column)?;
    let data: Data = codec::parse_json(id, data_bytes)?;
    let version: i64 = row.try_get("version").map_err(column)?;
    let format: i64 = row.try_get("format").map_err(column)?;
    let owner: Option<String> = row.try_get("owner").map_err(column)?;
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
impl SessionStore for SqliteStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        let row = self
            .timed("get", async {
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
        let params = WriteParams::of(record, &self.inner.options)?;
        let written = self
            .timed("insert", async {
                let (mut connection, _writer) = self.single_write().await?;
                let done = params
                    .bind(&self.inner.sql.insert)
                    .execute(&mut *connection)
                    .await
                    .map_err(|err| write(record.id(), err))?;
                Ok(done.rows_affected() == 1)
            })
            .await?;
        if written {
            record.set_version(params.version as u64);
        }
        Ok(written)
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        let params = WriteParams::of(record, &self.inner.options)?;
        let stored: Option<i64> = self
            .timed("set", async {
                let (mut connection, _writer) = self.single_write().await?;
                sqlx::query_scalar(&self.inner.sql.set)
                    .bind(params.id)
                    .bind(&params.data)
                    .bind(params.expires_at)
                    .bind(params.deadline)
                    .bind(params.created_at)
                    .bind(params.version)
                    .bind(params.owner)
                    .bind(params.format)
                    .fetch_optional(&mut *connection)
                    .await
                    .map_err(|err| write(record.id(), err))
            })
            .await?;
        match stored {
            Some(version) => {
                record.set_version(version as u64);
                Ok(())
            }
            // The stored version is at the maximum: nothing was written.
            None => Record::version_after(record.id(), Record::MAX_VERSION).map(drop),
        }
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let params = WriteParams::of(record, &self.inner.options)?;
        let expected = params.version - 1;
        let updated = self
            .timed("update", async {
                let (mut connection, _writer) = self.single_write().await?;
                let done = params
                    .bind(&self.inner.sql.update)
                    .bind(expected)
                    .execute(&mut *connection)
                    .await
                    .map_err(|err| write(record.id(), err))?;
                Ok(done.rows_affected() == 1)
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

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        let expires_at = unix_millis(expires_at);
        self.timed("touch", async {
            let (mut connection, _writer) = self.single_write().await?;
            let done = sqlx::query(&self.inner.sql.touch)
                .bind(id.expose())
                .bind(expires_at)
                .execute(&mut *connection)
                .await
                .map_err(backend)?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        // Judges no liveness: one statement, atomic by itself.
        self.timed("destroy", async {
            let (mut connection, _writer) = self.single_write().await?;
            sqlx::query(&self.inner.sql.destroy)
                .bind(id.expose())
                .execute(&mut *connection)
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
        self.timed("rename", async {
            // Under the write lock: an expired row under `to` gives way, then one UPDATE
            // changes the row's key in place; a live row under `to` makes it fail with a
            // unique violation, and the transaction commits nothing but that expired row's
            // removal.
            let (mut tx, now, _writer) = self.begin_write().await?;
            sqlx::query(&self.inner.sql.rename_take_expired)
                .bind(to.expose())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            let moved = sqlx::query(&self.inner.sql.rename_move)
                .bind(from.expose())
                .bind(to.expose())
                .bind(now)
                .execute(&mut *tx)
                .await;
            let outcome = match moved {
                Ok(done) if done.rows_affected() == 1 => Rename::Moved,
                Ok(_) => Rename::SourceMissing,
                Err(sqlx::Error::Database(db)) if db.kind() == SqlErrorKind::UniqueViolation => {
                    Rename::TargetTaken
                }
                Err(err) => return Err(backend(err)),
            };
            tx.commit().await.map_err(backend)?;
            Ok(outcome)
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.purge_expired().await.map(|stats| stats.removed)
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        let rows = self
            .timed("list_by_owner", async {
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
        self.timed("destroy_by_owner", async {
            let (mut tx, now, _writer) = self.begin_write().await?;
            let removed: Vec<i64> = sqlx::query_scalar(&self.inner.sql.destroy_by_owner)
                .bind(owner)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(removed.into_iter().filter(|&at| at > now).count() as u64)
        })
        .await
    }

    async fn count(&self) -> Result<u64> {
        let count: i64 = self
            .timed("count", async {
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
fn inherent_futures_are_send(store: &SqliteStore) {
    fn send<T: Send>(_: T) {}
    send(store.migrate());
    send(store.purge_expired());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn memory_urls_are_recognised() {
        for memory in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite://?cache=private&mode=memory",
        ] {
            assert!(is_memory_url(memory), "{memory}");
        }
        for file in [
            "sqlite://sessions.db",
            "sqlite:///tmp/memory.db",
            "sqlite://data/:memory:x.db",
            "sqlite://s.db?mode=rwc",
        ] {
            assert!(!is_memory_url(file), "{file}");
        }
    }

    #[tokio::test]
    async fn bad_urls_and_names_are_config_errors() {
        for url in [
            "postgres://x",
            "sqlite://s.db?mode=bogus",
            "sqlite://s.db?x=1",
        ] {
            let built = SqliteStore::builder().connect_lazy(url);
            assert!(matches!(built, Err(Error::Config(_))), "{url}: {built:?}");
        }
        let built = SqliteStore::builder()
            .table("sqlite_master")
            .connect_lazy("sqlite::memory:");
        assert!(matches!(built, Err(Error::Config(_))), "{built:?}");
    }

    #[tokio::test]
    async fn debug_shows_the_table_and_no_data() {
        let store = SqliteStore::builder()
            .table("app_sessions")
            .connect("sqlite::memory:")
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.insert("secret", "hunter2").unwrap();
        store.create(&mut record).await.unwrap();
        let debug = format!("{store:?}");
        assert!(debug.contains("app_sessions"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains(record.id().expose()), "{debug}");
    }

    #[tokio::test]
    async fn a_value_sqlite_refuses_is_an_encode_error() {
        let store = SqliteStore::builder()
            .connect("sqlite::memory:")
            .await
            .unwrap();
        // Longer than SQLite's maximum string length (10^9 bytes): SQLITE_TOOBIG.
        let err = sqlx::query("SELECT zeroblob(?1)")
            .bind(2_000_000_000_i64)
            .execute(store.pool())
            .await
            .unwrap_err();
        let id = SessionId::generate();
        let err = write(&id, err);
        assert!(
            matches!(&err, Error::Encode { id: named, .. } if *named == id),
            "{err}"
        );
    }

    /// The clock single-statement writes read in SQL is `session_core::now`'s.
    #[tokio::test]
    async fn the_sql_clock_is_the_applications() {
        let store = SqliteStore::builder()
            .connect("sqlite::memory:")
            .await
            .unwrap();
        for _ in 0..20 {
            let before = unix_millis(now());
            let sql: i64 = sqlx::query_scalar(&format!("SELECT {}", crate::schema::WRITE_NOW))
                .fetch_one(store.pool())
                .await
                .unwrap();
            let after = unix_millis(now());
            assert!(
                (before..=after).contains(&sql),
                "{before} <= {sql} <= {after}"
            );
        }
    }

    #[tokio::test]
    async fn one_in_memory_database_per_store() {
        let a = SqliteStore::builder()
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let b = SqliteStore::builder()
            .connect("sqlite::memory:")
            .await
            .unwrap();
        a.migrate().await.unwrap();
        b.migrate().await.unwrap();
        let mut record = Record::new(now() + time::Duration::hours(1));
        a.create(&mut record).await.unwrap();
        // Calls at once all see the one database of `a`'s single connection.
        let reads: Vec<_> = (0..8)
            .map(|_| {
                let (a, id) = (a.clone(), record.id().clone());
                tokio::spawn(async move { a.get(&id).await })
            })
            .collect();
        for read in reads {
            assert!(read.await.unwrap().unwrap().is_some());
        }
        assert_eq!(b.count().await.unwrap(), 0);
        assert_eq!(a.pool().size(), 1);
    }
}

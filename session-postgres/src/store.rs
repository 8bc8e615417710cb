//! The store: configuration, migration, and the `SessionStore` implementation.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use session_core::codec::{CURRENT_FORMAT, StoredRecord, encode_data};
use session_core::{
    Data, Error, Pruner, Record, Rename, Result, SessionId, SessionStore, StoreOptions,
    async_trait, codec, now, rename_onto_itself, to_millis,
};
use sqlx::error::ErrorKind as SqlErrorKind;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgPoolOptions, PgRow, PgValueFormat};
use sqlx::query::Query;
use sqlx::{Connection as _, PgPool, Postgres, Row, TypeInfo as _, ValueRef as _};
use time::OffsetDateTime;

use crate::error::{BACKEND, backend, write};
use crate::express::{Express, Format};
use crate::schema::{
    DEFAULT_SCHEMA, DEFAULT_TABLE, Statements, TableName, migration_sql, migration_statements,
};

/// Rows `delete_expired` removes per statement unless configured otherwise.
pub const DEFAULT_PURGE_BATCH: u32 = 1_000;

/// Connections a pool built from a URL holds at most unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long a connection of a pool built from a URL may sit idle before it is pinged when
/// taken: see [`PostgresStoreBuilder::connect_lazy`].
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The advisory lock key every migration of this crate holds while it runs, so app
/// instances starting together don't race on `CREATE ... IF NOT EXISTS`.
const MIGRATION_LOCK: i64 = 0x5e55_1075_0000_0001;

/// A session store over a PostgreSQL table (see the crate docs).
///
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    inner: Arc<Inner>,
}

struct Inner {
    name: TableName,
    qualified: String,
    sql: Statements,
    options: StoreOptions,
    purge_batch: u32,
    /// The express-session format's settings and statements; `None` in the native format.
    express: Option<Express>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.inner.qualified)
            .field("format", &self.format())
            .field("options", &self.inner.options)
            .field("purge_batch", &self.inner.purge_batch)
            .field("pool_size", &self.pool.size())
            .finish()
    }
}

/// What one [`PostgresStore::purge_expired`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Expired rows removed.
    pub removed: u64,
    /// `DELETE` statements run (each its own short transaction).
    pub batches: u64,
}

/// Configures a [`PostgresStore`]: table, options, and the pool when built from a URL.
#[derive(Debug, Clone)]
pub struct PostgresStoreBuilder {
    schema: String,
    /// `None`: the format's default ([`DEFAULT_TABLE`], or connect-pg-simple's `session`).
    table: Option<String>,
    options: StoreOptions,
    purge_batch: u32,
    max_connections: u32,
    acquire_timeout: Option<Duration>,
    format: Format,
    time_zone: String,
    owner_path: Option<String>,
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_owned(),
            table: None,
            options: StoreOptions::default(),
            purge_batch: DEFAULT_PURGE_BATCH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: None,
            format: Format::Native,
            time_zone: crate::express::DEFAULT_TIME_ZONE.to_owned(),
            owner_path: None,
        }
    }
}

impl PostgresStoreBuilder {
    /// The schema holding the table (default `public`). Checked when building: lowercase
    /// ASCII letters, digits and `_`, not starting with a digit or `pg_`, at most 63 bytes.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The table's name (default `sessions`; `session` in the express-session format, as
    /// connect-pg-simple's `tableName`), checked like [`Self::schema`].
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// What the table holds: this crate's own columns ([`Format::Native`], the default) or
    /// connect-pg-simple's `session` table ([`Format::ExpressSession`]), shared with an
    /// express-session app. See [`Format`].
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Shorthand for `.format(Format::ExpressSession)`.
    pub fn express_session(self) -> Self {
        self.format(Format::ExpressSession)
    }

    /// The express-session format only: the PostgreSQL time zone connect-pg-simple's
    /// connections use (`SHOW TimeZone` in the Node app's connection; the server's default
    /// unless the app sets one), which its `timestamp` column `expire` is written in.
    /// Default `UTC`. A name PostgreSQL knows (`Europe/Berlin`, `Asia/Kathmandu`, `UTC`);
    /// checked when building (characters) and by [`PostgresStore::migrate`] (known to the
    /// server). See [`Format::ExpressSession`].
    pub fn express_time_zone(mut self, zone: impl Into<String>) -> Self {
        self.time_zone = zone.into();
        self
    }

    /// The express-session format only: where in the session's data its owner is
    /// (`passport.user`, `user.id`; see [`session_core::OwnerPath`]), so `list_by_owner` and
    /// `destroy_by_owner` find the sessions Node created. Checked when building; an
    /// [`Error::Config`] with the native format, which stores the owner itself.
    pub fn owner_path(mut self, path: impl Into<String>) -> Self {
        self.owner_path = Some(path.into());
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

    /// A store over the caller's pool. Fails with [`Error::Config`] on a bad schema or
    /// table name; does no I/O.
    pub fn build(self, pool: PgPool) -> Result<PostgresStore> {
        let default_table = match self.format {
            Format::Native => DEFAULT_TABLE,
            Format::ExpressSession => crate::express::DEFAULT_EXPRESS_TABLE,
        };
        let table = self.table.as_deref().unwrap_or(default_table);
        let name = TableName::new(&self.schema, table)?;
        let express = Express::configure(
            self.format,
            &name,
            &self.time_zone,
            self.owner_path.as_deref(),
        )?;
        let sql = match &express {
            Some(express) => express.shared_statements(&name),
            None => Statements::new(&name),
        };
        Ok(PostgresStore {
            pool,
            inner: Arc::new(Inner {
                qualified: name.qualified(),
                sql,
                name,
                options: self.options,
                purge_batch: self.purge_batch,
                express,
            }),
        })
    }

    /// A store with a pool of its own that connects when first used. Fails with
    /// [`Error::Config`] on a malformed URL or a bad name; does no I/O.
    ///
    /// The pool pings a connection it hands out only when it sat idle for a second or more
    /// (sqlx's default pings every time, one extra round trip per statement; sqlx also pings
    /// each connection as it comes back, so an idle connection was alive when last used).
    /// Under load no call waits for a ping; after a quiet spell, connections the server
    /// dropped meanwhile are replaced before use, as with sqlx's default.
    pub fn connect_lazy(self, url: &str) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout.unwrap_or(self.options.timeout))
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy(url)
            .map_err(|err| Error::Config(format!("invalid PostgreSQL URL: {err}")))?;
        self.build(pool)
    }

    /// Like [`Self::connect_lazy`], then opens one connection (within the timeout) to
    /// prove the server is there: a retryable error when it is not.
    pub async fn connect(self, url: &str) -> Result<PostgresStore> {
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

impl PostgresStore {
    /// A store over `pool` using `public.sessions` and default options. Run
    /// [`Self::migrate`] (or apply [`Self::migration_sql`]) before using it.
    pub fn new(pool: PgPool) -> Self {
        let name = TableName::new(DEFAULT_SCHEMA, DEFAULT_TABLE)
            .unwrap_or_else(|_| unreachable!("the default names are valid"));
        Self {
            pool,
            inner: Arc::new(Inner {
                qualified: name.qualified(),
                sql: Statements::new(&name),
                name,
                options: StoreOptions::default(),
                purge_batch: DEFAULT_PURGE_BATCH,
                express: None,
            }),
        }
    }

    /// Configures a store: table name, options, pool.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table, quoted and schema-qualified (`"public"."sessions"`), ready for SQL.
    pub fn table(&self) -> &str {
        &self.inner.qualified
    }

    /// The schema's name, unquoted.
    pub fn schema_name(&self) -> &str {
        self.inner.name.schema()
    }

    /// The table's name, unquoted.
    pub fn table_name(&self) -> &str {
        self.inner.name.table()
    }

    /// The names of the table's indexes: primary key, `expires_at`, `owner` (in the
    /// express-session format: primary key, `expire`, and the `expire` index again, since
    /// connect-pg-simple's table has no owner column).
    pub fn index_names(&self) -> [String; 3] {
        let name = &self.inner.name;
        if self.inner.express.is_some() {
            let expire = crate::express::expire_index(name);
            return [name.primary_key(), expire.clone(), expire];
        }
        [name.primary_key(), name.expires_index(), name.owner_index()]
    }

    /// What the table holds: see [`Format`].
    pub fn format(&self) -> Format {
        match self.inner.express {
            Some(_) => Format::ExpressSession,
            None => Format::Native,
        }
    }

    /// The store's options.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The idempotent migration [`Self::migrate`] runs, to apply with your own tool
    /// instead: `CREATE SCHEMA/TABLE/INDEX IF NOT EXISTS` statements.
    pub fn migration_sql(&self) -> String {
        match &self.inner.express {
            Some(_) => crate::express::migration_statements(&self.inner.name)
                .iter()
                .map(|statement| format!("{statement};\n"))
                .collect(),
            None => migration_sql(&self.inner.name),
        }
    }

    /// Creates the schema (unless `public`), table and indexes when missing; safe to run
    /// at every start-up, also from several instances at once (they take turns on an
    /// advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        if let Some(express) = &self.inner.express {
            express.check_time_zone(self).await?;
        }
        let statements = match &self.inner.express {
            Some(_) => crate::express::migration_statements(&self.inner.name),
            None => migration_statements(&self.inner.name),
        };
        self.inner
            .options
            .within_timeout(BACKEND, "migrate", async {
                let mut tx = self.pool.begin().await.map_err(backend)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                for statement in &statements {
                    sqlx::query(statement)
                        .persistent(false)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                }
                tx.commit().await.map_err(backend)
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
    /// (`FOR UPDATE SKIP LOCKED`, so concurrent purges share the work instead of waiting),
    /// until a batch comes back short. The timeout applies to each batch.
    pub async fn purge_expired(&self) -> Result<PurgeStats> {
        let batch = self.inner.purge_batch;
        let mut stats = PurgeStats::default();
        let mut after: Option<String> = None;
        loop {
            let (removed, last): (i64, Option<String>) = self
                .timed("delete_expired", async {
                    let (mut connection, now) = self.connection().await?;
                    sqlx::query_as(&self.inner.sql.purge_batch)
                        .bind(i64::from(batch))
                        .bind(after.as_deref())
                        .bind(now)
                        .fetch_one(&mut *connection)
                        .await
                        .map_err(backend)
                })
                .await?;
            let removed = removed.max(0) as u64;
            stats.removed += removed;
            stats.batches += 1;
            if removed < u64::from(batch) {
                return Ok(stats);
            }
            after = last;
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

    /// The express-session format's settings, `None` in the native format.
    pub(crate) fn express(&self) -> Option<&Express> {
        self.inner.express.as_ref()
    }

    /// A row of the format's read columns (`id`, `data`, `expires_at`, ...) as a record, or
    /// [`Error::Decode`] naming `id`.
    pub(crate) fn decode_row(&self, id: &SessionId, row: &PgRow) -> Result<Record> {
        match &self.inner.express {
            Some(express) => express.decode_row(id, row),
            None => decode_row(id, row),
        }
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

    /// A connection from the pool, and the application's clock read once it is in hand: the
    /// `now` to bind into a statement that judges liveness.
    ///
    /// Read before the pool hands out a connection, `now` would go stale while the call
    /// waits for one (a busy pool): the statement would then count a session that expired
    /// meanwhile, which other callers already saw gone, as live, and `update` or `touch`
    /// would bring it back. Call it inside [`Self::timed`], so the wait counts against the
    /// call's timeout.
    pub(crate) async fn connection(&self) -> Result<(PoolConnection<Postgres>, OffsetDateTime)> {
        let connection = self.pool.acquire().await.map_err(backend)?;
        Ok((connection, now()))
    }

    /// Decodes rows, applying the corrupt-record policy to each.
    fn decode_many(&self, rows: Vec<PgRow>) -> Result<Vec<Record>> {
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id").map_err(backend)?;
            let decoded = match SessionId::parse(&id) {
                Ok(id) => self.inner.options.on_corrupt(self.decode_row(&id, &row)),
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

/// One write's parameters: `$1` id .. `$8` format (see [`Statements`]).
struct WriteParams<'a> {
    id: &'a str,
    data: String,
    expires_at: OffsetDateTime,
    deadline: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    version: i64,
    owner: Option<&'a str>,
    format: i32,
}

impl<'a> WriteParams<'a> {
    /// Encodes (size-checked by core) before anything reaches the server.
    fn of(record: &'a Record, options: &StoreOptions) -> Result<Self> {
        let data = encode_data(record, options)?;
        // At most Record::MAX_VERSION (2^53 - 1), checked by the codec: fits a bigint.
        let version = codec::check_writable(record)? as i64;
        Ok(Self {
            id: record.id().expose(),
            data,
            expires_at: record.expires_at(),
            deadline: record.deadline(),
            created_at: record.created_at(),
            version,
            owner: record.owner(),
            format: CURRENT_FORMAT as i32,
        })
    }

    fn bind<'q>(&'q self, sql: &'q str) -> Query<'q, Postgres, PgArguments> {
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

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` column (binary: microseconds since 2000-01-01) as Unix milliseconds,
/// rounded down; `None` for NULL. A non-finite value (`infinity`, only by a hand edit) reads
/// as `i64::MAX`, which decoding then reports as out of range for the session. Decoded here
/// rather than through sqlx's `time` support, which panics on values outside the `time`
/// crate's range (`infinity`, dates after year 9999).
pub(crate) fn millis_column(row: &PgRow, column: &str) -> std::result::Result<Option<i64>, String> {
    let value = row.try_get_raw(column).map_err(|err| err.to_string())?;
    if value.is_null() {
        return Ok(None);
    }
    let type_name = value.type_info().name().to_owned();
    if type_name != "TIMESTAMPTZ" || value.format() != PgValueFormat::Binary {
        return Err(format!(
            "column `{column}` is a {type_name}, expected a binary TIMESTAMPTZ"
        ));
    }
    let bytes: [u8; 8] = value
        .as_bytes()
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("column `{column}` does not hold 8 bytes"))?;
    Ok(Some(pg_micros_to_unix_millis(i64::from_be_bytes(bytes))))
}

/// PostgreSQL's binary timestamp (microseconds since 2000-01-01; `i64::MAX`/`MIN` for
/// `infinity`/`-infinity`) as Unix milliseconds rounded down, `i64::MAX` when not finite.
fn pg_micros_to_unix_millis(micros: i64) -> i64 {
    if micros == i64::MAX || micros == i64::MIN {
        return i64::MAX;
    }
    micros
        .checked_add(PG_EPOCH_UNIX_MICROS)
        .map_or(i64::MAX, |unix| unix.div_euclid(1_000))
}

/// A row of [`Statements::get`]'s columns as a record, or [`Error::Decode`] naming `id`.
fn decode_row(id: &SessionId, row: &PgRow) -> Result<Record> {
    let column = |err: sqlx::Error| Error::decode(id, err);
    let data_text: String = row.try_get("data").map_err(column)?;
    // As every backend reads JSON back: a lone UTF-16 surrogate (which PostgreSQL's `json`
    // accepts) reads as U+FFFD rather than failing the record.
    let data: Data = codec::parse_json(id, data_text.as_bytes())?;
    let version: i64 = row.try_get("version").map_err(column)?;
    let format: i32 = row.try_get("format").map_err(column)?;
    let owner: Option<String> = row.try_get("owner").map_err(column)?;
    let millis = |name: &str| millis_column(row, name).map_err(|err| Error::decode(id, err));
    let required = |name: &str| {
        millis(name)?.ok_or_else(|| Error::decode(id, format!("column `{name}` is NULL")))
    };
    let stored = StoredRecord {
        format: u32::try_from(format)
            .map_err(|_| Error::decode(id, format!("unknown stored format {format}")))?,
        version: u64::try_from(version)
            .map_err(|_| Error::decode(id, format!("negative version {version}")))?,
        created_at: required("created_at")?,
        expires_at: required("expires_at")?,
        deadline: millis("deadline")?,
        owner: owner.map(Cow::Owned),
        data: Cow::Owned(data),
    };
    stored.into_record(id)
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        if let Some(express) = self.express() {
            return express.get(self, id).await;
        }
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
        if let Some(express) = self.express() {
            return express.insert(self, record).await;
        }
        let params = WriteParams::of(record, &self.inner.options)?;
        let written = self
            .timed("insert", async {
                let (mut connection, now) = self.connection().await?;
                params
                    .bind(&self.inner.sql.insert)
                    .bind(now)
                    .execute(&mut *connection)
                    .await
                    .map(|done| done.rows_affected() == 1)
                    .map_err(|err| write(record.id(), err))
            })
            .await?;
        let version = params.version as u64;
        if written {
            record.set_version(version);
        }
        Ok(written)
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        if let Some(express) = self.express() {
            return express.set(self, record).await;
        }
        let params = WriteParams::of(record, &self.inner.options)?;
        let stored = self
            .timed("set", async {
                let (mut connection, now) = self.connection().await?;
                params
                    .bind(&self.inner.sql.set)
                    .bind(now)
                    .fetch_optional(&mut *connection)
                    .await
                    .map_err(|err| write(record.id(), err))
            })
            .await?;
        match stored {
            Some(row) => {
                let version: i64 = row.try_get(0).map_err(backend)?;
                record.set_version(version as u64);
                Ok(())
            }
            // The stored version is at the maximum: nothing was written.
            None => Record::version_after(record.id(), Record::MAX_VERSION).map(drop),
        }
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        if let Some(express) = self.express() {
            return express.update(self, record).await;
        }
        let params = WriteParams::of(record, &self.inner.options)?;
        let expected = params.version - 1;
        let updated = self
            .timed("update", async {
                let (mut connection, now) = self.connection().await?;
                params
                    .bind(&self.inner.sql.update)
                    .bind(expected)
                    .bind(now)
                    .execute(&mut *connection)
                    .await
                    .map(|done| done.rows_affected() == 1)
                    .map_err(|err| write(record.id(), err))
            })
            .await?;
        if !updated {
            return Err(Error::Conflict {
                id: record.id().clone(),
            });
        }
        let version = params.version as u64;
        record.set_version(version);
        Ok(())
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        if let Some(express) = self.express() {
            return express.touch(self, id, expires_at).await;
        }
        let expires_at = to_millis(expires_at);
        self.timed("touch", async {
            let (mut connection, now) = self.connection().await?;
            sqlx::query(&self.inner.sql.touch)
                .bind(id.expose())
                .bind(expires_at)
                .bind(now)
                .execute(&mut *connection)
                .await
                .map(|done| done.rows_affected() == 1)
                .map_err(backend)
        })
        .await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.timed("destroy", async {
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
        if let Some(express) = self.express() {
            return express.rename(self, from, to).await;
        }
        self.timed("rename", async {
            // One UPDATE of the key (see `Statements::rename_move`); a live row under `to`
            // makes it fail with a unique violation, an expired one gives way first. All run
            // on the one connection, each with the clock read just before it.
            let (mut connection, mut at) = self.connection().await?;
            for _ in 0..2 {
                let moved = sqlx::query(&self.inner.sql.rename_move)
                    .bind(from.expose())
                    .bind(to.expose())
                    .bind(at)
                    .execute(&mut *connection)
                    .await;
                match moved {
                    Ok(done) if done.rows_affected() == 1 => return Ok(Rename::Moved),
                    Ok(_) => return Ok(Rename::SourceMissing),
                    Err(sqlx::Error::Database(db))
                        if db.kind() == SqlErrorKind::UniqueViolation => {}
                    Err(err) => return Err(backend(err)),
                }
                let freed = sqlx::query(&self.inner.sql.rename_take_expired)
                    .bind(to.expose())
                    .bind(now())
                    .execute(&mut *connection)
                    .await
                    .map_err(backend)?
                    .rows_affected();
                if freed == 0 {
                    return Ok(Rename::TargetTaken);
                }
                at = now();
            }
            Ok(Rename::TargetTaken)
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.purge_expired().await.map(|stats| stats.removed)
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        if let Some(express) = self.express() {
            return express.list_by_owner(self, owner).await;
        }
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
        if let Some(express) = self.express() {
            return express.destroy_by_owner(self, owner).await;
        }
        let removed: i64 = self
            .timed("destroy_by_owner", async {
                let (mut connection, now) = self.connection().await?;
                sqlx::query_scalar(&self.inner.sql.destroy_by_owner)
                    .bind(owner)
                    .bind(now)
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        Ok(removed.max(0) as u64)
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
fn inherent_futures_are_send(store: &PostgresStore) {
    fn send<T: Send>(_: T) {}
    send(store.migrate());
    send(store.purge_expired());
}

#[cfg(test)]
mod tests {
    use super::pg_micros_to_unix_millis;

    #[test]
    fn binary_timestamps_become_unix_millis_rounded_down() {
        // 2000-01-01T00:00:00Z
        assert_eq!(pg_micros_to_unix_millis(0), 946_684_800_000);
        assert_eq!(pg_micros_to_unix_millis(1_999), 946_684_800_001);
        // Before 1970 and before 2000: floor, like `floor(extract(epoch ..) * 1000)`.
        assert_eq!(pg_micros_to_unix_millis(-946_684_800_000_001), -1);
        assert_eq!(pg_micros_to_unix_millis(-1), 946_684_799_999);
        assert_eq!(pg_micros_to_unix_millis(i64::MAX), i64::MAX);
        assert_eq!(pg_micros_to_unix_millis(i64::MIN), i64::MAX);
    }
}

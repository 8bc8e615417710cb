//! The express-session format: connect-pg-simple's `session` table, shared with a Node app.
//!
//! The table is connect-pg-simple's (`sid varchar` primary key, `sess json`, `expire
//! timestamp(6)`, an index on `expire`). The JSON in `sess` is express-session's session
//! object with this project's sealed metadata ([`object`]); every judgement about it (its
//! version, owner, deadline, whether it decodes) is made in Rust on the exact text read,
//! and every write is a compare-and-swap on that text (`WHERE sess::text = $old`: a `json`
//! column keeps its text verbatim). Nothing parses `sess` on the server: PostgreSQL's JSON
//! operators fail on a whole value holding a lone UTF-16 surrogate escape (`"\ud83d"`,
//! which `JSON.stringify` writes for half an emoji), so an index or a condition that
//! parsed it would fail Node's own writes, or a listing, on such a session.

use std::fmt;

use session_core::express::object;
use session_core::{
    Error, OwnerPath, Record, Rename, Result, SessionId, from_unix_millis, now, to_millis,
    unix_millis,
};
use sqlx::Row;
use sqlx::error::ErrorKind as SqlErrorKind;
use sqlx::postgres::PgRow;
use time::{Duration, OffsetDateTime};

use crate::error::{backend, write};
use crate::schema::{Statements, TableName};
use crate::store::{PostgresStore, millis_column};

/// connect-pg-simple's default `tableName`.
pub(crate) const DEFAULT_EXPRESS_TABLE: &str = "session";

/// The time zone assumed for the `expire` column unless configured otherwise.
pub(crate) const DEFAULT_TIME_ZONE: &str = "UTC";

/// What the store's table holds.
///
/// ```no_run
/// # async fn demo() -> session_core::Result<()> {
/// use session_postgres::{Format, PostgresStore};
///
/// // Read and write the sessions of an express-session + connect-pg-simple app.
/// let store = PostgresStore::builder()
///     .format(Format::ExpressSession) // or .express_session()
///     .express_time_zone("UTC") // the TimeZone of the Node app's connections
///     .owner_path("passport.user") // optional: owners Node writes
///     .connect("postgres://app:secret@localhost/app")
///     .await?;
/// store.migrate().await?; // connect-pg-simple's table.sql, if the table is missing
/// # Ok(()) }
/// ```
///
/// # The express-session format
///
/// The store reads and writes exactly the table [connect-pg-simple] 10 keeps, so an
/// [express-session] app with that store and a Rust service share logins. It pairs with
/// connect-pg-simple's options as follows:
///
/// - `schemaName` / `tableName` (default `public` / `session`):
///   [`PostgresStoreBuilder::schema`](crate::PostgresStoreBuilder::schema) /
///   [`table`](crate::PostgresStoreBuilder::table), the same names (lowercase ASCII here).
/// - `createTableIfMissing`: either side may create the table;
///   [`PostgresStore::migrate`] runs connect-pg-simple's `table.sql` (`IF NOT EXISTS`: a
///   table the Node app created stays as it is).
/// - `ttl` (only for a cookie without `expires`) and `disableTouch` change nothing here;
///   `pruneSessionInterval`: either side's purge removes expired rows (this one with
///   [`PostgresStore::spawn_pruner`]).
/// - express-session's `secret` and cookie name: use them with
///   [`session_core::SignedCookie`] (`connect.sid` by default).
///
/// **The row.** `sid` is the session id, `sess` express-session's session object as JSON
/// (its `cookie` object first, the record's data as the other top-level fields, this
/// store's metadata in `__session_stores`, which express-session writes back unchanged), and
/// `expire` when the session ends:
///
/// ```json
/// {"cookie":{"originalMaxAge":3600000,"expires":"2026-11-23T13:09:21.835Z","httpOnly":true,"path":"/","sameSite":"lax"},
///  "user":"alice",
///  "__session_stores":{"version":3,"created_at":1795435761835,"owner":"u1","digest":"5f1c…"}}
/// ```
///
/// The JSON is session-core's [`object`] format, the one session-redis' express-session
/// format stores too: the cookie object belongs to the store (hidden from
/// [`Record::data`], kept on writes with its `expires` moved; a data key `cookie` or
/// `__session_stores` is an [`Error::Encode`]); a session Node created gets its metadata
/// (`created_at` the time of the first read, the version its bytes had) appended in place
/// by the first read, so its creation time stays; every field the caller left alone goes
/// back as Node wrote it (half an emoji, `1e+21`); data nests up to 512 levels. A value that
/// is not an express-session object is an [`Error::Decode`] naming the id, for reads and
/// writes alike, and no write but `set` and `destroy` changes such a row.
///
/// **Expiry and time zones.** `expire` is the truth for both sides (connect-pg-simple's
/// `touch` moves only it, leaving `cookie.expires` in the JSON stale). It is a `timestamp`
/// **without** time zone: connect-pg-simple writes `to_timestamp(seconds)`, which PostgreSQL
/// turns into the local time of the Node connection's `TimeZone` setting (the server's
/// default unless the app sets one), and compares it in that zone too. This store's
/// connections run in UTC (sqlx sets it), so it converts explicitly, in SQL, with the zone
/// given to [`PostgresStoreBuilder::express_time_zone`](crate::PostgresStoreBuilder::express_time_zone)
/// (default `UTC`): set it to what `SHOW TimeZone` prints in the Node app's connection, or
/// every expiry is off by the zone's offset. In a zone with daylight saving time the hour
/// repeated each autumn is ambiguous in the column itself, for Node too; UTC avoids that.
/// connect-pg-simple writes whole seconds, rounded up from `cookie.expires`, and counts a
/// session live while `expire >= ceil(now)`; this store writes milliseconds and counts it
/// live while `now < expire`: the two agree to within a second.
///
/// **Concurrency.** Each call reads the row, judges it in Rust, then writes with a
/// compare-and-swap on the exact `sess` text it read (starting over when it changed):
/// - `update` succeeds only while the stored value is at the caller's version. The
///   metadata's `digest` seals the value as this store wrote it; a value Node wrote (or
///   changed, keeping our metadata) is at a version derived from its bytes (2^52 and above),
///   so a Rust write based on a read from before Node's save fails with a conflict and
///   [`session_core::modify`] applies its change on Node's. Node's own writes stay
///   last-writer-wins, as in express-session.
///   A version alone does not name a value: when Node saves a stale copy of a value this
///   store sealed, byte for byte (a request that read it before a Rust write saves it
///   unchanged: express-session's `resave: true` with a browser-session cookie, whose
///   `expires` stays null), that old version is stored again and two Rust writers can each
///   write the next one. So a record read as a sealed value also expects that value's seal
///   ([`object::read_seal`], advanced by each write through the record): an `update` never
///   succeeds over a value it did not read. A record the caller built checks the version
///   only. Node's stale save itself still overwrites the Rust write it did not read, as any
///   Node save does; `resave: false` (express-session's advice) avoids it.
/// - `set` never reuses a version (one more than the larger of the live stored one and
///   the caller's) and keeps the stored cookie object unless the caller changed it.
/// - `touch` moves `expire` only, capped at the metadata's deadline; Node's touches don't
///   know the deadline, but Rust reads such a session as ending at it.
/// - `destroy` is one `DELETE`; a destroyed session never comes back, since every write
///   but `insert` and `set` needs the row it read.
/// - `rename` (so `cycle_id`) changes `sid` in place, one `UPDATE`, as in the native format.
///
/// **Owners.** connect-pg-simple's table has no owner column. The owner is the metadata's
/// (what Rust stored), or with [`PostgresStoreBuilder::owner_path`](crate::PostgresStoreBuilder::owner_path)
/// the value Node keeps at that path (Passport: `passport.user`) when there is one, so
/// `list_by_owner` and `destroy_by_owner` reach sessions Node created. Both are a scan of
/// the table that keeps the rows whose text holds the owner as `JSON.stringify` and
/// serde_json write it (`"owner":"alice"`, `"user":"alice"`, `"user":42`), then judge each
/// in Rust: their cost grows with the table, not with the owner's sessions.
/// `list_by_owner` is one `SELECT` (one snapshot). `destroy_by_owner` first finds the rows
/// that spell the owner but are not the owner's (another session's data naming it, a
/// corrupt row), then removes every other row spelling the owner in one `DELETE`, whatever
/// its version (it follows a row a concurrent `rename` moves), so as one step, like the
/// native format's; a row that came to spell the owner between the two without being the
/// owner's is put back as it was. Every session of the owner that exists
/// throughout the call is removed. An owner written in a way neither writes it (an escape
/// such as `"\u0061lice"`, a number as `4.2e1`) is not found.
///
/// [connect-pg-simple]: https://www.npmjs.com/package/connect-pg-simple
/// [express-session]: https://www.npmjs.com/package/express-session
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// This crate's own table (see the crate docs, "Schema"): the default.
    #[default]
    Native,
    /// connect-pg-simple's `session` table, shared with an express-session app: see the
    /// [`Format`] docs.
    ExpressSession,
}

/// The express-session format's settings and SQL.
pub(crate) struct Express {
    sql: ExpressStatements,
    owner_path: Option<OwnerPath>,
    time_zone: String,
}

impl fmt::Debug for Express {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Express")
            .field("time_zone", &self.time_zone)
            .field("owner_path", &self.owner_path)
            .finish_non_exhaustive()
    }
}

/// The statements only this format runs (the others fill [`Statements`]).
struct ExpressStatements {
    /// $1 sid, $2 now: the row whatever its liveness, and whether it is live.
    read: String,
    /// $1 sid, $2 sess, $3 expire: a new row, unless the id is taken.
    create: String,
    /// $1 sid, $2 the stamped sess, $3 the sess read.
    stamp: String,
    /// $1 the owner's spellings: every row spelling the owner, live or not.
    owner_candidates: String,
    /// $1 sid, $2 sess, $3 expire (as text): a row `destroy_by_owner` took by mistake,
    /// back as it was.
    restore: String,
}

/// The condition that a row's text holds one of the owner's spellings (`$1`): a plain
/// substring search, which never parses the JSON.
const SPELLED: &str = "EXISTS (SELECT 1 FROM unnest($1::text[]) AS n(needle) \
                       WHERE strpos(sess::text, n.needle) > 0)";

/// The name of the index on `expire`: connect-pg-simple's `IDX_session_expire` for its
/// default table (`IDX_<table>_expire`), shortened like the native indexes' past 63 bytes.
pub(crate) fn expire_index(name: &TableName) -> String {
    let full = format!("IDX_{}_expire", name.table());
    if full.len() <= 63 {
        full
    } else {
        name.index("expire_idx")
    }
}

/// connect-pg-simple's `table.sql` for `name`, idempotent.
pub(crate) fn migration_statements(name: &TableName) -> Vec<String> {
    let table = name.qualified();
    let mut statements = Vec::new();
    if name.schema() != "public" {
        statements.push(format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", name.schema()));
    }
    statements.push(format!(
        "CREATE TABLE IF NOT EXISTS {table} (
  \"sid\" varchar NOT NULL COLLATE \"default\",
  \"sess\" json NOT NULL,
  \"expire\" timestamp(6) NOT NULL,
  CONSTRAINT \"{pkey}\" PRIMARY KEY (\"sid\") NOT DEFERRABLE INITIALLY IMMEDIATE
)",
        pkey = name.primary_key(),
    ));
    statements.push(format!(
        "CREATE INDEX IF NOT EXISTS \"{}\" ON {table} (\"expire\")",
        expire_index(name)
    ));
    statements
}

/// A time zone name as PostgreSQL takes it: letters, digits and `/_+-:.<>`, at most 64
/// bytes (it goes into the SQL as a literal, so nothing else is let through).
fn check_time_zone(zone: &str) -> Result<()> {
    let ok = !zone.is_empty()
        && zone.len() <= 64
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-:.<>".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid time zone {zone:?}: give a name PostgreSQL knows, such as `UTC` or \
             `Europe/Berlin`"
        )))
    }
}

/// A stored row as a write reads it.
struct Stored {
    /// `sess` exactly as stored.
    text: String,
    /// `expire` as Unix milliseconds (`i64::MAX` when not finite).
    expires_at: i64,
    live: bool,
}

impl Express {
    /// The format's settings, `None` for the native format (where an owner path is an
    /// [`Error::Config`]).
    pub(crate) fn configure(
        format: Format,
        name: &TableName,
        time_zone: &str,
        owner_path: Option<&str>,
    ) -> Result<Option<Self>> {
        if format == Format::Native {
            if owner_path.is_some() {
                return Err(Error::Config(
                    "owner_path reads the owner from data another program writes: use it \
                     with the express-session format (the native format stores the owner \
                     itself)"
                        .into(),
                ));
            }
            return Ok(None);
        }
        check_time_zone(time_zone)?;
        let owner_path = owner_path.map(OwnerPath::parse).transpose()?;
        let t = name.qualified();
        let zone = format!("'{time_zone}'");
        Ok(Some(Self {
            sql: ExpressStatements {
                read: format!(
                    "SELECT sess::text AS data, (expire AT TIME ZONE {zone}) AS expires_at, \
                     expire > ($2::timestamptz AT TIME ZONE {zone}) AS live \
                     FROM {t} WHERE sid = $1"
                ),
                create: format!(
                    "INSERT INTO {t} (sid, sess, expire) \
                     VALUES ($1, $2::json, $3::timestamptz AT TIME ZONE {zone}) \
                     ON CONFLICT (sid) DO NOTHING"
                ),
                stamp: format!("UPDATE {t} SET sess = $2::json WHERE sid = $1 AND sess::text = $3"),
                owner_candidates: format!(
                    "SELECT sid AS id, sess::text AS data, \
                     (expire AT TIME ZONE {zone}) AS expires_at FROM {t} WHERE {SPELLED}"
                ),
                restore: format!(
                    "INSERT INTO {t} (sid, sess, expire) VALUES ($1, $2::json, $3::timestamp) \
                     ON CONFLICT (sid) DO NOTHING"
                ),
            },
            owner_path,
            time_zone: time_zone.to_owned(),
        }))
    }

    /// The statements whose shape the native format shares (the store's generic code runs
    /// `get`, `destroy`, `purge_batch`, `claim_expired`, `count`, `scan` and
    /// `rename_take_expired` with the same parameters), and this format's own for the rest,
    /// so `statement_sql` shows each.
    pub(crate) fn shared_statements(&self, name: &TableName) -> Statements {
        let t = name.qualified();
        let zone = format!("'{}'", self.time_zone);
        let local = |param: &str| format!("({param}::timestamptz AT TIME ZONE {zone})");
        let cols =
            format!("sid AS id, sess::text AS data, (expire AT TIME ZONE {zone}) AS expires_at");
        let spelled = SPELLED;
        Statements {
            get: format!(
                "SELECT {cols} FROM {t} WHERE sid = $1 AND expire > {}",
                local("$2")
            ),
            // $1 sid, $2 sess, $3 expire, $4 now: an expired row under the id gives way.
            insert: format!(
                "INSERT INTO {t} AS s (sid, sess, expire) VALUES ($1, $2::json, {}) \
                 ON CONFLICT (sid) DO UPDATE SET sess = EXCLUDED.sess, expire = EXCLUDED.expire \
                 WHERE s.expire <= {}",
                local("$3"),
                local("$4")
            ),
            // $1 sid, $2 sess, $3 expire, $4 the sess read: `set` over the row it read.
            set: format!(
                "UPDATE {t} SET sess = $2::json, expire = {} WHERE sid = $1 AND sess::text = $4",
                local("$3")
            ),
            // $1 sid, $2 sess, $3 expire, $4 the sess read, $5 now.
            update: format!(
                "UPDATE {t} SET sess = $2::json, expire = {} \
                 WHERE sid = $1 AND sess::text = $4 AND expire > {}",
                local("$3"),
                local("$5")
            ),
            // $1 sid, $2 the new expiry, $3 the sess read, $4 now.
            touch: format!(
                "UPDATE {t} SET expire = {} WHERE sid = $1 AND sess::text = $3 AND expire > {}",
                local("$2"),
                local("$4")
            ),
            destroy: format!("DELETE FROM {t} WHERE sid = $1"),
            // $1 from, $2 to, $3 the sess read, $4 now: the key changes in place.
            rename_move: format!(
                "UPDATE {t} SET sid = $2 WHERE sid = $1 AND sess::text = $3 AND expire > {}",
                local("$4")
            ),
            rename_take_expired: format!(
                "DELETE FROM {t} WHERE sid = $1 AND expire <= {}",
                local("$2")
            ),
            // As the native purge (see there), along the `expire` index.
            purge_batch: format!(
                "WITH gone AS (\
                   DELETE FROM {t} WHERE sid = ANY(ARRAY(\
                     SELECT sid FROM {t} \
                     WHERE expire <= {now} \
                       AND expire >= COALESCE($2::timestamp, '-infinity'::timestamp) \
                     ORDER BY expire LIMIT $1 FOR UPDATE SKIP LOCKED\
                   )) RETURNING expire\
                 ) SELECT count(*), max(expire)::text FROM gone",
                now = local("$3")
            ),
            claim_expired: format!(
                "DELETE FROM {t} WHERE sid = ANY(ARRAY(\
                   SELECT sid FROM {t} WHERE expire <= {} \
                   ORDER BY expire LIMIT $1 FOR UPDATE SKIP LOCKED\
                 )) RETURNING {cols}",
                local("$2")
            ),
            // $1 the owner's spellings, $2 now.
            list_by_owner: format!(
                "SELECT {cols} FROM {t} WHERE {spelled} AND expire > {}",
                local("$2")
            ),
            // $1 the owner's spellings, $2 the texts of rows that spell the owner but are not
            // the owner's, $3 now. One statement, so as atomic as the native format's.
            destroy_by_owner: format!(
                "WITH gone AS (\
                   DELETE FROM {t} WHERE {spelled} AND sess::text <> ALL($2::text[]) \
                   RETURNING sid, sess, expire\
                 ) SELECT sid AS id, sess::text AS data, \
                   (expire AT TIME ZONE {zone}) AS expires_at, expire::text AS expire_text, \
                   expire > {} AS live FROM gone",
                local("$3")
            ),
            count: format!("SELECT count(*) FROM {t} WHERE expire > {}", local("$1")),
            scan: format!(
                "SELECT {cols} FROM {t} WHERE sid > $1 AND expire > {} ORDER BY sid LIMIT $3",
                local("$2")
            ),
        }
    }

    /// Fails with [`Error::Config`] when the server doesn't know the configured zone.
    pub(crate) async fn check_time_zone(&self, store: &PostgresStore) -> Result<()> {
        let sql = format!("SELECT now() AT TIME ZONE '{}'", self.time_zone);
        store
            .timed("migrate", async {
                match sqlx::query(&sql).execute(store.pool()).await {
                    Ok(_) => Ok(()),
                    Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("22023") => {
                        Err(Error::Config(format!(
                            "express_time_zone {:?}: {}",
                            self.time_zone,
                            db.message()
                        )))
                    }
                    Err(err) => Err(backend(err)),
                }
            })
            .await
    }

    /// A stored value as a record: `text` the `sess` JSON, `expires_at` the `expire` column
    /// (Unix ms), the owner from the owner path when it names one.
    fn decode(&self, id: &SessionId, text: &str, expires_at: i64) -> Result<Record> {
        let expires_at = from_unix_millis(expires_at).ok_or_else(|| {
            Error::decode(id, "not an express-session value: `expire` is out of range")
        })?;
        // `expire` is always known, so the default lifetime is never used.
        let mut record = object::decode(id, text.as_bytes(), Some(expires_at), Duration::DAY)?;
        if let Some(owner) = self
            .owner_path
            .as_ref()
            .and_then(|path| path.owner_in(record.data()))
        {
            record.set_owner(Some(owner));
        }
        Ok(record)
    }

    /// A row of the read columns (`id`, `data`, `expires_at`) as a record.
    pub(crate) fn decode_row(&self, id: &SessionId, row: &PgRow) -> Result<Record> {
        let text: String = row.try_get("data").map_err(|err| Error::decode(id, err))?;
        let expires_at = millis_column(row, "expires_at")
            .map_err(|err| Error::decode(id, err))?
            .ok_or_else(|| Error::decode(id, "column `expire` is NULL"))?;
        self.decode(id, &text, expires_at)
    }

    /// The row under `id`, live or not.
    async fn read(
        &self,
        store: &PostgresStore,
        operation: &'static str,
        id: &SessionId,
    ) -> Result<Option<Stored>> {
        let row = store
            .timed(operation, async {
                let (mut connection, now) = store.connection().await?;
                sqlx::query(&self.sql.read)
                    .bind(id.expose())
                    .bind(now)
                    .fetch_optional(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("data").map_err(backend)?;
        let live: bool = row.try_get("live").map_err(backend)?;
        let expires_at = millis_column(&row, "expires_at")
            .map_err(|err| Error::decode(id, err))?
            .unwrap_or(i64::MAX);
        Ok(Some(Stored {
            text,
            expires_at,
            live,
        }))
    }

    /// The live record under `id` as a write judges it: `None` when missing, expired, or
    /// corrupt under [`CorruptPolicy::TreatAsMissing`](session_core::CorruptPolicy), else
    /// the record and the text a compare-and-swap expects.
    async fn read_live(
        &self,
        store: &PostgresStore,
        operation: &'static str,
        id: &SessionId,
    ) -> Result<Option<(Record, String)>> {
        let Some(stored) = self.read(store, operation, id).await? else {
            return Ok(None);
        };
        if !stored.live {
            return Ok(None);
        }
        let decoded = self.decode(id, &stored.text, stored.expires_at);
        Ok(store
            .options()
            .on_corrupt(decoded)?
            .map(|record| (record, stored.text)))
    }

    /// Runs a conditional write (`sql` bound by `bind`), its rows affected.
    async fn execute<'q>(
        &self,
        store: &PostgresStore,
        operation: &'static str,
        id: &SessionId,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64> {
        store
            .timed(operation, async {
                let mut connection = store.pool().acquire().await.map_err(backend)?;
                query
                    .execute(&mut *connection)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err(|err| write(id, err))
            })
            .await
    }

    pub(crate) async fn get(
        &self,
        store: &PostgresStore,
        id: &SessionId,
    ) -> Result<Option<Record>> {
        let row = store
            .timed("get", async {
                let (mut connection, now) = store.connection().await?;
                sqlx::query(&store.statements().get)
                    .bind(id.expose())
                    .bind(now)
                    .fetch_optional(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(record) = store.options().on_corrupt(self.decode_row(id, &row))? else {
            return Ok(None);
        };
        let text: String = row.try_get("data").map_err(backend)?;
        // A session Node created and no Rust write touched: give it its metadata in place,
        // so its creation time stays what this read saw (Node writes the field back).
        if !text.contains(concat!("\"", "__session_stores", "\":"))
            && let Some(stamped) = object::stamp(id, text.as_bytes(), record.created_at())
            && let Ok(stamped) = String::from_utf8(stamped)
        {
            let query = sqlx::query(&self.sql.stamp)
                .bind(id.expose())
                .bind(stamped.as_str())
                .bind(text.as_str());
            if self.execute(store, "get", id, query).await? == 1 {
                let expires_at = unix_millis(record.expires_at());
                return self.decode(id, &stamped, expires_at).map(Some);
            }
        }
        Ok(Some(record))
    }

    pub(crate) async fn insert(&self, store: &PostgresStore, record: &mut Record) -> Result<bool> {
        let encoded = object::encode(record, store.options())?;
        let value = utf8(record, encoded.value)?;
        let written = store
            .timed("insert", async {
                let (mut connection, now) = store.connection().await?;
                sqlx::query(&store.statements().insert)
                    .bind(record.id().expose())
                    .bind(value.as_str())
                    .bind(record.expires_at())
                    .bind(now)
                    .execute(&mut *connection)
                    .await
                    .map(|done| done.rows_affected() == 1)
                    .map_err(|err| write(record.id(), err))
            })
            .await?;
        if written {
            record.set_version(encoded.version);
            object::set_written_seal(record, object::written_seal(value.as_bytes()));
        }
        Ok(written)
    }

    pub(crate) async fn set(&self, store: &PostgresStore, record: &mut Record) -> Result<()> {
        let id = record.id().clone();
        loop {
            let stored = self.read(store, "set", &id).await?;
            // The live stored session's version and cookie (a corrupt one counts for
            // nothing: `set` replaces it).
            let current = stored
                .as_ref()
                .filter(|stored| stored.live)
                .and_then(|stored| self.decode(&id, &stored.text, stored.expires_at).ok());
            let floor = current.as_ref().map_or(0, |current| current.version());
            let caller = record.version();
            let version = if floor > caller {
                Record::version_after(&id, floor)?
            } else {
                Record::version_after(&id, caller)?
            };
            let mut next = record.clone();
            next.set_version(version - 1);
            let mut encoded = object::encode(&next, store.options())?;
            // Keep the stored cookie object (Node's settings) unless the caller changed it.
            if encoded.cookie_end.is_some()
                && let Some(cookie) = current.as_ref().and_then(Record::cookie)
                && next.cookie() != Some(cookie)
            {
                next.set_cookie(Some(cookie.clone()));
                encoded = object::encode(&next, store.options())?;
            }
            let value = utf8(record, encoded.value)?;
            let query = match &stored {
                Some(stored) => sqlx::query(&store.statements().set)
                    .bind(id.expose())
                    .bind(value.as_str())
                    .bind(record.expires_at())
                    .bind(stored.text.as_str()),
                None => sqlx::query(&self.sql.create)
                    .bind(id.expose())
                    .bind(value.as_str())
                    .bind(record.expires_at()),
            };
            if self.execute(store, "set", &id, query).await? == 1 {
                record.set_version(encoded.version);
                object::set_written_seal(record, object::written_seal(value.as_bytes()));
                return Ok(());
            }
            // Written meanwhile: judge the new row.
        }
    }

    pub(crate) async fn update(&self, store: &PostgresStore, record: &mut Record) -> Result<()> {
        let id = record.id().clone();
        let encoded = object::encode(record, store.options())?;
        let version = encoded.version;
        let value = utf8(record, encoded.value)?;
        let conflict = || Error::Conflict { id: id.clone() };
        loop {
            let Some((current, text)) = self.read_live(store, "update", &id).await? else {
                return Err(conflict());
            };
            // The version and, for a record read as a sealed value, that very value: a
            // stale Node save brings an old version back with its seal, and a Rust write
            // of the next version then differs from ours in its seal.
            if !object::is_value_read(record, &current) {
                return Err(conflict());
            }
            let query = sqlx::query(&store.statements().update)
                .bind(id.expose())
                .bind(value.as_str())
                .bind(record.expires_at())
                .bind(text.as_str())
                .bind(now());
            if self.execute(store, "update", &id, query).await? == 1 {
                record.set_version(version);
                object::set_written_seal(record, object::written_seal(value.as_bytes()));
                return Ok(());
            }
            // Changed (or gone) since the read: judge it again.
        }
    }

    pub(crate) async fn touch(
        &self,
        store: &PostgresStore,
        id: &SessionId,
        expires_at: OffsetDateTime,
    ) -> Result<bool> {
        let wanted = to_millis(expires_at);
        loop {
            let Some((current, text)) = self.read_live(store, "touch", id).await? else {
                return Ok(false);
            };
            let target = current
                .deadline()
                .map_or(wanted, |deadline| deadline.min(wanted));
            let query = sqlx::query(&store.statements().touch)
                .bind(id.expose())
                .bind(target)
                .bind(text.as_str())
                .bind(now());
            if self.execute(store, "touch", id, query).await? == 1 {
                return Ok(true);
            }
        }
    }

    pub(crate) async fn rename(
        &self,
        store: &PostgresStore,
        from: &SessionId,
        to: &SessionId,
    ) -> Result<Rename> {
        loop {
            let Some((_, text)) = self.read_live(store, "rename", from).await? else {
                return Ok(Rename::SourceMissing);
            };
            let moved = store
                .timed("rename", async {
                    let mut connection = store.pool().acquire().await.map_err(backend)?;
                    match sqlx::query(&store.statements().rename_move)
                        .bind(from.expose())
                        .bind(to.expose())
                        .bind(text.as_str())
                        .bind(now())
                        .execute(&mut *connection)
                        .await
                    {
                        Ok(done) => Ok(Some(done.rows_affected() == 1)),
                        Err(sqlx::Error::Database(db))
                            if db.kind() == SqlErrorKind::UniqueViolation =>
                        {
                            // A row under `to`: an expired one gives way, a live one wins.
                            let freed = sqlx::query(&store.statements().rename_take_expired)
                                .bind(to.expose())
                                .bind(now())
                                .execute(&mut *connection)
                                .await
                                .map_err(backend)?
                                .rows_affected();
                            Ok((freed == 1).then_some(false))
                        }
                        Err(err) => Err(backend(err)),
                    }
                })
                .await?;
            match moved {
                Some(true) => return Ok(Rename::Moved),
                // Changed under the read, or the target freed: again.
                Some(false) => {}
                None => return Ok(Rename::TargetTaken),
            }
        }
    }

    /// The spellings of `owner` in a value's text: in the metadata, and at the owner path's
    /// last key as a string or (for an integer) a number.
    fn spellings(&self, owner: &str) -> Vec<String> {
        let json = |text: &str| serde_json::to_string(text).unwrap_or_default();
        let quoted = json(owner);
        let mut spellings = vec![format!("\"owner\":{quoted}")];
        if let Some(path) = &self.owner_path {
            let key = json(path.as_str().rsplit('.').next().unwrap_or_default());
            spellings.push(format!("{key}:{quoted}"));
            let integer = owner.strip_prefix('-').unwrap_or(owner);
            if !integer.is_empty() && integer.bytes().all(|b| b.is_ascii_digit()) {
                spellings.push(format!("{key}:{owner}"));
            }
        }
        spellings
    }

    /// Whether the row decodes to a session of `owner`.
    fn owned_by(&self, row: &PgRow, owner: &str) -> Option<Record> {
        let id: String = row.try_get("id").ok()?;
        let id = SessionId::parse(&id).ok()?;
        let record = self.decode_row(&id, row).ok()?;
        (record.owner() == Some(owner)).then_some(record)
    }

    pub(crate) async fn list_by_owner(
        &self,
        store: &PostgresStore,
        owner: &str,
    ) -> Result<Vec<Record>> {
        let spellings = self.spellings(owner);
        let rows = store
            .timed("list_by_owner", async {
                let (mut connection, now) = store.connection().await?;
                sqlx::query(&store.statements().list_by_owner)
                    .bind(&spellings)
                    .bind(now)
                    .fetch_all(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| self.owned_by(row, owner))
            .collect())
    }

    /// Two steps: a scan judges, in Rust, which rows spelling the owner are not the
    /// owner's (another session's data naming it, a corrupt row); then one `DELETE` removes
    /// every row spelling the owner but those (by their exact text), so every session of
    /// the owner goes in one statement, one a concurrent write changed or `rename` moved
    /// (which the `DELETE` follows) included. A row the `DELETE` took that turns out not to
    /// be the owner's (it came to spell the owner between the steps) is put back as it was.
    pub(crate) async fn destroy_by_owner(&self, store: &PostgresStore, owner: &str) -> Result<u64> {
        let spellings = self.spellings(owner);
        let candidates = store
            .timed("destroy_by_owner", async {
                let mut connection = store.pool().acquire().await.map_err(backend)?;
                sqlx::query(&self.sql.owner_candidates)
                    .bind(&spellings)
                    .fetch_all(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        let others: Vec<String> = candidates
            .iter()
            .filter(|row| self.owned_by(row, owner).is_none())
            .filter_map(|row| row.try_get("data").ok())
            .collect();
        let gone = store
            .timed("destroy_by_owner", async {
                let (mut connection, now) = store.connection().await?;
                sqlx::query(&store.statements().destroy_by_owner)
                    .bind(&spellings)
                    .bind(&others)
                    .bind(now)
                    .fetch_all(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        let mut removed = 0;
        for row in &gone {
            if self.owned_by(row, owner).is_some() {
                removed += u64::from(row.try_get::<bool, _>("live").map_err(backend)?);
                continue;
            }
            let id: String = row.try_get("id").map_err(backend)?;
            let text: String = row.try_get("data").map_err(backend)?;
            let expire: String = row.try_get("expire_text").map_err(backend)?;
            tracing::debug!("destroy_by_owner puts back a session it took by mistake");
            store
                .timed("destroy_by_owner", async {
                    sqlx::query(&self.sql.restore)
                        .bind(id.as_str())
                        .bind(text.as_str())
                        .bind(expire.as_str())
                        .execute(store.pool())
                        .await
                        .map_err(backend)
                })
                .await?;
        }
        Ok(removed)
    }
}

/// An encoded value as the text a `json` parameter takes (always UTF-8: it is JSON from
/// Rust strings and texts read from the database).
fn utf8(record: &Record, value: Vec<u8>) -> Result<String> {
    String::from_utf8(value).map_err(|err| Error::Encode {
        id: record.id().clone(),
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn express(path: Option<&str>) -> Express {
        let name = TableName::new("public", DEFAULT_EXPRESS_TABLE).unwrap();
        Express::configure(Format::ExpressSession, &name, "Asia/Kathmandu", path)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_table_is_connect_pg_simples() {
        let name = TableName::new("public", DEFAULT_EXPRESS_TABLE).unwrap();
        let sql = migration_statements(&name).join(";\n");
        for part in [
            "\"sid\" varchar NOT NULL COLLATE \"default\"",
            "\"sess\" json NOT NULL",
            "\"expire\" timestamp(6) NOT NULL",
            "CONSTRAINT \"session_pkey\" PRIMARY KEY (\"sid\")",
            "CREATE INDEX IF NOT EXISTS \"IDX_session_expire\" ON \"public\".\"session\" (\"expire\")",
        ] {
            assert!(sql.contains(part), "{part} missing from {sql}");
        }
        let long = TableName::new("public", &"t".repeat(63)).unwrap();
        assert!(expire_index(&long).len() <= 63);
    }

    #[test]
    fn every_time_goes_through_the_configured_zone() {
        let express = express(None);
        let name = TableName::new("public", DEFAULT_EXPRESS_TABLE).unwrap();
        let sql = express.shared_statements(&name);
        for statement in [&sql.get, &sql.insert, &sql.update, &sql.touch, &sql.count] {
            assert!(
                statement.contains("AT TIME ZONE 'Asia/Kathmandu'"),
                "{statement}"
            );
            assert!(!statement.contains("json_"), "parses sess: {statement}");
        }
    }

    #[test]
    fn time_zones_and_paths_are_checked() {
        let name = TableName::new("public", "session").unwrap();
        for bad in [
            "",
            "UTC'; DROP TABLE x; --",
            "Europe Berlin",
            &"A".repeat(65),
        ] {
            assert!(
                matches!(
                    Express::configure(Format::ExpressSession, &name, bad, None),
                    Err(Error::Config(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Express::configure(Format::ExpressSession, &name, "UTC", Some("a..b")),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Express::configure(Format::Native, &name, "UTC", Some("passport.user")),
            Err(Error::Config(_))
        ));
        assert!(
            Express::configure(Format::Native, &name, "UTC", None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_owner_is_spelled_as_json_writes_it() {
        assert_eq!(express(None).spellings("a\"b"), [r#""owner":"a\"b""#]);
        assert_eq!(
            express(Some("passport.user")).spellings("-42"),
            [r#""owner":"-42""#, r#""user":"-42""#, r#""user":-42"#]
        );
        assert_eq!(
            express(Some("user.id")).spellings("alice"),
            [r#""owner":"alice""#, r#""id":"alice""#]
        );
    }
}

//! Table names, the embedded migration and every SQL statement the store runs.

use session_core::{Error, Result};

/// The schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "public";

/// The table used when none is configured.
pub const DEFAULT_TABLE: &str = "sessions";

/// The longest identifier PostgreSQL keeps without truncating it (`NAMEDATALEN - 1`).
const MAX_IDENT_LEN: usize = 63;

/// A validated, quoted `"schema"."table"` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: String,
    table: String,
}

impl TableName {
    /// Checks both names: lowercase ASCII letters, digits and `_`, not starting with a
    /// digit, at most 63 bytes; the schema must not start with `pg_` (reserved).
    /// Anything else is [`Error::Config`]: names are quoted, but never taken unchecked.
    pub fn new(schema: &str, table: &str) -> Result<Self> {
        check_ident("schema", schema)?;
        check_ident("table", table)?;
        if schema.starts_with("pg_") {
            return Err(Error::Config(format!(
                "schema name {schema:?} starts with pg_, which PostgreSQL reserves"
            )));
        }
        Ok(Self {
            schema: schema.to_owned(),
            table: table.to_owned(),
        })
    }

    /// The schema's name, unquoted.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The table's name, unquoted.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `"schema"."table"`, ready to put in SQL.
    pub fn qualified(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.table)
    }

    /// The name of one of the table's indexes: `<table>_<suffix>`, shortened with a hash
    /// of the table name when that would pass PostgreSQL's 63-byte limit (which would
    /// otherwise truncate it silently and could make two tables' indexes collide).
    pub(crate) fn index(&self, suffix: &str) -> String {
        let full = format!("{}_{suffix}", self.table);
        if full.len() <= MAX_IDENT_LEN {
            return full;
        }
        let hash = format!("{:08x}", fnv1a(self.table.as_bytes()) as u32);
        let keep = MAX_IDENT_LEN - suffix.len() - hash.len() - 2;
        // Identifiers are ASCII (checked), so any byte index is a char boundary.
        format!("{}_{hash}_{suffix}", &self.table[..keep])
    }

    /// The index on `expires_at` (used by `delete_expired`).
    pub fn expires_index(&self) -> String {
        self.index("expires_idx")
    }

    /// The partial index on `owner` (used by the owner queries).
    pub fn owner_index(&self) -> String {
        self.index("owner_idx")
    }

    /// The primary key's index (used by every lookup by id).
    pub fn primary_key(&self) -> String {
        self.index("pkey")
    }
}

fn check_ident(what: &str, name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if first_ok && rest_ok && name.len() <= MAX_IDENT_LEN {
        return Ok(());
    }
    Err(Error::Config(format!(
        "invalid {what} name {name:?}: use 1 to {MAX_IDENT_LEN} lowercase ASCII letters, \
         digits and underscores, not starting with a digit"
    )))
}

/// FNV-1a: a stable hash (unlike std's, which may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The idempotent migration creating `name`'s schema (unless `public`), table and indexes.
pub fn migration_sql(name: &TableName) -> String {
    migration_statements(name)
        .iter()
        .map(|statement| format!("{statement};\n"))
        .collect()
}

/// [`migration_sql`]'s statements, one by one, without the closing `;`.
pub fn migration_statements(name: &TableName) -> Vec<String> {
    let table = name.qualified();
    let mut statements = Vec::new();
    if name.schema() != "public" {
        statements.push(format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", name.schema()));
    }
    statements.push(format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    id         text        NOT NULL,
    data       json        NOT NULL,
    expires_at timestamptz NOT NULL,
    deadline   timestamptz NULL,
    created_at timestamptz NOT NULL,
    version    bigint      NOT NULL,
    owner      text        NULL,
    format     integer     NOT NULL,
    CONSTRAINT \"{pkey}\" PRIMARY KEY (id)
)",
        pkey = name.primary_key(),
    ));
    // Tables of earlier versions kept `data` as jsonb, which normalises numbers (1e18 read
    // back as the integer 1000000000000000000): json keeps the text as written. Converting
    // rewrites the table once; what jsonb already normalised stays so.
    statements.push(format!(
        "DO $$ BEGIN
  IF (SELECT data_type FROM information_schema.columns
      WHERE table_schema = '{schema}' AND table_name = '{name}' AND column_name = 'data') = 'jsonb'
  THEN ALTER TABLE {table} ALTER COLUMN data TYPE json USING data::json;
  END IF;
END $$",
        schema = name.schema(),
        name = name.table(),
    ));
    statements.push(format!(
        "CREATE INDEX IF NOT EXISTS \"{}\" ON {table} (expires_at)",
        name.expires_index()
    ));
    statements.push(format!(
        "CREATE INDEX IF NOT EXISTS \"{}\" ON {table} (owner) WHERE owner IS NOT NULL",
        name.owner_index()
    ));
    statements
}

/// Every statement the store runs, built once per store from its validated table name.
///
/// Liveness is judged by the application's clock, passed as a parameter (`now`), like every
/// other backend: a record is live while `now < expires_at`.
#[derive(Debug)]
pub(crate) struct Statements {
    pub get: String,
    pub insert: String,
    pub set: String,
    pub update: String,
    pub touch: String,
    pub destroy: String,
    pub rename_move: String,
    pub rename_take_expired: String,
    pub purge_batch: String,
    pub claim_expired: String,
    pub list_by_owner: String,
    pub destroy_by_owner: String,
    pub count: String,
    pub scan: String,
}

/// The columns a read returns, by the names `decode_row` reads. The timestamps go out as
/// they are (binary microseconds) and become Unix milliseconds in the store: converting them
/// here (`floor(extract(epoch FROM ..) * 1000)`, numeric arithmetic) cost the server about a
/// third of a `get`.
fn read_columns() -> String {
    "id, data::text AS data, expires_at, deadline, created_at, version, owner, format".to_owned()
}

/// The latest year a `timestamptz` holds (PostgreSQL's documented upper limit).
const PG_MAX_YEAR: i32 = 294_276;

/// What a conditional write (`update`, `touch`, `rename`) requires of the row besides being
/// live, so it leaves a row the store can't decode as it is, as if it were missing: every
/// check of `decode_row` and `StoredRecord::into_record` that SQL makes cheaply. Those are
/// the stored format (1, the only one the decoder reads), a version from 0 to
/// `Record::MAX_VERSION`, data an object, and timestamps the `time` crate represents.
/// Data the JSON parser refuses although PostgreSQL's `json` holds it (nested too deeply,
/// a number out of `f64` range) still passes.
fn decodable() -> String {
    let max = session_core::Record::MAX_VERSION;
    format!(
        "format = 1 AND version BETWEEN 0 AND {max} AND json_typeof(data) = 'object' \
         AND {} AND {} AND (deadline IS NULL OR {})",
        readable_time("created_at"),
        readable_time("expires_at"),
        readable_time("deadline"),
    )
}

/// The condition that `column` holds a time the decoder reads: finite (`infinity` and
/// `-infinity` don't decode), and before the first instant the `time` crate can't hold.
/// That instant depends on time's `large-dates` feature, which any crate of the build may
/// turn on, so it is read from the crate as built; with the feature, every finite
/// `timestamptz` fits.
fn readable_time(column: &str) -> String {
    let after_last = time::Date::MAX.year() + 1;
    if after_last > PG_MAX_YEAR {
        format!("isfinite({column})")
    } else {
        format!("isfinite({column}) AND {column} < '{after_last}-01-01 00:00:00+00'")
    }
}

impl Statements {
    pub(crate) fn new(name: &TableName) -> Self {
        let t = name.qualified();
        let cols = read_columns();
        // Parameters of every write: $1 id, $2 data (JSON text), $3 expires_at, $4 deadline,
        // $5 created_at, $6 version (the new one), $7 owner, $8 format; then $9 now.
        let values = "($1, $2::json, $3, $4, $5, $6, $7, $8)";
        let all = "(id, data, expires_at, deadline, created_at, version, owner, format)";
        let replace = "data = EXCLUDED.data, expires_at = EXCLUDED.expires_at, \
                       deadline = EXCLUDED.deadline, created_at = EXCLUDED.created_at, \
                       owner = EXCLUDED.owner, format = EXCLUDED.format";
        let max = session_core::Record::MAX_VERSION;
        let decodable = decodable();
        Self {
            // $2 now.
            get: format!("SELECT {cols} FROM {t} WHERE id = $1 AND expires_at > $2"),
            insert: format!(
                "INSERT INTO {t} AS s {all} VALUES {values} \
                 ON CONFLICT (id) DO UPDATE SET {replace}, version = EXCLUDED.version \
                 WHERE s.expires_at <= $9"
            ),
            // One more than the larger of the live stored version and the caller's, never
            // past the maximum (then nothing is written and no row returns). A stored version
            // out of the decoder's range counts for nothing: the row is corrupt, and `set`
            // replaces a corrupt record like an expired one.
            set: format!(
                "INSERT INTO {t} AS s {all} VALUES {values} ON CONFLICT (id) DO UPDATE SET {replace}, \
                 version = CASE WHEN s.expires_at > $9 AND s.version BETWEEN 0 AND {max} \
                   THEN GREATEST(s.version + 1, EXCLUDED.version) ELSE EXCLUDED.version END \
                 WHERE s.expires_at <= $9 OR s.version <> {max} \
                 RETURNING version"
            ),
            // $9 the version the caller read, $10 now.
            update: format!(
                "UPDATE {t} SET data = $2::json, expires_at = $3, deadline = $4, \
                 created_at = $5, version = $6, owner = $7, format = $8 \
                 WHERE id = $1 AND version = $9 AND expires_at > $10 AND {decodable}"
            ),
            // $2 the wanted expiry, $3 now.
            touch: format!(
                "UPDATE {t} SET expires_at = LEAST($2::timestamptz, COALESCE(deadline, $2::timestamptz)) \
                 WHERE id = $1 AND expires_at > $3 AND {decodable}"
            ),
            destroy: format!("DELETE FROM {t} WHERE id = $1"),
            // $1 from, $2 to, $3 now. The row's key changes in place: one statement, atomic,
            // and a concurrent `DELETE ... WHERE owner = ..` that waited for the row's lock
            // re-checks its condition on the moved row and removes it (an insert of a copy
            // would be invisible to that DELETE's snapshot). A live row under `to` makes it
            // fail with a unique violation: the target is taken.
            rename_move: format!(
                "UPDATE {t} SET id = $2 WHERE id = $1 AND expires_at > $3 AND {decodable}"
            ),
            // $1 to, $2 now: an expired row under the target gives way.
            rename_take_expired: format!("DELETE FROM {t} WHERE id = $1 AND expires_at <= $2"),
            // $1 batch size, $2 where the previous batch ended (text, NULL at first), $3 now.
            // The inner SELECT walks the expires_at index from where the previous batch
            // ended, so it never re-reads the index entries of rows earlier batches deleted
            // (they stay until VACUUM); it skips rows another purge holds instead of waiting.
            // Locking re-checks `expires_at <= $3` on the row's newest version, so a row an
            // insert took over meanwhile is left alone; the locked rows can't change before
            // the DELETE, which finds them by primary key (`= ANY(ARRAY(..))` keeps the plan
            // to one index probe per row, however many rows have expired).
            purge_batch: format!(
                "WITH gone AS (\
                   DELETE FROM {t} WHERE id = ANY(ARRAY(\
                     SELECT id FROM {t} \
                     WHERE expires_at <= $3 \
                       AND expires_at >= COALESCE($2::timestamptz, '-infinity'::timestamptz) \
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED\
                   )) RETURNING expires_at\
                 ) SELECT count(*), max(expires_at)::text FROM gone"
            ),
            // $1 batch size, $2 now. The expiry feed's purge: like `purge_batch`, returning
            // the rows, run in a transaction that commits only once they were reported.
            claim_expired: format!(
                "DELETE FROM {t} WHERE id = ANY(ARRAY(\
                   SELECT id FROM {t} WHERE expires_at <= $2 \
                   ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED\
                 )) RETURNING {cols}"
            ),
            // $2 now.
            list_by_owner: format!("SELECT {cols} FROM {t} WHERE owner = $1 AND expires_at > $2"),
            // $2 now. Expired rows of the owner go too; only live ones are counted.
            destroy_by_owner: format!(
                "WITH gone AS (DELETE FROM {t} WHERE owner = $1 RETURNING expires_at) \
                 SELECT count(*) FILTER (WHERE expires_at > $2) FROM gone"
            ),
            // $1 now.
            count: format!("SELECT count(*) FROM {t} WHERE expires_at > $1"),
            // $1 the last id of the previous page ('' at the start), $2 now, $3 the page size:
            // a keyset page along the primary key.
            scan: format!(
                "SELECT {cols} FROM {t} WHERE id > $1 AND expires_at > $2 ORDER BY id LIMIT $3"
            ),
        }
    }

    /// A statement by name, for tests that `EXPLAIN` the store's own SQL.
    pub(crate) fn by_name(&self, name: &str) -> Option<&str> {
        Some(match name {
            "get" => &self.get,
            "insert" => &self.insert,
            "set" => &self.set,
            "update" => &self.update,
            "touch" => &self.touch,
            "destroy" => &self.destroy,
            "rename_move" => &self.rename_move,
            "rename_take_expired" => &self.rename_take_expired,
            "purge_batch" => &self.purge_batch,
            "claim_expired" => &self.claim_expired,
            "list_by_owner" => &self.list_by_owner,
            "destroy_by_owner" => &self.destroy_by_owner,
            "count" => &self.count,
            "scan" => &self.scan,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn identifiers_are_checked() {
        for good in ["sessions", "_s", "a1_b2", &"x".repeat(63)] {
            assert!(TableName::new("public", good).is_ok(), "{good}");
            assert!(TableName::new(good, "sessions").is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Sessions",
            "a-b",
            "a b",
            "a\"b",
            "s;drop table x",
            "é",
            &"x".repeat(64),
            "a.b",
        ] {
            assert!(
                matches!(TableName::new("public", bad), Err(Error::Config(_))),
                "{bad:?}"
            );
            assert!(
                matches!(TableName::new(bad, "sessions"), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            TableName::new("pg_temp", "sessions"),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn names_are_quoted_and_index_names_fit() {
        let name = TableName::new("app", "sessions").unwrap();
        assert_eq!(name.qualified(), "\"app\".\"sessions\"");
        assert_eq!(name.expires_index(), "sessions_expires_idx");
        let long = TableName::new("app", &"t".repeat(63)).unwrap();
        let other = TableName::new("app", &format!("{}u", "t".repeat(62))).unwrap();
        for index in [long.expires_index(), long.owner_index(), long.primary_key()] {
            assert!(index.len() <= MAX_IDENT_LEN, "{index}");
        }
        assert_ne!(long.expires_index(), other.expires_index());
    }

    #[test]
    fn the_write_guard_refuses_what_the_decoder_refuses() {
        let guard = decodable();
        let max = session_core::Record::MAX_VERSION;
        assert!(
            guard.contains(&format!("version BETWEEN 0 AND {max}")),
            "{guard}"
        );
        for column in ["created_at", "expires_at", "deadline"] {
            assert!(guard.contains(&format!("isfinite({column})")), "{guard}");
        }
        // Without time's `large-dates` the decoder stops at the end of year 9999.
        let bounded = guard.contains("created_at < '10000-01-01 00:00:00+00'");
        assert_eq!(bounded, time::Date::MAX.year() == 9999, "{guard}");
    }

    #[test]
    fn migration_is_idempotent_sql() {
        let public = migration_sql(&TableName::new(DEFAULT_SCHEMA, DEFAULT_TABLE).unwrap());
        assert!(!public.contains("CREATE SCHEMA"));
        assert!(public.contains("CREATE TABLE IF NOT EXISTS \"public\".\"sessions\""));
        let other = migration_sql(&TableName::new("app", "s").unwrap());
        assert!(other.starts_with("CREATE SCHEMA IF NOT EXISTS \"app\";"));
        for line in other.lines().filter(|l| l.starts_with("CREATE")) {
            assert!(line.contains("IF NOT EXISTS"), "{line}");
        }
    }
}

//! Table names, the embedded migration and every SQL statement the store runs.

use session_core::{Error, Record, Result};
use time::{Date, OffsetDateTime, Time};

/// The table used when none is configured.
pub const DEFAULT_TABLE: &str = "sessions";

/// The longest table name accepted. SQLite has no limit of its own; this is PostgreSQL's,
/// so a name works on either backend.
const MAX_IDENT_LEN: usize = 63;

/// A validated table name, quoted when put in SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    table: String,
}

impl TableName {
    /// Checks the name: lowercase ASCII letters, digits and `_`, not starting with a digit
    /// or with `sqlite_` (SQLite reserves those), at most 63 bytes. Anything else is
    /// [`Error::Config`]: names are quoted, but never taken unchecked.
    pub fn new(table: &str) -> Result<Self> {
        let mut bytes = table.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !(first_ok && rest_ok && table.len() <= MAX_IDENT_LEN) {
            return Err(Error::Config(format!(
                "invalid table name {table:?}: use 1 to {MAX_IDENT_LEN} lowercase ASCII \
                 letters, digits and underscores, not starting with a digit"
            )));
        }
        if table.starts_with("sqlite_") {
            return Err(Error::Config(format!(
                "table name {table:?} starts with sqlite_, which SQLite reserves"
            )));
        }
        Ok(Self {
            table: table.to_owned(),
        })
    }

    /// The table's name, unquoted.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `"table"`, ready to put in SQL.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.table)
    }

    /// The index on `expires_at` (used by `delete_expired` and `count`).
    pub fn expires_index(&self) -> String {
        format!("{}_expires_idx", self.table)
    }

    /// The partial index on `owner` (used by the owner queries).
    pub fn owner_index(&self) -> String {
        format!("{}_owner_idx", self.table)
    }

    /// The index SQLite builds for the primary key of a rowid table (used by every lookup
    /// by id): it names it itself, `sqlite_autoindex_<table>_1`.
    pub fn primary_key(&self) -> String {
        format!("sqlite_autoindex_{}_1", self.table)
    }
}

/// The idempotent migration creating `name`'s table and indexes.
pub fn migration_sql(name: &TableName) -> String {
    migration_statements(name)
        .iter()
        .map(|statement| format!("{statement};\n"))
        .collect()
}

/// [`migration_sql`]'s statements, one by one, without the closing `;`.
///
/// Times are Unix milliseconds (`INTEGER`), the precision every backend stores, compared as
/// integers; `data` is the JSON text as written, so numbers read back exactly. `STRICT`
/// makes SQLite refuse a value of another type instead of converting it, so a hand edit
/// can't store a time as text.
pub fn migration_statements(name: &TableName) -> Vec<String> {
    let table = name.quoted();
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (
    id         TEXT    NOT NULL PRIMARY KEY,
    data       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    deadline   INTEGER,
    created_at INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    owner      TEXT,
    format     INTEGER NOT NULL
) STRICT"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{}\" ON {table} (expires_at)",
            name.expires_index()
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{}\" ON {table} (owner) WHERE owner IS NOT NULL",
            name.owner_index()
        ),
    ]
}

/// Every statement the store runs, built once per store from its validated table name.
///
/// Liveness is judged by the application's clock, passed as a parameter (`now`, Unix
/// milliseconds), like every other backend: a record is live while `now < expires_at`.
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

/// The columns a read returns, by the names `decode_row` reads.
const READ_COLUMNS: &str = "id, data, expires_at, deadline, created_at, version, owner, format";

/// The Unix milliseconds the decoder turns into times: the `time` crate's range as built
/// (its `large-dates` feature, which any crate of the build may turn on, widens it).
pub(crate) fn readable_millis() -> (i64, i64) {
    let first = OffsetDateTime::new_utc(Date::MIN, Time::MIDNIGHT);
    let last = OffsetDateTime::new_utc(Date::MAX, Time::MAX);
    let millis = |at: OffsetDateTime| at.unix_timestamp_nanos().div_euclid(1_000_000) as i64;
    // The first instant is a whole millisecond; the last is rounded down to one.
    (millis(first), millis(last))
}

/// What a conditional write (`update`, `touch`, `rename`) requires of the row besides being
/// live, so it leaves a row the store can't decode as it is, as if it were missing: every
/// check of `decode_row` and `StoredRecord::into_record` that SQL makes. Those are the
/// stored format (1, the only one the decoder reads), a version from 0 to
/// `Record::MAX_VERSION`, data a valid JSON object, and times the `time` crate represents.
/// `json_type` fails on malformed JSON rather than answering, hence the `CASE` (SQLite
/// does not promise to stop at a false `AND`). Data the JSON parser refuses although it is
/// valid JSON (nested too deeply, a number out of `f64` range) still passes.
fn decodable() -> String {
    let max = Record::MAX_VERSION;
    let (first, last) = readable_millis();
    format!(
        "format = 1 AND version BETWEEN 0 AND {max} \
         AND CASE WHEN json_valid(data) THEN json_type(data) = 'object' ELSE 0 END \
         AND created_at BETWEEN {first} AND {last} AND expires_at BETWEEN {first} AND {last} \
         AND (deadline IS NULL OR deadline BETWEEN {first} AND {last})"
    )
}

/// The clock of a single-statement write: the Unix time in milliseconds, read by SQLite
/// when the statement runs, which is once it holds the write lock (a write waiting for the
/// lock would otherwise judge sessions by the time it started waiting, and bring back one
/// that expired meanwhile). SQLite runs in this process, so this is the clock
/// `session_core::now` reads, at the same millisecond precision; reads and multi-statement
/// writes bind `session_core::now` instead.
pub(crate) const WRITE_NOW: &str = "CAST(round(unixepoch('subsec') * 1000) AS INTEGER)";

impl Statements {
    pub(crate) fn new(name: &TableName) -> Self {
        let t = name.quoted();
        let cols = READ_COLUMNS;
        // Parameters of every write: ?1 id, ?2 data (JSON text), ?3 expires_at, ?4 deadline,
        // ?5 created_at, ?6 version (the new one), ?7 owner, ?8 format.
        let now = WRITE_NOW;
        let values = "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
        let all = "(id, data, expires_at, deadline, created_at, version, owner, format)";
        let replace = "data = excluded.data, expires_at = excluded.expires_at, \
                       deadline = excluded.deadline, created_at = excluded.created_at, \
                       owner = excluded.owner, format = excluded.format";
        let max = Record::MAX_VERSION;
        let decodable = decodable();
        Self {
            // ?2 now.
            get: format!("SELECT {cols} FROM {t} WHERE id = ?1 AND expires_at > ?2"),
            // An expired row under the id gives way; a live one (corrupt or not) stays.
            insert: format!(
                "INSERT INTO {t} AS s {all} VALUES {values} \
                 ON CONFLICT (id) DO UPDATE SET {replace}, version = excluded.version \
                 WHERE s.expires_at <= {now}"
            ),
            // One more than the larger of the live stored version and the caller's, never
            // past the maximum (then nothing is written and no row returns). A stored version
            // out of the decoder's range counts for nothing: the row is corrupt, and `set`
            // replaces a corrupt record like an expired one.
            set: format!(
                "INSERT INTO {t} AS s {all} VALUES {values} ON CONFLICT (id) DO UPDATE SET {replace}, \
                 version = CASE WHEN s.expires_at > {now} AND s.version BETWEEN 0 AND {max} \
                   THEN max(s.version + 1, excluded.version) ELSE excluded.version END \
                 WHERE s.expires_at <= {now} OR s.version <> {max} \
                 RETURNING version"
            ),
            // ?9 the version the caller read.
            update: format!(
                "UPDATE {t} SET data = ?2, expires_at = ?3, deadline = ?4, created_at = ?5, \
                 version = ?6, owner = ?7, format = ?8 \
                 WHERE id = ?1 AND version = ?9 AND expires_at > {now} AND {decodable}"
            ),
            // ?2 the wanted expiry.
            touch: format!(
                "UPDATE {t} SET expires_at = min(?2, coalesce(deadline, ?2)) \
                 WHERE id = ?1 AND expires_at > {now} AND {decodable}"
            ),
            destroy: format!("DELETE FROM {t} WHERE id = ?1"),
            // ?1 from, ?2 to, ?3 now. The row's key changes in place; a live row under `to`
            // makes it fail with a unique violation: the target is taken.
            rename_move: format!(
                "UPDATE {t} SET id = ?2 WHERE id = ?1 AND expires_at > ?3 AND {decodable}"
            ),
            // ?1 to, ?2 now: an expired row under the target gives way.
            rename_take_expired: format!("DELETE FROM {t} WHERE id = ?1 AND expires_at <= ?2"),
            // ?1 batch size, ?2 now. The oldest expired rows, found on the expires_at index
            // and deleted by rowid: one short write transaction per batch.
            purge_batch: format!(
                "DELETE FROM {t} WHERE rowid IN (\
                   SELECT rowid FROM {t} WHERE expires_at <= ?2 ORDER BY expires_at LIMIT ?1\
                 )"
            ),
            // ?1 batch size, ?2 now. The expiry feed's purge: `purge_batch` returning the
            // rows, in a write transaction that commits once they were reported.
            claim_expired: format!(
                "DELETE FROM {t} WHERE rowid IN (\
                   SELECT rowid FROM {t} WHERE expires_at <= ?2 ORDER BY expires_at LIMIT ?1\
                 ) RETURNING {cols}"
            ),
            // ?2 now.
            list_by_owner: format!("SELECT {cols} FROM {t} WHERE owner = ?1 AND expires_at > ?2"),
            // Expired rows of the owner go too; the store counts the live ones it returns.
            destroy_by_owner: format!("DELETE FROM {t} WHERE owner = ?1 RETURNING expires_at"),
            // ?1 now.
            count: format!("SELECT count(*) FROM {t} WHERE expires_at > ?1"),
            // ?1 the last id of the previous page (bytes, empty at the start; cast so it
            // compares as text, which sorts before every blob), ?2 now, ?3 the page size: a
            // keyset page along the primary key.
            scan: format!(
                "SELECT {cols} FROM {t} WHERE id > CAST(?1 AS TEXT) AND expires_at > ?2 \
                 ORDER BY id LIMIT ?3"
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
    fn table_names_are_checked() {
        for good in [
            "sessions",
            "_s",
            "a1_b2",
            "sqlite",
            "my_sqlite_x",
            &"x".repeat(63),
        ] {
            assert!(TableName::new(good).is_ok(), "{good}");
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
            "main.sessions",
            "sqlite_master",
            "sqlite_sessions",
        ] {
            assert!(
                matches!(TableName::new(bad), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_are_quoted_and_indexes_named_after_the_table() {
        let name = TableName::new("app_sessions").unwrap();
        assert_eq!(name.quoted(), "\"app_sessions\"");
        assert_eq!(name.expires_index(), "app_sessions_expires_idx");
        assert_eq!(name.owner_index(), "app_sessions_owner_idx");
        assert_eq!(name.primary_key(), "sqlite_autoindex_app_sessions_1");
    }

    #[test]
    fn readable_millis_are_the_decoders_bounds() {
        let (first, last) = readable_millis();
        assert!(session_core::from_unix_millis(first).is_some());
        assert!(session_core::from_unix_millis(last).is_some());
        assert!(session_core::from_unix_millis(first - 1).is_none());
        assert!(session_core::from_unix_millis(last + 1).is_none());
    }

    #[test]
    fn the_write_guard_refuses_what_the_decoder_refuses() {
        let guard = decodable();
        let max = Record::MAX_VERSION;
        assert!(guard.starts_with("format = 1 "), "{guard}");
        assert!(
            guard.contains(&format!("version BETWEEN 0 AND {max}")),
            "{guard}"
        );
        assert!(guard.contains("json_type(data) = 'object'"), "{guard}");
        let (first, last) = readable_millis();
        for column in ["created_at", "expires_at", "deadline"] {
            assert!(
                guard.contains(&format!("{column} BETWEEN {first} AND {last}")),
                "{guard}"
            );
        }
        let sql = Statements::new(&TableName::new(DEFAULT_TABLE).unwrap());
        for statement in [&sql.update, &sql.touch, &sql.rename_move] {
            assert!(statement.ends_with(&guard), "{statement}");
        }
    }

    #[test]
    fn every_statement_is_parameterised() {
        let sql = Statements::new(&TableName::new(DEFAULT_TABLE).unwrap());
        for name in [
            "get",
            "insert",
            "set",
            "update",
            "touch",
            "destroy",
            "rename_move",
            "rename_take_expired",
            "purge_batch",
            "list_by_owner",
            "destroy_by_owner",
            "count",
        ] {
            let statement = sql.by_name(name).unwrap();
            assert!(statement.contains("?1"), "{name}: {statement}");
            // The only quoted strings are the guard's JSON type name and the clock's
            // modifier: no value is inlined.
            assert!(
                statement
                    .replace("'object'", "")
                    .replace("'subsec'", "")
                    .find('\'')
                    .is_none(),
                "{name}: {statement}"
            );
        }
        assert!(sql.by_name("drop").is_none());
    }

    #[test]
    fn migration_is_idempotent_sql() {
        let sql = migration_sql(&TableName::new("s").unwrap());
        assert!(
            sql.starts_with("CREATE TABLE IF NOT EXISTS \"s\" ("),
            "{sql}"
        );
        assert!(sql.contains(") STRICT;\n"), "{sql}");
        for line in sql.lines().filter(|l| l.starts_with("CREATE")) {
            assert!(line.contains("IF NOT EXISTS"), "{line}");
        }
        assert_eq!(sql.matches(";\n").count(), 3);
    }
}

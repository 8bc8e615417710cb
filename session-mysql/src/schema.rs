//! Table names, the embedded migration and every SQL statement the store runs.

use session_core::{Error, Result};

/// The table used when none is configured.
pub const DEFAULT_TABLE: &str = "sessions";

/// The longest identifier MySQL and MariaDB accept (longer ones are an error there, not a
/// truncation, but checking here makes it a [`Error::Config`] before any I/O).
const MAX_IDENT_LEN: usize = 64;

/// The longest owner the `owner` column holds, in bytes of UTF-8: InnoDB's limit for one
/// index key.
pub(crate) const MAX_OWNER_BYTES: usize = 3072;

/// A validated, backquoted table name, in the connection's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    table: String,
}

impl TableName {
    /// Checks the name: lowercase ASCII letters, digits and `_`, not starting with a digit,
    /// at most 64 bytes. Anything else is [`Error::Config`]: the name is quoted, but never
    /// taken unchecked. Lowercase only, so the name means the same table whatever the
    /// server's `lower_case_table_names`.
    pub fn new(table: &str) -> Result<Self> {
        let mut bytes = table.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if first_ok && rest_ok && table.len() <= MAX_IDENT_LEN {
            return Ok(Self {
                table: table.to_owned(),
            });
        }
        Err(Error::Config(format!(
            "invalid table name {table:?}: use 1 to {MAX_IDENT_LEN} lowercase ASCII letters, \
             digits and underscores, not starting with a digit"
        )))
    }

    /// The table's name, unquoted.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `` `table` ``, ready to put in SQL.
    pub fn quoted(&self) -> String {
        format!("`{}`", self.table)
    }
}

/// The index on `expires_at` (used by `delete_expired`). Index names are per table in
/// MySQL, so they need no table prefix.
pub const EXPIRES_INDEX: &str = "expires_idx";

/// The index on `owner` (used by the owner queries).
pub const OWNER_INDEX: &str = "owner_idx";

/// The idempotent migration creating `name`'s table with its indexes, as one statement.
///
/// - `id` and `owner` are `VARBINARY`, so they compare byte for byte: `Abc` and `abc` are
///   two sessions, and so are `4` and `4 `. (The default collations fold case and accents,
///   and `utf8mb4_bin` is a PAD SPACE collation that ignores trailing spaces; the NO PAD
///   binary collations are named differently on MySQL and MariaDB.) The store writes UTF-8
///   there and refuses to read anything else.
/// - `data` is `LONGTEXT` (utf8mb4, binary): the JSON text exactly as written. MySQL's
///   `JSON` type reorders keys and rewrites numbers (`1e18` reads back as `1000000000000000000`),
///   and MariaDB's `JSON` is a `LONGTEXT` whose `JSON_VALID` check refuses data nested
///   deeper than 32 levels, which the codec allows.
/// - Times are `BIGINT` Unix milliseconds, the precision of `session_core::now`: exact, free
///   of the session `time_zone`, comparable without conversion, covering every date the
///   `time` crate holds. `TIMESTAMP` ends in January 2038; `DATETIME(6)` starts at year 1000.
pub fn migration_sql(name: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    id         VARBINARY(128) NOT NULL,
    data       LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    expires_at BIGINT NOT NULL,
    deadline   BIGINT NULL,
    created_at BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    owner      VARBINARY({MAX_OWNER_BYTES}) NULL,
    format     INT NOT NULL,
    PRIMARY KEY (id),
    KEY {EXPIRES_INDEX} (expires_at),
    KEY {OWNER_INDEX} (owner)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        table = name.quoted(),
    )
}

/// Every statement the store runs, built once per store from its validated table name.
///
/// Liveness is judged by the application's clock, passed as a parameter (`now`, Unix
/// milliseconds), like every other backend: a record is live while `now < expires_at`.
/// MySQL numbers parameters by position, so one used twice is bound twice.
#[derive(Debug)]
pub(crate) struct Statements {
    pub get: String,
    pub insert: String,
    pub take_expired: String,
    pub set_update: String,
    pub set_blocked: String,
    pub update: String,
    pub touch: String,
    pub destroy: String,
    pub rename_move: String,
    pub purge_batch: String,
    pub claim_expired: String,
    pub list_by_owner: String,
    pub destroy_by_owner: String,
    pub count: String,
    pub scan: String,
}

/// The columns a read returns, in the order `decode_row` reads them.
const READ_COLUMNS: &str = "id, data, expires_at, deadline, created_at, version, owner, format";

/// Unix milliseconds of the first and last instants the `time` crate holds, as built (its
/// `large-dates` feature, which any crate of the build may turn on, widens the range).
pub(crate) fn readable_millis() -> (i64, i64) {
    let first = time::PrimitiveDateTime::MIN.assume_utc();
    let last = time::PrimitiveDateTime::MAX.assume_utc();
    (
        (first.unix_timestamp_nanos() / 1_000_000) as i64,
        (last.unix_timestamp_nanos() / 1_000_000) as i64,
    )
}

/// What a conditional write (`update`, `touch`, `rename`) requires of the row besides being
/// live, so it leaves a row the store can't decode as it is, as if it were missing: every
/// check of `decode_row` and `StoredRecord::into_record` that SQL makes cheaply. Those are
/// the stored format (1, the only one the decoder reads), a version from 0 to
/// `Record::MAX_VERSION`, data that starts as an object (serde_json writes no leading
/// space), and times the `time` crate represents. Data that starts with `{` but doesn't
/// parse (a hand edit) passes: judging it would mean parsing up to a megabyte per write.
/// The owner must be UTF-8 (`decode_row` refuses other bytes, and the `VARBINARY` column
/// takes any): a conversion to `utf8mb4` and back changes (MariaDB: `?` for each bad
/// sequence) or nulls (MySQL 8) bytes that aren't, so they don't compare equal.
pub(crate) fn decodable() -> String {
    let max = session_core::Record::MAX_VERSION;
    let (first, last) = readable_millis();
    format!(
        "format = 1 AND version BETWEEN 0 AND {max} AND data LIKE '{{%' \
         AND created_at BETWEEN {first} AND {last} AND expires_at BETWEEN {first} AND {last} \
         AND (deadline IS NULL OR deadline BETWEEN {first} AND {last}) \
         AND (owner IS NULL OR CONVERT(CONVERT(owner USING utf8mb4) USING binary) = owner)"
    )
}

impl Statements {
    pub(crate) fn new(name: &TableName) -> Self {
        let t = name.quoted();
        let max = session_core::Record::MAX_VERSION;
        let decodable = decodable();
        // Parameters of a row: id, data, expires_at, deadline, created_at, version, owner,
        // format (see `WriteParams::bind`).
        let all = "(id, data, expires_at, deadline, created_at, version, owner, format)";
        Self {
            // ? id, ? now.
            get: format!("SELECT {READ_COLUMNS} FROM {t} WHERE id = ? AND expires_at > ?"),
            // A plain INSERT: a taken id is error 1062, and nothing else can make it fail
            // that way. (`INSERT IGNORE` would also turn refused data into warnings, and
            // `ON DUPLICATE KEY UPDATE` reports an insert and an unchanged row alike under
            // CLIENT_FOUND_ROWS, which sqlx sets.)
            insert: format!("INSERT INTO {t} {all} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            // ? id, ? now: an expired row gives way to an insert or a rename.
            take_expired: format!("DELETE FROM {t} WHERE id = ? AND expires_at <= ?"),
            // ? now, ? version, ? version, ? data, ? expires_at, ? deadline, ? created_at,
            // ? owner, ? format, ? id, ? now.
            // `version` comes first: MySQL assigns left to right and later expressions see
            // the new values, and the version depends on the old expiry. LAST_INSERT_ID(x)
            // makes the server return x in the OK packet (`last_insert_id`), so the stored
            // version comes back with the write, no second read. A live row at the maximum
            // version matches nothing (`set_blocked` tells it from a missing row); a row
            // whose version is out of range counts as corrupt and is replaced.
            set_update: format!(
                "UPDATE {t} SET version = LAST_INSERT_ID(IF(expires_at > ? AND version BETWEEN 0 AND {max}, \
                   GREATEST(version + 1, ?), ?)), \
                 data = ?, expires_at = ?, deadline = ?, created_at = ?, owner = ?, format = ? \
                 WHERE id = ? AND NOT (expires_at > ? AND version = {max})"
            ),
            // ? id, ? now.
            set_blocked: format!(
                "SELECT 1 FROM {t} WHERE id = ? AND expires_at > ? AND version = {max}"
            ),
            // ? data, ? expires_at, ? deadline, ? created_at, ? version (new), ? owner,
            // ? format, ? id, ? version (read), ? now.
            update: format!(
                "UPDATE {t} SET data = ?, expires_at = ?, deadline = ?, created_at = ?, \
                 version = ?, owner = ?, format = ? \
                 WHERE id = ? AND version = ? AND expires_at > ? AND {decodable}"
            ),
            // ? wanted expiry, ? wanted expiry, ? id, ? now. Affected rows count matched rows
            // (CLIENT_FOUND_ROWS), so a touch to the same expiry still says the session was
            // there.
            touch: format!(
                "UPDATE {t} SET expires_at = LEAST(?, COALESCE(deadline, ?)) \
                 WHERE id = ? AND expires_at > ? AND {decodable}"
            ),
            destroy: format!("DELETE FROM {t} WHERE id = ?"),
            // ? to, ? from, ? now. The row's key changes in place (see the crate docs); a
            // live row under `to` makes it fail with 1062.
            rename_move: format!(
                "UPDATE {t} SET id = ? WHERE id = ? AND expires_at > ? AND {decodable}"
            ),
            // ? now, ? batch size: walks the expires_at index from the oldest row.
            purge_batch: format!(
                "DELETE FROM {t} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
            ),
            // ? now, ? batch size. The expiry feed's purge reads and locks the oldest expired
            // rows (skipping those another purge holds), reports them, then deletes each
            // with `take_expired` and commits: MySQL has no `DELETE ... RETURNING`.
            claim_expired: format!(
                "SELECT {READ_COLUMNS} FROM {t} WHERE expires_at <= ? \
                 ORDER BY expires_at LIMIT ? FOR UPDATE SKIP LOCKED"
            ),
            // ? owner, ? now.
            list_by_owner: format!(
                "SELECT {READ_COLUMNS} FROM {t} WHERE owner = ? AND expires_at > ?"
            ),
            // ? owner, ? now. Only live rows: the affected-row count is then the answer, and
            // the owner's expired rows are the purge's.
            destroy_by_owner: format!("DELETE FROM {t} WHERE owner = ? AND expires_at > ?"),
            // ? now.
            count: format!("SELECT COUNT(*) FROM {t} WHERE expires_at > ?"),
            // ? the last id of the previous page (empty at the start), ? now, ? the page
            // size: a keyset page along the primary key.
            scan: format!(
                "SELECT {READ_COLUMNS} FROM {t} WHERE id > ? AND expires_at > ? \
                 ORDER BY id LIMIT ?"
            ),
        }
    }

    /// A statement by name, for tests that `EXPLAIN` the store's own SQL.
    pub(crate) fn by_name(&self, name: &str) -> Option<&str> {
        Some(match name {
            "get" => &self.get,
            "insert" => &self.insert,
            "take_expired" => &self.take_expired,
            "set_update" => &self.set_update,
            "set_blocked" => &self.set_blocked,
            "update" => &self.update,
            "touch" => &self.touch,
            "destroy" => &self.destroy,
            "rename_move" => &self.rename_move,
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
        for good in ["sessions", "_s", "a1_b2", &"x".repeat(64)] {
            assert!(TableName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Sessions",
            "a-b",
            "a b",
            "a`b",
            "s;drop table x",
            "é",
            &"x".repeat(65),
            "a.b",
        ] {
            assert!(
                matches!(TableName::new(bad), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
        assert_eq!(TableName::new("s").unwrap().quoted(), "`s`");
    }

    #[test]
    fn the_write_guard_refuses_what_the_decoder_refuses() {
        let guard = decodable();
        let max = session_core::Record::MAX_VERSION;
        assert!(
            guard.contains(&format!("version BETWEEN 0 AND {max}")),
            "{guard}"
        );
        assert!(guard.contains("format = 1"), "{guard}");
        let (first, last) = readable_millis();
        for column in ["created_at", "expires_at", "deadline"] {
            assert!(
                guard.contains(&format!("{column} BETWEEN {first} AND {last}")),
                "{guard}"
            );
        }
        // The bounds are the decoder's: one past them fails to decode, they don't.
        assert!(session_core::from_unix_millis(first).is_some());
        assert!(session_core::from_unix_millis(last).is_some());
        assert!(session_core::from_unix_millis(first - 1).is_none());
        assert!(session_core::from_unix_millis(last + 1).is_none());
    }

    #[test]
    fn migration_is_idempotent_sql() {
        let sql = migration_sql(&TableName::new(DEFAULT_TABLE).unwrap());
        assert!(
            sql.starts_with("CREATE TABLE IF NOT EXISTS `sessions`"),
            "{sql}"
        );
        assert!(sql.contains("ENGINE=InnoDB"));
        assert_eq!(sql.matches("VARBINARY").count(), 2, "{sql}");
        assert!(!sql.contains(';'), "one statement: {sql}");
    }

    #[test]
    fn set_assigns_the_version_before_the_expiry() {
        let sql = Statements::new(&TableName::new("s").unwrap()).set_update;
        let version = sql.find("version = LAST_INSERT_ID").unwrap();
        let expiry = sql.find("expires_at = ?").unwrap();
        assert!(version < expiry, "{sql}");
    }
}

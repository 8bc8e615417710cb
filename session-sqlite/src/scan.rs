//! [`ScanSessions`] for [`SqliteStore`]: keyset pages along the primary key.

use session_core::{Result, ScanCursor, ScanPage, ScanSessions, SessionId, async_trait};
use sqlx::Row;

use crate::error::backend;
use crate::store::{SqliteStore, decode_row};

/// How a cursor marks an id that is not UTF-8 (SQLite never checks text; only a hand edit
/// stores one), written as hex: a cursor is text, and an id changed by a lossy conversion
/// would sort elsewhere (the scan could repeat that page for ever).
const HEX: &str = "hex:";

/// Pages in id order (`WHERE id > ?1 AND expires_at > ?2 ORDER BY id LIMIT ?3`, along the
/// primary key; ids compare byte for byte, SQLite's `BINARY` collation): the cursor is the
/// last id of the page, so a saved cursor goes on where it stopped whatever was written
/// meanwhile, and a session live for the whole scan is returned exactly once. Liveness is
/// judged as `get` judges it, by the application's clock read once the call holds a
/// connection. A row that doesn't decode (or whose id is not a session id) counts in
/// [`ScanPage::corrupt`], whatever the [`CorruptPolicy`](session_core::CorruptPolicy), and
/// keeps its place in the order. Each page is one `SELECT` (a read: in WAL mode it never
/// waits for writers).
#[async_trait]
impl ScanSessions for SqliteStore {
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        let limit = limit.max(1);
        let after = cursor_bytes(cursor);
        let rows = self
            .timed("scan", async {
                let (mut connection, now) = self.connection().await?;
                sqlx::query(&self.statements().scan)
                    .bind(after.as_slice())
                    .bind(now)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        let full = rows.len() >= limit;
        let mut records = Vec::with_capacity(rows.len());
        let (mut corrupt, mut last) = (0, None);
        for row in &rows {
            // Bytes: text that is not UTF-8 (a hand edit) must not fail the page.
            let id: Vec<u8> = row.try_get("id").map_err(backend)?;
            let decoded = std::str::from_utf8(&id)
                .ok()
                .and_then(|text| SessionId::parse(text).ok())
                .map(|parsed| decode_row(&parsed, row));
            match decoded {
                Some(Ok(record)) => records.push(record),
                _ => corrupt += 1,
            }
            last = Some(id);
        }
        let next = last.filter(|_| full).map(|id| cursor_of(&id));
        Ok(ScanPage::new(records, corrupt, next))
    }
}

/// The cursor after the row whose id is `id`: the id itself, or [`HEX`] and its bytes in
/// hex when it isn't UTF-8 or could be read as such a mark.
fn cursor_of(id: &[u8]) -> ScanCursor {
    match std::str::from_utf8(id) {
        Ok(text) if !text.starts_with(HEX) => ScanCursor::from_backend(text),
        _ => {
            let hex: String = id.iter().map(|byte| format!("{byte:02x}")).collect();
            ScanCursor::from_backend(format!("{HEX}{hex}"))
        }
    }
}

/// The id bytes a cursor stands for (empty at the start: every id is greater).
fn cursor_bytes(cursor: &ScanCursor) -> Vec<u8> {
    let text = cursor.as_str();
    text.strip_prefix(HEX)
        .and_then(|hex| {
            (hex.len() % 2 == 0)
                .then(|| {
                    (0..hex.len())
                        .step_by(2)
                        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
                        .collect::<Option<Vec<u8>>>()
                })
                .flatten()
        })
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_name_any_id_bytes_exactly() {
        for id in [
            &b"abc-DEF_123"[..],
            b"\xff\x00not utf-8",
            b"hex:41",
            b"hex:zz",
            b"",
        ] {
            let cursor: ScanCursor = cursor_of(id).to_string().parse().unwrap();
            assert_eq!(cursor_bytes(&cursor), id, "{cursor}");
        }
        assert_eq!(cursor_of(b"plain").as_str(), "plain");
        assert!(cursor_bytes(&ScanCursor::start()).is_empty());
    }
}

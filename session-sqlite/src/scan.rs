//! [`ScanSessions`] for [`SqliteStore`]: keyset pages along the primary key.

use session_core::{KeysetPage, Result, ScanCursor, ScanPage, ScanSessions, async_trait};
use sqlx::Row;

use crate::error::backend;
use crate::store::{SqliteStore, decode_row};

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
        let after = cursor.id_bytes();
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
        let mut page = KeysetPage::new(limit);
        for row in &rows {
            let id: Vec<u8> = row.try_get("id").map_err(backend)?;
            page.push(id, |parsed| decode_row(parsed, row));
        }
        Ok(page.finish())
    }
}

//! [`ScanSessions`] for [`PostgresStore`]: keyset pages along the primary key.

use session_core::{KeysetPage, Result, ScanCursor, ScanPage, ScanSessions, async_trait};
use sqlx::Row;

use crate::error::backend;
use crate::store::PostgresStore;

/// Pages in id order (`WHERE id > $cursor AND expires_at > $now ORDER BY id LIMIT n`, along
/// the primary key's index): the cursor is the last id of the page, so a saved cursor goes
/// on where it stopped whatever was written meanwhile, and a session live for the whole
/// scan is returned exactly once. Liveness is judged as `get` judges it, by the
/// application's clock read once the call holds a connection. A row that doesn't decode
/// (or whose id is not a session id) counts in [`ScanPage::corrupt`], whatever the
/// [`CorruptPolicy`](session_core::CorruptPolicy), and keeps its place in the order.
///
/// Ids are ordered by the column's collation (the database's default): the cursor means
/// "after this id" in that order, which is why it holds only for the same table.
#[async_trait]
impl ScanSessions for PostgresStore {
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        let limit = limit.max(1);
        // Ids here are text, so the bytes a cursor names are always UTF-8.
        let after = String::from_utf8_lossy(&cursor.id_bytes()).into_owned();
        let rows = self
            .timed("scan", async {
                let (mut connection, now) = self.connection().await?;
                sqlx::query(&self.statements().scan)
                    .bind(after.as_str())
                    .bind(now)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&mut *connection)
                    .await
                    .map_err(backend)
            })
            .await?;
        let mut page = KeysetPage::new(limit);
        for row in &rows {
            let id: String = row.try_get("id").map_err(backend)?;
            page.push(id.into_bytes(), |parsed| self.decode_row(parsed, row));
        }
        Ok(page.finish())
    }
}

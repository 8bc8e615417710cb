//! The SQLite store's [`ExpiryFeed`]: a purge that reports what it deletes.

use session_core::{
    ClaimExpired, Expired, ExpiredSessions, ExpiryFeed, ExpirySink, Result, WatchOptions,
    async_trait,
};
use sqlx::Row;

use crate::error::backend;
use crate::store::{SqliteStore, decode_row};

/// Purges every interval, in batches, each in a write transaction: `DELETE ... RETURNING`
/// the oldest expired rows, report them, then commit. A row is reported before its removal
/// is final, so a purge that fails or a process that dies before committing leaves the rows
/// to be reported again: every expiry is reported **at least once**, by the process whose
/// purge claimed it (the write lock lets one purge at a time claim), within the interval
/// (plus the purge's own time) after its `expires_at`. Owners always; the record when
/// asked.
#[async_trait]
impl ExpiryFeed for SqliteStore {
    async fn watch_expired(&self, options: WatchOptions) -> Result<ExpiredSessions> {
        Ok(ExpiredSessions::purging(self, options))
    }
}

#[async_trait]
impl ClaimExpired for SqliteStore {
    /// One batch of the feed's purge; how many rows it claimed.
    async fn claim_expired(&self, options: WatchOptions, sink: &ExpirySink) -> Result<u64> {
        self.timed("claim_expired", async {
            let (mut transaction, now, _writer) = self.begin_write().await?;
            let rows = sqlx::query(&self.statements().claim_expired)
                .bind(i64::from(options.get_batch()))
                .bind(now)
                .fetch_all(&mut *transaction)
                .await
                .map_err(backend)?;
            for row in &rows {
                let id: &str = row.try_get("id").map_err(backend)?;
                let owner: Option<String> = row.try_get("owner").map_err(backend)?;
                let with_data = options.wants_data();
                let Some(expired) =
                    Expired::claimed(id, owner, with_data, |id| decode_row(id, row))
                else {
                    continue;
                };
                if !sink.send(expired) {
                    // Nobody listens any more: leave the rows for the next purge.
                    return Ok(0);
                }
            }
            transaction.commit().await.map_err(backend)?;
            Ok(rows.len() as u64)
        })
        .await
    }
}

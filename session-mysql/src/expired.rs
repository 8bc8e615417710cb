//! The MySQL/MariaDB store's [`ExpiryFeed`]: a purge that reports what it deletes.

use session_core::{
    ClaimExpired, Expired, ExpiredSessions, ExpiryFeed, ExpirySink, Result, WatchOptions,
    async_trait, now, unix_millis,
};
use sqlx::Row;

use crate::error::backend;
use crate::store::{MysqlStore, decode_row};

/// Purges every interval, in batches, each in a transaction: lock the oldest expired rows
/// (`FOR UPDATE SKIP LOCKED`, so purges in several processes split them), report them,
/// delete them, then commit. A row is reported before its removal is final, so a purge
/// that fails or a process that dies before committing leaves the rows to be reported
/// again: every expiry is reported **at least once**, by the process whose purge claimed
/// it, within the interval (plus the purge's own time) after its `expires_at`. Owners
/// always; the record when asked. Needs `SKIP LOCKED` (MySQL 8, MariaDB 10.6).
#[async_trait]
impl ExpiryFeed for MysqlStore {
    async fn watch_expired(&self, options: WatchOptions) -> Result<ExpiredSessions> {
        Ok(ExpiredSessions::purging(self, options))
    }
}

#[async_trait]
impl ClaimExpired for MysqlStore {
    /// One batch of the feed's purge; how many rows it claimed.
    async fn claim_expired(&self, options: WatchOptions, sink: &ExpirySink) -> Result<u64> {
        self.timed("claim_expired", async {
            let mut transaction = self.pool().begin().await.map_err(backend)?;
            let now = unix_millis(now());
            let rows = sqlx::query(&self.statements().claim_expired)
                .bind(now)
                .bind(i64::from(options.get_batch()))
                .fetch_all(&mut *transaction)
                .await
                .map_err(backend)?;
            for row in &rows {
                // Binary columns: bytes that aren't UTF-8 make no valid id (or owner).
                let id: &[u8] = row.try_get("id").map_err(backend)?;
                let owner: Option<Vec<u8>> = row.try_get("owner").map_err(backend)?;
                let owner = owner.and_then(|owner| String::from_utf8(owner).ok());
                let with_data = options.wants_data();
                let text = String::from_utf8_lossy(id);
                if let Some(expired) =
                    Expired::claimed(&text, owner, with_data, |id| decode_row(id, row))
                    && !sink.send(expired)
                {
                    // Nobody listens any more: leave the rows for the next purge.
                    return Ok(0);
                }
                sqlx::query(&self.statements().take_expired)
                    .bind(id)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await
                    .map_err(backend)?;
            }
            transaction.commit().await.map_err(backend)?;
            Ok(rows.len() as u64)
        })
        .await
    }
}

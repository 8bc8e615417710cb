//! The PostgreSQL store's [`ExpiryFeed`]: a purge that reports what it deletes.

use session_core::{
    ClaimExpired, Expired, ExpiredSessions, ExpiryFeed, ExpirySink, Result, SessionId,
    WatchOptions, async_trait, now,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::backend;
use crate::store::PostgresStore;

/// Purges every interval, in batches, each in a transaction: `DELETE ... RETURNING` the
/// expired rows (`SKIP LOCKED`, so purges in several processes split them), report them,
/// then commit. A row is reported before its removal is final, so a purge that fails or a
/// process that dies before committing leaves the rows to be reported again: every expiry
/// is reported **at least once**, by the process whose purge claimed it, within the
/// interval (plus the purge's own time) after its `expires_at`; twice only when a commit
/// fails after the report. Owners always; the record's data when asked (it is still in
/// the row). Other processes hear nothing: run the feed in each process that wants to know
/// about its sessions, or forward the reports yourself.
#[async_trait]
impl ExpiryFeed for PostgresStore {
    async fn watch_expired(&self, options: WatchOptions) -> Result<ExpiredSessions> {
        Ok(ExpiredSessions::purging(self, options))
    }
}

#[async_trait]
impl ClaimExpired for PostgresStore {
    /// One batch of the feed's purge; how many rows it claimed.
    async fn claim_expired(&self, options: WatchOptions, sink: &ExpirySink) -> Result<u64> {
        self.timed("claim_expired", async {
            let mut transaction = self.pool().begin().await.map_err(backend)?;
            let rows = sqlx::query(&self.statements().claim_expired)
                .bind(i64::from(options.get_batch()))
                .bind(now())
                .fetch_all(&mut *transaction)
                .await
                .map_err(backend)?;
            let claimed = rows.len() as u64;
            for row in &rows {
                let Some(expired) = expired(self, row, options.wants_data())? else {
                    continue;
                };
                if !sink.send(expired) {
                    // Nobody listens any more: leave the rows for the next purge.
                    return Ok(0);
                }
            }
            transaction.commit().await.map_err(backend)?;
            Ok(claimed)
        })
        .await
    }
}

/// A claimed row as an expiry (`None` for a malformed id).
fn expired(store: &PostgresStore, row: &PgRow, with_data: bool) -> Result<Option<Expired>> {
    let id: &str = row.try_get("id").map_err(backend)?;
    let owner: Option<String> = match store.express() {
        // The owner is in the session's JSON (or at the owner path): a row that doesn't
        // decode has none.
        Some(_) => SessionId::parse(id)
            .ok()
            .and_then(|parsed| store.decode_row(&parsed, row).ok())
            .and_then(|record| record.owner().map(str::to_owned)),
        None => row.try_get("owner").map_err(backend)?,
    };
    Ok(Expired::claimed(id, owner, with_data, |id| {
        store.decode_row(id, row)
    }))
}

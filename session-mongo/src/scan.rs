//! [`ScanSessions`] for [`MongoStore`]: keyset pages along `_id`.

use futures::TryStreamExt as _;
use mongodb::bson::{Bson, Document, doc};
use session_core::{Result, ScanCursor, ScanPage, ScanSessions, SessionId, async_trait};

use crate::document::{CLAIMED_UNTIL, decode, is_live, now_bson};
use crate::errors::backend_error;
use crate::store::MongoStore;

/// Pages in `_id` order (`find({_id: {$gt: cursor}, expires_at: {$gt: now}, claimed_until:
/// absent}).sort({_id: 1}).limit(n)`, along the `_id` index on MongoDB): the cursor is the
/// last id of the page, so a saved cursor goes on where it stopped whatever was written
/// meanwhile, and a session live for the whole scan is returned exactly once.
///
/// Liveness is `get`'s: `expires_at` after now by the application's clock, and not claimed
/// by an expiry feed's purge (`claimed_until`: reported expired, so dead to every call); a
/// document a writer holds locked (FerretDB's lease locks) is live and read as it is. A
/// document that doesn't decode (or whose `_id` is a string but not a session id) counts in
/// [`ScanPage::corrupt`], whatever the [`CorruptPolicy`](session_core::CorruptPolicy), and
/// keeps its place in the order; a document whose `_id` is not a string (no session's) is
/// never met: `$gt` on a string compares strings only.
///
/// On FerretDB 1.x this filter is not its `{_id}` fast path: each page reads the whole
/// collection inside FerretDB (see the crate docs), so walk a large store there in large
/// pages.
#[async_trait]
impl ScanSessions for MongoStore {
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        let limit = limit.max(1);
        if self.format == crate::Format::ExpressSession {
            return self.timed("scan", self.express_scan(cursor, limit)).await;
        }
        let now = now_bson();
        let documents: Vec<Document> = self
            .timed("scan", async {
                let filter = doc! {
                    "_id": { "$gt": cursor.as_str() },
                    "expires_at": { "$gt": now },
                    CLAIMED_UNTIL: { "$exists": false },
                };
                self.collection
                    .find(filter)
                    .sort(doc! { "_id": 1 })
                    .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                    .await
                    .map_err(backend_error)?
                    .try_collect()
                    .await
                    .map_err(backend_error)
            })
            .await?;
        let full = documents.len() >= limit;
        let mut records = Vec::with_capacity(documents.len());
        let (mut corrupt, mut last) = (0, None);
        for document in documents {
            let Some(Bson::String(raw)) = document.get("_id") else {
                continue;
            };
            let raw = raw.clone();
            // The filter's judgement, made once more here as `get` makes it (a document the
            // server matched keeps its place in the order either way).
            if !is_live(&document, now) {
                last = Some(raw);
                continue;
            }
            match SessionId::parse(&raw).map(|id| decode(&id, document)) {
                Ok(Ok(record)) => records.push(record),
                _ => corrupt += 1,
            }
            last = Some(raw);
        }
        let next = last.filter(|_| full).map(ScanCursor::from_backend);
        Ok(ScanPage::new(records, corrupt, next))
    }
}

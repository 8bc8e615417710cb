//! The MongoDB store's [`ExpiryFeed`]: a purge that reports what it removes.

use futures::TryStreamExt as _;
use mongodb::bson::{DateTime, Document, doc};
use session_core::{
    ClaimExpired, Error, Expired, ExpiredSessions, ExpiryFeed, ExpirySink, Result, WatchOptions,
    async_trait,
};

use crate::config::ExpiryMode;
use crate::document::{CLAIMED_UNTIL, decode, is_live, now_bson};
use crate::errors::backend_error;
use crate::store::MongoStore;

/// Purges every interval: finds up to a batch of expired documents (oldest expiry first),
/// and for each, claims it (its lock on FerretDB, a lease on MongoDB: see
/// `claim_one`), reports it, **then** deletes it. A report comes before the deletion, so a
/// purge that fails or a process that dies between the two leaves the document to be
/// reported again once the claim lapses: every expiry is reported **at least once**, by
/// the process whose purge claimed it, within the interval (plus the purge's own time)
/// after its `expires_at`; twice only after such a failure. Owners always; the record when
/// asked.
///
/// Needs [`ExpiryMode::Disabled`]: a TTL index or the store's own pruner would remove
/// sessions without telling anyone, so the feed refuses the other modes with
/// [`Error::Config`].
#[async_trait]
impl ExpiryFeed for MongoStore {
    async fn watch_expired(&self, options: WatchOptions) -> Result<ExpiredSessions> {
        if self.format == crate::Format::ExpressSession {
            return Err(Error::Config(
                "the expiry feed reads this crate's own documents: it is not available in the \
                 express-session format (connect-mongo's documents)"
                    .into(),
            ));
        }
        if self.expiry_mode() != ExpiryMode::Disabled {
            return Err(Error::Config(format!(
                "an expiry feed purges by itself, and the store's {:?} expiry would delete \
                 expired sessions without reporting them: build the store with \
                 ExpiryMode::Disabled (and drop the TTL index `{}` if it exists)",
                self.expiry_mode(),
                crate::config::TTL_INDEX,
            )));
        }
        Ok(ExpiredSessions::purging(self, options))
    }
}

#[async_trait]
impl ClaimExpired for MongoStore {
    /// One batch of the feed's purge; how many expired documents it found.
    async fn claim_expired(&self, options: WatchOptions, sink: &ExpirySink) -> Result<u64> {
        let find = self
            .collection
            .find(doc! { "expires_at": { "$lte": now_bson() } })
            .sort(doc! { "expires_at": 1 })
            .limit(i64::from(options.get_batch()))
            .projection(doc! { "_id": 1 });
        // Each round trip has the store's timeout, not the whole batch: a batch cut short
        // would leave reported documents behind, to be reported again.
        let found: Vec<Document> = self
            .timed("claim_expired", async {
                find.await
                    .map_err(backend_error)?
                    .try_collect()
                    .await
                    .map_err(backend_error)
            })
            .await?;
        let claimed = found.len() as u64;
        for document in found {
            let Ok(id) = document.get_str("_id").map(str::to_owned) else {
                continue;
            };
            let claim = self.claim_one(id, options.wants_data(), sink.clone());
            if !self.timed("claim_expired", claim).await? {
                return Ok(0);
            }
        }
        Ok(claimed)
    }
}

impl MongoStore {
    /// Claims the document under `id` if it is still expired and no other purge holds it,
    /// reports it, then deletes it. `false` once nobody listens.
    ///
    /// With locks (FerretDB) the session's lock is the claim: under it the document is read
    /// again, reported and deleted; a purge that finds the lock busy leaves the document to
    /// whoever holds it. On MongoDB a `findOneAndUpdate` sets a lease (`claimed_until`, the
    /// store's timeout twice over) on a document nobody holds, atomically; a claimed
    /// document is dead to every write (`live_and_decodable`), so a `touch` whose clock
    /// still counted it live can't revive a session already reported expired. Either way a
    /// purge that dies after the claim leaves the document, reclaimable once the lease or
    /// lock expires: reported again, never lost.
    async fn claim_one(&self, id: String, with_data: bool, sink: ExpirySink) -> Result<bool> {
        if self.locks.is_none() {
            let now = now_bson();
            let lease = self.options.timeout.saturating_mul(2);
            let until = DateTime::from_millis(
                now.timestamp_millis()
                    .saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)),
            );
            let claimed = self
                .collection
                .find_one_and_update(
                    doc! { "_id": &id, "expires_at": { "$lte": now }, CLAIMED_UNTIL: { "$not": { "$gt": now } } },
                    doc! { "$set": { CLAIMED_UNTIL: until } },
                )
                .await
                .map_err(backend_error)?;
            return self.report_and_delete(&id, claimed, with_data, &sink).await;
        }
        let (key, listening) = (id.clone(), sink.clone());
        let done = self
            .try_locked(&key, move |store| async move {
                let current = store
                    .collection
                    .find_one(doc! { "_id": &id })
                    .await
                    .map_err(backend_error)?
                    .filter(|document| !is_live(document, now_bson()));
                store
                    .report_and_delete(&id, current, with_data, &sink)
                    .await
            })
            .await?;
        Ok(done.unwrap_or(!listening.is_closed()))
    }

    /// Reports `claimed` (if any) and deletes it, still only if expired (an insert may have
    /// taken the id over since). `false` once nobody listens.
    async fn report_and_delete(
        &self,
        id: &str,
        claimed: Option<Document>,
        with_data: bool,
        sink: &ExpirySink,
    ) -> Result<bool> {
        let Some(document) = claimed else {
            return Ok(!sink.is_closed());
        };
        if let Some(expired) = expired(id, document, with_data)
            && !sink.send(expired)
        {
            return Ok(false);
        }
        self.collection
            .delete_one(doc! { "_id": id, "expires_at": { "$lte": now_bson() } })
            .await
            .map_err(backend_error)?;
        Ok(true)
    }
}

/// A found document as an expiry (`None` when its `_id` is not a session id).
fn expired(raw: &str, document: Document, with_data: bool) -> Option<Expired> {
    let owner = document.get_str("owner").ok().map(str::to_owned);
    Expired::claimed(raw, owner, with_data, |id| decode(id, document))
}

//! The writes behind the `SessionStore` methods, in both modes: on MongoDB one guarded write
//! each (filtered writes are atomic there); on FerretDB ([`WriteGuard::Locks`]) a read by
//! `_id`, a check here and a write filtered on `_id` (and on what must not have changed
//! since the read), under the session's lock.
//!
//! [`WriteGuard::Locks`]: crate::WriteGuard::Locks

use futures::TryStreamExt as _;
use mongodb::bson::{Bson, DateTime, Document, doc};
use session_core::{Error, MAX_ID_ATTEMPTS, Record, Rename, Result, SessionId};

use crate::document::{is_live, live_and_decodable, looks_decodable, now_bson, version_of};
use crate::errors::{backend_error, is_duplicate_key, write_error};
use crate::express::Format;
use crate::store::{Found, MongoStore};

/// How many list-and-revoke passes `destroy_by_owner` makes at most.
pub(crate) const REVOKE_PASSES: usize = 16;

impl MongoStore {
    /// Inserts `document` unless a live document holds its `_id`; `false` when one does (or,
    /// when not `wait`ing, another writer holds the id's lock). An expired document under
    /// the id is removed first (under the id's lock when locking), so expired sessions never
    /// block their id.
    pub(crate) async fn insert_document(
        &self,
        id: &SessionId,
        document: Document,
        wait: bool,
    ) -> Result<bool> {
        match self.collection.insert_one(document.clone()).await {
            Ok(_) => return Ok(true),
            Err(err) if is_duplicate_key(&err) => {}
            Err(err) => return Err(write_error(id, err)),
        }
        let owned = id.clone();
        let take_over = move |store: MongoStore| async move {
            if !store.delete_expired_one(&owned).await? {
                return Ok(false);
            }
            match store.collection.insert_one(document).await {
                Ok(_) => Ok(true),
                Err(err) if is_duplicate_key(&err) => Ok(false),
                Err(err) => Err(write_error(&owned, err)),
            }
        };
        if wait {
            self.locked(id.expose(), take_over).await
        } else {
            Ok(self
                .try_locked(id.expose(), take_over)
                .await?
                .unwrap_or(false))
        }
    }

    /// Deletes the document under `id` if it has expired; `true` when one was deleted.
    /// With locks (the caller holds `id`'s), a read by `_id`, the expiry checked here and a
    /// delete by `_id` alone, which FerretDB answers from the key; the lock keeps the
    /// document from changing in between. Without, one guarded delete.
    async fn delete_expired_one(&self, id: &SessionId) -> Result<bool> {
        let live = self.is_live_fn();
        if self.locks.is_some() {
            return self
                .delete_by_id_if(id.expose(), move |d, now| !live(d, now))
                .await;
        }
        let mut expired = self.expired_filter(now_bson());
        expired.insert("_id", id.expose());
        let result = self
            .collection
            .delete_one(expired)
            .await
            .map_err(backend_error)?;
        Ok(result.deleted_count == 1)
    }

    /// With locks, the caller holding `id`'s: reads the document by `_id`, and deletes it by
    /// `_id` alone (FerretDB's fast path) if `matches` it; the lock keeps it as read.
    pub(crate) async fn delete_by_id_if(
        &self,
        id: &str,
        matches: impl Fn(&Document, DateTime) -> bool,
    ) -> Result<bool> {
        let now = now_bson();
        let current = self
            .collection
            .find_one(doc! { "_id": id })
            .await
            .map_err(backend_error)?;
        if !current.is_some_and(|document| matches(&document, now)) {
            return Ok(false);
        }
        let result = self
            .collection
            .delete_one(doc! { "_id": id })
            .await
            .map_err(backend_error)?;
        Ok(result.deleted_count == 1)
    }

    /// `set`: stores `document` (at the caller's version + 1) at one more than the larger of
    /// the live stored version and the caller's; returns that version.
    pub(crate) async fn set_document(&self, record: &Record, document: Document) -> Result<u64> {
        let (id, caller) = (record.id().clone(), record.version());
        if self.locks.is_some() {
            // The lock orders set against the other locked writers, not against `insert`'s
            // unlocked first attempt: the write below is still conditional on what was read.
            return self
                .locked(record.id().expose(), move |store| async move {
                    store.set_as_read(&id, caller, document).await
                })
                .await;
        }
        self.set_as_read(&id, caller, document).await
    }

    /// A compare-and-swap on what was read: replace the document as read, or insert where
    /// there was none; start over when another writer got there first.
    async fn set_as_read(&self, id: &SessionId, caller: u64, document: Document) -> Result<u64> {
        for _ in 0..MAX_ID_ATTEMPTS {
            let current = self
                .collection
                .find_one(doc! { "_id": id.expose() })
                .projection(doc! { "version": 1, "expires_at": 1 })
                .await
                .map_err(backend_error)?;
            let live = current.clone().filter(|d| is_live(d, now_bson()));
            let (version, document) = versioned(id, caller, live.as_ref(), document.clone())?;
            let written = match current {
                Some(found) => {
                    let read = found.get("version").cloned().unwrap_or(Bson::Null);
                    let mut filter = doc! { "_id": id.expose(), "version": { "$eq": read } };
                    // The version is based on what was read, live or not, and the replace
                    // must find it so: a session read live that expired since (by a `now`
                    // taken right before the write is sent) is written at the caller's
                    // version + 1 in the next round; one read expired (or corrupt) is only
                    // replaced as it was, never a session a concurrent insert started there.
                    let expiry = match (live.is_some(), found.get("expires_at")) {
                        (true, _) => Bson::Document(doc! { "$gt": now_bson() }),
                        (false, Some(at)) => Bson::Document(doc! { "$eq": at.clone() }),
                        (false, None) => Bson::Document(doc! { "$exists": false }),
                    };
                    filter.insert("expires_at", expiry);
                    let result = self.collection.replace_one(filter, document).await;
                    result.map_err(|err| write_error(id, err))?.matched_count == 1
                }
                None => match self.collection.insert_one(document).await {
                    Ok(_) => true,
                    Err(err) if is_duplicate_key(&err) => false,
                    Err(err) => return Err(write_error(id, err)),
                },
            };
            if written {
                return Ok(version);
            }
        }
        Err(Error::Conflict { id: id.clone() })
    }

    /// `update`: compare-and-swap on the version, leaving a corrupt document as it is.
    pub(crate) async fn update_document(
        &self,
        id: &SessionId,
        expected: i64,
        document: Document,
    ) -> Result<Found> {
        if self.locks.is_none() {
            let mut filter = live_and_decodable(id, now_bson());
            filter.insert("version", expected);
            let result = self
                .collection
                .replace_one(filter, document)
                .await
                .map_err(|err| write_error(id, err))?;
            return Ok(if result.matched_count == 1 {
                Found::Written
            } else {
                Found::Missing
            });
        }
        // A stale version conflicts at once, without queueing for the lock behind the
        // writer that is current; only worth a round trip when a writer of this process is
        // already at it (across processes, the lock's own wait covers it).
        if self.queued(id.expose()) {
            let current = self.find_live(id, Some(doc! { "version": 1 })).await?;
            if current.as_ref().and_then(version_of) != Some(expected) {
                return Ok(Found::Missing);
            }
        }
        let id = id.clone();
        self.locked(id.clone().expose(), move |store| async move {
            let Some(current) = store.find_live(&id, None).await? else {
                return Ok(Found::Missing);
            };
            if !looks_decodable(&id, &current) {
                return Ok(Found::Corrupt);
            }
            if version_of(&current) != Some(expected) {
                return Ok(Found::Missing);
            }
            // The version stays in the filter, though it costs FerretDB a scan: a replace
            // that overran its lock can still reach the server after another writer moved
            // on, and then it must match nothing instead of overwriting an acknowledged
            // update. So does liveness, by a `now` taken right before the write is sent:
            // the session may have expired since the read (a slow network, a busy server),
            // and an update never brings back a session others have seen gone.
            let filter = doc! {
                "_id": id.expose(),
                "version": expected,
                "expires_at": { "$gt": now_bson() },
            };
            let result = store
                .collection
                .replace_one(filter, document)
                .await
                .map_err(|err| write_error(&id, err))?;
            Ok(if result.matched_count == 1 {
                Found::Written
            } else {
                Found::Missing
            })
        })
        .await
    }

    /// `touch`: the expiry moved to `wanted`, capped at the deadline.
    pub(crate) async fn touch_document(&self, id: &SessionId, wanted: DateTime) -> Result<Found> {
        if self.locks.is_none() {
            return self.touch_unlocked(id, wanted).await;
        }
        let id = id.clone();
        self.locked(id.clone().expose(), move |store| async move {
            let Some(current) = store.find_live(&id, None).await? else {
                return Ok(Found::Missing);
            };
            if !looks_decodable(&id, &current) {
                return Ok(Found::Corrupt);
            }
            let (expires_at, deadline) = match current.get("deadline") {
                Some(Bson::DateTime(deadline)) => {
                    ((*deadline).min(wanted), Bson::DateTime(*deadline))
                }
                None | Some(Bson::Null) => (wanted, Bson::Null),
                Some(_) => return Ok(Found::Corrupt),
            };
            // The deadline read stays in the filter: `destroy` and `insert` don't take the
            // lock, so another session may now live under this id, and the cap must be its.
            // So does liveness, by a `now` taken right before the write is sent: a session
            // that expired since the read (a slow network, a busy server) stays gone.
            let set = doc! { "$set": { "expires_at": expires_at } };
            let filter = doc! {
                "_id": id.expose(),
                "deadline": deadline,
                "expires_at": { "$gt": now_bson() },
            };
            let result = store
                .collection
                .update_one(filter, set)
                .await
                .map_err(backend_error)?;
            Ok(if result.matched_count == 1 {
                Found::Written
            } else {
                Found::Missing
            })
        })
        .await
    }

    /// `touch` for servers with atomic filtered updates: one update in the common case, a
    /// capped one when the deadline is before the wanted expiry.
    async fn touch_unlocked(&self, id: &SessionId, wanted: DateTime) -> Result<Found> {
        for _ in 0..MAX_ID_ATTEMPTS {
            let mut filter = live_and_decodable(id, now_bson());
            filter.insert(
                "$or",
                vec![
                    doc! { "deadline": null },
                    doc! { "deadline": { "$gte": wanted } },
                ],
            );
            let set = doc! { "$set": { "expires_at": wanted } };
            let result = self
                .collection
                .update_one(filter, set)
                .await
                .map_err(backend_error)?;
            if result.matched_count == 1 {
                return Ok(Found::Written);
            }
            // Otherwise the deadline (if the session lives) is before the wanted expiry: cap
            // at it, guarded on the deadline read so a concurrent rewrite retries.
            let Some(found) = self.find_live(id, None).await? else {
                return Ok(Found::Missing);
            };
            if !looks_decodable(id, &found) {
                return Ok(Found::Corrupt);
            }
            let deadline = match found.get("deadline") {
                Some(Bson::DateTime(deadline)) => *deadline,
                None | Some(Bson::Null) => continue, // rewritten meanwhile
                Some(_) => return Ok(Found::Corrupt),
            };
            let mut filter = live_and_decodable(id, now_bson());
            filter.insert("deadline", deadline);
            let capped = doc! { "$set": { "expires_at": deadline.min(wanted) } };
            let result = self
                .collection
                .update_one(filter, capped)
                .await
                .map_err(backend_error)?;
            if result.matched_count == 1 {
                return Ok(Found::Written);
            }
        }
        // Rewritten concurrently at every attempt.
        Err(Error::Conflict { id: id.clone() })
    }

    /// `rename`: attempts under `from`'s lock until one is not disturbed by a write to
    /// `from`. With locks, the move of an owned session also holds its owner's lock (see
    /// [`owner_lock`]): taken without waiting while `from`'s is held, else the next attempt
    /// waits for the owner's lock first and then takes `from`'s, always in that order.
    pub(crate) async fn rename_document(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        let mut owner_held: Option<String> = None;
        for _ in 0..MAX_ID_ATTEMPTS {
            let (f, t, held) = (from.clone(), to.clone(), owner_held.clone());
            let attempt = move |store: MongoStore| async move {
                store.try_rename(&f, &t, held.as_deref()).await
            };
            let attempt = match &owner_held {
                None => self.locked(from.expose(), attempt).await?,
                Some(owner) => {
                    let source = from.expose().to_owned();
                    self.locked(&owner_lock(owner), move |store| async move {
                        store.locked(&source, attempt).await
                    })
                    .await?
                }
            };
            match attempt {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Changed => {}
                Attempt::OwnerBusy(owner) => owner_held = Some(owner),
            }
        }
        Err(Error::Conflict { id: from.clone() })
    }

    /// One attempt of [`Self::rename_document`], holding `from`'s lock when locking (and
    /// the lock of `owner_held`, when named).
    async fn try_rename(
        &self,
        from: &SessionId,
        to: &SessionId,
        owner_held: Option<&str>,
    ) -> Result<Attempt> {
        let Some(original) = self.find_live(from, None).await? else {
            return Ok(Attempt::Done(Rename::SourceMissing));
        };
        let owner = match self.format {
            Format::Native => {
                if !looks_decodable(from, &original) {
                    return self.corrupt(from, Rename::SourceMissing).map(Attempt::Done);
                }
                original.get_str("owner").ok().map(str::to_owned)
            }
            Format::ExpressSession => match self.express_decode(from, &original) {
                Ok(record) if record.is_expired() => {
                    return Ok(Attempt::Done(Rename::SourceMissing));
                }
                Ok(record) => record.owner().map(str::to_owned),
                Err(_) => return self.corrupt(from, Rename::SourceMissing).map(Attempt::Done),
            },
        };
        // With locks, no session of an owner moves while `destroy_by_owner` holds the
        // owner's lock. Not waiting for it here, holding `from`'s: a revocation holding it
        // may be waiting for `from`'s.
        let owner = match owner {
            Some(owner) if self.locks.is_some() && owner_held != Some(owner.as_str()) => owner,
            _ => return self.move_document(from, to, original).await,
        };
        let (f, t) = (from.clone(), to.clone());
        let moved = self
            .try_locked(&owner_lock(&owner), move |store| async move {
                store.move_document(&f, &t, original).await
            })
            .await?;
        Ok(moved.unwrap_or(Attempt::OwnerBusy(owner)))
    }

    /// Moves `original`, the live document under `from` as read under the locks of
    /// [`Self::try_rename`], to `to`: inserts the copy, then deletes the original.
    async fn move_document(
        &self,
        from: &SessionId,
        to: &SessionId,
        original: Document,
    ) -> Result<Attempt> {
        let mut copy = original.clone();
        copy.insert("_id", to.expose());
        // Don't wait for `to`'s lock while holding `from`'s: a busy target counts as taken.
        if !self.insert_document(to, copy.clone(), false).await? {
            return Ok(Attempt::Done(Rename::TargetTaken));
        }
        // The original goes only if it is exactly as copied: any write acknowledged since
        // the read (update, set, touch) or a destroy makes this match nothing. With locks,
        // we hold `from`'s, which every write to it but `destroy` takes, so it is as read
        // unless destroyed: delete it by `_id` alone (FerretDB's fast path).
        let original_filter = if self.locks.is_some() {
            doc! { "_id": from.expose() }
        } else {
            original
        };
        let removed = self
            .collection
            .delete_one(original_filter)
            .await
            .map_err(backend_error)?;
        if removed.deleted_count == 1 {
            return Ok(Attempt::Done(Rename::Moved));
        }
        // Take the copy back (only ours, as copied) and let the caller read again: the
        // acknowledged write stays under `from`, a destroyed session stays destroyed. (With
        // locks only reached after a destroy; this whole-document filter scans.)
        self.collection
            .delete_one(copy)
            .await
            .map_err(backend_error)?;
        Ok(Attempt::Changed)
    }

    /// Deletes the documents matching `filter`. With locks, each one under its own lock and
    /// only if it still matches (`matches`, the same condition checked here on the document
    /// read by `_id`), since FerretDB's `deleteMany` deletes what matched when it looked,
    /// even if it was rewritten since; the read and the delete filter on `_id` alone, so
    /// only the one `find` scans. `skip_busy`: leave locked documents for later.
    /// Returns how many it deleted and how many the `find` matched.
    async fn delete_matching<M>(
        &self,
        filter: Document,
        matches: M,
        skip_busy: bool,
    ) -> Result<(u64, u64)>
    where
        M: Fn(&Document, DateTime) -> bool + Clone + Send + Sync + 'static,
    {
        if self.locks.is_none() {
            let result = self
                .collection
                .delete_many(filter)
                .await
                .map_err(backend_error)?;
            return Ok((result.deleted_count, result.deleted_count));
        }
        let ids: Vec<Document> = self
            .collection
            .find(filter)
            .projection(doc! { "_id": 1 })
            .await
            .map_err(backend_error)?
            .try_collect()
            .await
            .map_err(backend_error)?;
        let mut deleted = 0;
        let matched = ids.len() as u64;
        for found in ids {
            let Ok(id) = found.get_str("_id") else {
                continue;
            };
            let (owned, matches) = (id.to_owned(), matches.clone());
            let delete = move |store: MongoStore| async move {
                store.delete_by_id_if(&owned, matches).await
            };
            let done = if skip_busy {
                self.try_locked(id, delete).await?.unwrap_or(false)
            } else {
                self.locked(id, delete).await?
            };
            deleted += u64::from(done);
        }
        Ok((deleted, matched))
    }

    /// `delete_expired`: expired documents (locked ones are left for the next purge), then
    /// the leases of writers that crashed.
    pub(crate) async fn purge(&self) -> Result<u64> {
        let live = self.is_live_fn();
        let (removed, _) = self
            .delete_matching(
                self.expired_filter(now_bson()),
                move |document, now| !live(document, now),
                true,
            )
            .await?;
        self.purge_stale_locks().await?;
        Ok(removed)
    }

    /// `destroy_by_owner`: every live document of `owner` (whatever its version, so a busy
    /// session goes too), pass after pass until one finds none left.
    ///
    /// With locks, it holds the owner's lock ([`owner_lock`]) throughout, and so does every
    /// rename of one of the owner's sessions while it moves it: no session of the owner is
    /// half moved (copy and original) or moves while the passes run, so the first finds
    /// every session of the owner that lives throughout the call, each under one id, and
    /// deletes it under its own lock. The count is then the number of sessions ended.
    ///
    /// Without locks (MongoDB), each pass is one `deleteMany`; a rename inserts its copy
    /// before it deletes the original, so a session moved out of one pass's sight is
    /// usually found by the next (a `deleteMany` is not a snapshot there: see the crate
    /// docs).
    pub(crate) async fn revoke(&self, owner: &str) -> Result<u64> {
        if self.locks.is_none() {
            return self.revoke_passes(owner).await;
        }
        let name = owner.to_owned();
        self.locked(&owner_lock(owner), move |store| async move {
            store.revoke_passes(&name).await
        })
        .await
    }

    /// The passes of [`Self::revoke`].
    async fn revoke_passes(&self, owner: &str) -> Result<u64> {
        if self.format == Format::ExpressSession {
            return self.express_revoke_passes(owner).await;
        }
        let mut removed = 0;
        for _ in 0..REVOKE_PASSES {
            let name = owner.to_owned();
            let owned_and_live = move |document: &Document, now: DateTime| {
                is_live(document, now)
                    && matches!(document.get("owner"), Some(Bson::String(o)) if *o == name)
            };
            let (deleted, found) = self
                .delete_matching(
                    doc! { "owner": owner, "expires_at": { "$gt": now_bson() } },
                    owned_and_live,
                    false,
                )
                .await?;
            removed += deleted;
            if found == 0 {
                break;
            }
        }
        Ok(removed)
    }
}

/// What one attempt of a rename came to.
enum Attempt {
    /// The rename's outcome.
    Done(Rename),
    /// The source changed (or went) between the read and the move: read it again.
    Changed,
    /// The source's owner's lock was busy: try again, taking it first.
    OwnerBusy(String),
}

/// The key of the lease lock of `owner`'s sessions as a whole, which `destroy_by_owner`
/// holds throughout and a rename of one of them holds while it moves it (with locks). A
/// session id never holds a `:`, so it is never a session's key.
fn owner_lock(owner: &str) -> String {
    format!("owner:{owner}")
}

/// The version a `set` stores (one more than the larger of the live stored version and the
/// caller's), and `document` carrying it.
fn versioned(
    id: &SessionId,
    caller: u64,
    live: Option<&Document>,
    mut document: Document,
) -> Result<(u64, Document)> {
    let stored = live.and_then(version_of).map_or(0, |v| v as u64);
    let version = Record::version_after(id, stored.max(caller))?;
    // At most Record::MAX_VERSION (2^53 - 1): fits an Int64.
    document.insert("version", version as i64);
    Ok((version, document))
}

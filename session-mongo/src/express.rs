//! The express-session format ([`Format::ExpressSession`]): each session stored as
//! [connect-mongo] stores it, so an express app on connect-mongo and a Rust service share
//! sessions. See the crate docs, "Sharing sessions with express-session", for what is
//! stored and promised; this module holds the calls that differ from the native format.
//!
//! Every write to an existing session is a compare-and-swap on the document as it was read:
//! its filter holds the exact `session` string and `expires` date read (and, for a session
//! read live, `expires > now`), so a Node write or touch landing in between makes it match
//! nothing, and the write reads again. On FerretDB ([`WriteGuard::Locks`]) the read and the
//! write run under the session's lease lock, as in the native format.
//!
//! [connect-mongo]: https://www.npmjs.com/package/connect-mongo
//! [`WriteGuard::Locks`]: crate::WriteGuard::Locks

use futures::TryStreamExt as _;
use mongodb::bson::{Bson, DateTime, Document, doc};
use session_core::express::object;
use session_core::{
    Error, MAX_ID_ATTEMPTS, Record, Result, ScanCursor, ScanPage, SessionId, from_unix_millis, now,
    unix_millis,
};
use time::Duration;

use crate::document::now_bson;
use crate::errors::{backend_error, is_duplicate_key, write_error};
use crate::store::{Found, MongoStore};

/// What a session document holds: this crate's own document ([`Format::Native`], the
/// default), or connect-mongo's ([`Format::ExpressSession`]), shared with an express app.
///
/// # The express-session format
///
/// **Pair it with** connect-mongo (6.x) on the same database and collection
/// (`collectionName`, default `sessions`, as here), its default `stringify: true`, no
/// `serialize`/`unserialize`/`crypto`/`transformId`; express-session's cookie secrets go to
/// [`session_core::SignedCookie`] (same cookie name, `connect.sid` by default). Expiry: on
/// MongoDB either side's TTL index on `expires` does (connect-mongo's `autoRemove:
/// 'native'`, or [`ExpiryMode::Native`](crate::ExpiryMode) here, which creates the same
/// index, [`CONNECT_MONGO_TTL_INDEX`]); FerretDB 1.x has no TTL indexes, so there the Node
/// app uses `autoRemove: 'interval'` (or `'disabled'`) and this store
/// [`ExpiryMode::Interval`](crate::ExpiryMode) (or both leave it to one of them). In the
/// other modes this store creates no index on `expires` (a plain one under connect-mongo's
/// name would make its `createIndex` fail), so on MongoDB its purges and counts scan.
///
/// **The document** is connect-mongo's: `_id` the session id, `expires` a date (the truth
/// for both sides: connect-mongo's `touch` moves only it, and this store's does the same),
/// `session` express-session's session object as a JSON string, the same value
/// session-redis keeps in its express-session format ([`session_core::express::object`]):
///
/// ```json
/// {"_id": "<sid>", "expires": ISODate("2026-11-23T13:09:21.835Z"),
///  "session": "{\"cookie\":{\"originalMaxAge\":3600000,\"expires\":\"2026-11-23T13:09:21.835Z\",...},\"user\":\"alice\",
///              \"__session_stores\":{\"version\":3,\"created_at\":..,\"owner\":\"u1\",\"digest\":\"<40 hex>\"}}"}
/// ```
///
/// - The `cookie` object belongs to the store, hidden from [`Record::data`]; a Rust write
///   keeps the stored one (Node's `maxAge`, `domain`...) with its `expires` set to the
///   record's expiry, unless the caller changed [`Record::cookie`]. A session Rust creates
///   gets a cookie for its remaining lifetime (`httpOnly`, path `/`, `sameSite: lax`).
/// - This store's metadata (version, created_at, deadline, owner) rides in the session
///   object's `__session_stores` field, which express-session carries back unchanged, sealed
///   by a SHA-1 digest of the value. A session Node created gets it on its first read here
///   (a compare-and-swap on the value read, so `created_at` stays what it was first seen
///   as). Fields Rust leaves alone go back byte for byte as Node wrote them.
/// - Other fields of the document (connect-mongo's `lastModified` of `touchAfter`, the
///   `createdAt` / `updatedAt` of `timestamps`) are kept: writes `$set` `session` and
///   `expires` only, and set `lastModified` to now where the document has one.
/// - A document without `expires` lives forever for connect-mongo; here it reads as
///   expiring at its cookie's `expires`, or [`CONNECT_MONGO_TTL`] from now.
/// - A document that is not connect-mongo's (`session` not a string holding an
///   express-session object: `stringify: false` objects included, malformed metadata) is
///   an [`Error::Decode`] naming the id. One whose `expires` is not a date (null, a
///   string) is expired, as connect-mongo's filter (`$exists: false` or `$gt: now`) judges
///   it: a read finds nothing, and the purge, which removes dates only, leaves it.
///
/// **Concurrency.** Every Rust write to an existing session is a compare-and-swap on the
/// document as read: its filter holds the exact `session` string and `expires` read (and
/// `expires > now` for a session read live). `update` compares versions first: the sealed
/// metadata's, or, once Node rewrote the value, one derived from its bytes (2^52 and up), so
/// a write based on a read from before a Node save fails with a conflict and
/// [`session_core::modify`] applies its change on top of Node's; a Node touch in between
/// only makes the write read again. A destroyed session is never written back (the filter
/// finds nothing). Node's own writes stay last-writer-wins (connect-mongo upserts).
/// A version alone does not name a value: when Node saves a stale copy of a value this
/// store sealed, byte for byte (a request that read it before a Rust write saves it
/// unchanged: express-session's `resave: true` with a browser-session cookie, whose
/// `expires` stays null), that old version is stored again and two Rust writers can each
/// write the next one. So a record read as a sealed value also expects that value's seal
/// ([`object::read_seal`], advanced by each write through the record): an `update` never
/// succeeds over a value it did not read. A record the caller built checks the version
/// only. Node's stale save itself still overwrites the Rust write it did not read, as any
/// Node save does; `resave: false` (express-session's advice) avoids it.
/// On FerretDB 1.x, whose filtered writes are a find and then a write by `_id`, the Rust
/// writers take the lease locks of [`WriteGuard::Locks`](crate::WriteGuard) as in the
/// native format, but Node takes none: a Node write landing inside FerretDB's own
/// find-then-write of a Rust write can still be overwritten there. MongoDB applies the
/// filter and the write as one.
///
/// **Owners.** The owner lives inside the session string, so `list_by_owner` and
/// `destroy_by_owner` walk every live document (one `find`, each value decoded); with
/// [`MongoConfig::owner_path`](crate::MongoConfig) (`"passport.user"`) the owner is the
/// value Node keeps there, so the sessions Node created are found too. A document that
/// doesn't decode is nobody's. The cost grows with the number of sessions; the call's
/// timeout must allow it.
///
/// Not in this format: the expiry feed ([`session_core::ExpiryFeed`], an
/// [`Error::Config`]) and connect-mongo's object form (`stringify: false`).
///
/// ```no_run
/// # async fn demo() -> session_core::Result<()> {
/// use session_mongo::{ExpiryMode, Format, MongoConfig, MongoStore};
///
/// // The sessions of an express app on connect-mongo (its defaults: collection `sessions`,
/// // `stringify: true`), on FerretDB (no TTL indexes: the Node app uses
/// // `autoRemove: 'interval'`, this store prunes too).
/// let config = MongoConfig {
///     format: Format::ExpressSession,
///     owner_path: Some("passport.user".into()),
///     expiry: ExpiryMode::Interval(std::time::Duration::from_secs(600)),
///     ..MongoConfig::default()
/// };
/// let store = MongoStore::connect("mongodb://127.0.0.1:27017/app", config).await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// This crate's document (`data`, `expires_at`, `version`...): the default.
    #[default]
    Native,
    /// connect-mongo's document `{_id, expires, session}` with `session` express-session's
    /// session object as a JSON string (connect-mongo's default `stringify: true`): see the
    /// crate docs, "Sharing sessions with express-session".
    ExpressSession,
}

/// connect-mongo's default `ttl` (14 days): the expiry of a session whose document has no
/// `expires` and whose cookie has none either (such a document never expires for
/// connect-mongo; a read here gives it this long from now).
pub const CONNECT_MONGO_TTL: Duration = Duration::days(14);

/// The name of the TTL index on `expires` that [`ExpiryMode::Native`](crate::ExpiryMode)
/// creates in the express-session format: the name connect-mongo's own
/// (`autoRemove: 'native'`) gets, so both create the same index.
pub const CONNECT_MONGO_TTL_INDEX: &str = "expires_1";

const SESSION: &str = "session";
const EXPIRES: &str = "expires";
const LAST_MODIFIED: &str = "lastModified";

/// Whether a connect-mongo document is live at `now`, as connect-mongo judges it
/// (`{$or: [{expires: {$exists: false}}, {expires: {$gt: now}}]}`): no `expires` lives
/// forever, a date lives until it passes, anything else (null, a string) never matches.
pub(crate) fn is_live(document: &Document, now: DateTime) -> bool {
    match document.get(EXPIRES) {
        None => true,
        Some(Bson::DateTime(at)) => *at > now,
        Some(_) => false,
    }
}

/// The server-side filter of [`is_live`].
pub(crate) fn live_filter(now: DateTime) -> Document {
    doc! { "$or": [ { EXPIRES: { "$exists": false } }, { EXPIRES: { "$gt": now } } ] }
}

/// The filter of the expired documents (a date at or before `now`).
pub(crate) fn expired_filter(now: DateTime) -> Document {
    doc! { EXPIRES: { "$lte": now } }
}

/// The filter matching the document under `id` only while its `session` and `expires` are
/// as in `read` (and, with `live_at`, `expires` is after it): the compare-and-swap of every
/// write. Whatever their type, so a corrupt or expired document is replaced only as read.
fn as_read(id: &str, read: &Document, live_at: Option<DateTime>) -> Document {
    let mut filter = doc! { "_id": id };
    for field in [SESSION, EXPIRES] {
        let condition = match read.get(field) {
            Some(value) => {
                let mut condition = doc! { "$eq": value.clone() };
                if field == EXPIRES
                    && let Some(now) = live_at
                {
                    condition.insert("$gt", now);
                }
                condition
            }
            None => doc! { "$exists": false },
        };
        filter.insert(field, condition);
    }
    filter
}

/// The `$set` of a Rust write: the session string and its expiry, and `lastModified` when
/// the document has one (connect-mongo's `touchAfter` judges its touches by it). Other
/// fields Node keeps (connect-mongo's `timestamps`) are left as they are.
fn set_of(value: String, expires_at: time::OffsetDateTime, read: Option<&Document>) -> Document {
    let mut set = doc! {
        SESSION: value,
        EXPIRES: DateTime::from_millis(unix_millis(expires_at)),
    };
    if read.is_some_and(|document| document.contains_key(LAST_MODIFIED)) {
        set.insert(LAST_MODIFIED, now_bson());
    }
    doc! { "$set": set }
}

/// The document under `id` as a read found it.
enum Current {
    /// None.
    Missing,
    /// One that has expired (by `expires`, or the record's deadline).
    Gone(Document),
    /// A live one that is not an express-session session (with the reason).
    Corrupt(Document, Error),
    /// A live session.
    Live(Document, Box<Record>),
}

impl MongoStore {
    /// The record `document` (a connect-mongo document) holds, or [`Error::Decode`]: its
    /// `expires` is the truth for both sides (connect-mongo's touch moves only it), and the
    /// owner is the one at the owner path when the store has one.
    pub(crate) fn express_decode(&self, id: &SessionId, document: &Document) -> Result<Record> {
        let bad = |why: &str| Error::decode(id, format!("not a connect-mongo document: {why}"));
        let raw = match document.get(SESSION) {
            Some(Bson::String(raw)) => raw,
            Some(Bson::Document(_)) => {
                return Err(bad(
                    "`session` is an object (connect-mongo's `stringify: false`), which this \
                     store does not read: use connect-mongo's default `stringify: true`",
                ));
            }
            Some(other) => {
                return Err(bad(&format!(
                    "`session` is a BSON {:?}, expected a string",
                    other.element_type()
                )));
            }
            None => return Err(bad("no `session` field")),
        };
        let expires = match document.get(EXPIRES) {
            None => None,
            Some(Bson::DateTime(at)) => Some(
                from_unix_millis(at.timestamp_millis())
                    .ok_or_else(|| bad("`expires` is out of range"))?,
            ),
            Some(other) => {
                return Err(bad(&format!(
                    "`expires` is a BSON {:?}, expected a date",
                    other.element_type()
                )));
            }
        };
        let mut record = object::decode(id, raw.as_bytes(), expires, CONNECT_MONGO_TTL)?;
        if expires.is_none() && record.is_expired() {
            // connect-mongo keeps a document without `expires` forever; its stale cookie
            // date must not end it here.
            record.set_expires_at(now() + CONNECT_MONGO_TTL);
        }
        if let Some(owner) = self
            .owner_path
            .as_ref()
            .and_then(|path| path.owner_in(record.data()))
        {
            record.set_owner(Some(owner));
        }
        Ok(record)
    }

    /// Reads the document under `id` by `_id` alone (FerretDB's fast path) and judges it.
    async fn current(&self, id: &SessionId) -> Result<Current> {
        let now = now_bson();
        let found = self
            .collection
            .find_one(doc! { "_id": id.expose() })
            .await
            .map_err(backend_error)?;
        let Some(document) = found else {
            return Ok(Current::Missing);
        };
        if !is_live(&document, now) {
            return Ok(Current::Gone(document));
        }
        Ok(match self.express_decode(id, &document) {
            Ok(record) if record.is_expired() => Current::Gone(document),
            Ok(record) => Current::Live(document, Box::new(record)),
            Err(err) => Current::Corrupt(document, err),
        })
    }

    /// `get`: the live session, stamped with this store's metadata the first time it is
    /// read when Node created it (so its `created_at` stays what it was first seen as).
    pub(crate) async fn express_get(&self, id: &SessionId) -> Result<Option<Record>> {
        let (document, record) = match self.current(id).await? {
            Current::Missing | Current::Gone(_) => return Ok(None),
            Current::Corrupt(_, err) => return self.options.on_corrupt(Err(err)),
            Current::Live(document, record) => (document, record),
        };
        // `None`: the value has our metadata already.
        let stamped = match document.get(SESSION) {
            Some(Bson::String(raw)) => object::stamp(id, raw.as_bytes(), now())
                .and_then(|stamped| String::from_utf8(stamped).ok()),
            _ => None,
        };
        let Some(stamped) = stamped else {
            return Ok(Some(*record));
        };
        // The stamp is a compare-and-swap on the document read (a Node write in between
        // wins, and the next read stamps that); with locks, under the session's lock, taken
        // without waiting: a read never queues behind a writer.
        let (key, read, value) = (id.clone(), document.clone(), stamped.clone());
        let written = self
            .try_locked(id.expose(), move |store| async move {
                let filter = as_read(key.expose(), &read, Some(now_bson()));
                let result = store
                    .collection
                    .update_one(filter, doc! { "$set": { SESSION: value } })
                    .await
                    .map_err(backend_error)?;
                Ok(result.matched_count == 1)
            })
            .await?
            .unwrap_or(false);
        if !written {
            return Ok(Some(*record));
        }
        let mut document = document;
        document.insert(SESSION, stamped);
        let record = self
            .options
            .on_corrupt(self.express_decode(id, &document))?;
        Ok(record.filter(|record| !record.is_expired()))
    }

    /// The document a Rust write of `record`'s next version stores (`insert`), with its
    /// version.
    fn express_document(&self, record: &Record) -> Result<(Document, u64)> {
        let encoded = object::encode(record, &self.options)?;
        let value = String::from_utf8(encoded.value).map_err(|err| Error::Encode {
            id: record.id().clone(),
            reason: err.to_string(),
        })?;
        let document = doc! {
            "_id": record.id().expose(),
            EXPIRES: DateTime::from_millis(unix_millis(record.expires_at())),
            SESSION: value,
        };
        Ok((document, encoded.version))
    }

    /// `record` encoded at its version + 1, keeping `stored_cookie` (the cookie object of
    /// the session as read, which Node may have set: its `maxAge`, `domain`...) unless the
    /// caller changed the cookie; `expires` follows the record either way.
    fn express_value(
        &self,
        record: &Record,
        stored_cookie: Option<&session_core::Data>,
    ) -> Result<String> {
        let mut encoded = object::encode(record, &self.options)?;
        if encoded.cookie_end.is_some()
            && let Some(cookie) = stored_cookie
            && record.cookie() != Some(cookie)
        {
            let mut kept = record.clone();
            kept.set_cookie(Some(cookie.clone()));
            encoded = object::encode(&kept, &self.options)?;
        }
        String::from_utf8(encoded.value).map_err(|err| Error::Encode {
            id: record.id().clone(),
            reason: err.to_string(),
        })
    }

    /// `insert`.
    pub(crate) async fn express_insert(&self, record: &mut Record) -> Result<bool> {
        let (document, version) = self.express_document(record)?;
        let seal = document
            .get_str(SESSION)
            .ok()
            .and_then(|value| object::written_seal(value.as_bytes()));
        let inserted = self
            .timed("insert", self.insert_document(record.id(), document, true))
            .await?;
        if inserted {
            record.set_version(version);
            object::set_written_seal(record, seal);
        }
        Ok(inserted)
    }

    /// `set`: last writer wins, at one more than the larger of the stored version (live)
    /// and the caller's; returns it and the written value's seal.
    pub(crate) async fn express_set(&self, record: &Record) -> Result<(u64, Option<object::Seal>)> {
        let record = record.clone();
        let key = record.id().expose().to_owned();
        self.locked(&key, move |store| async move {
            let id = record.id().clone();
            for _ in 0..MAX_ID_ATTEMPTS {
                let current = store.current(&id).await?;
                let mut next = record.clone();
                let (read, live, cookie) = match &current {
                    Current::Missing => (None, false, None),
                    Current::Gone(read) | Current::Corrupt(read, _) => (Some(read), false, None),
                    Current::Live(read, stored) => {
                        next.set_version(record.version().max(stored.version()));
                        (Some(read), true, stored.cookie())
                    }
                };
                let value = store.express_value(&next, cookie)?;
                let seal = object::written_seal(value.as_bytes());
                let version = next.version() + 1;
                let set = set_of(value, next.expires_at(), read);
                let written = match read {
                    Some(read) => {
                        let filter = as_read(id.expose(), read, live.then(now_bson));
                        let result = store.collection.update_one(filter, set).await;
                        result.map_err(|err| write_error(&id, err))?.matched_count == 1
                    }
                    None => {
                        let mut document = set.get_document("$set").cloned().unwrap_or_default();
                        document.insert("_id", id.expose());
                        match store.collection.insert_one(document).await {
                            Ok(_) => true,
                            Err(err) if is_duplicate_key(&err) => false,
                            Err(err) => return Err(write_error(&id, err)),
                        }
                    }
                };
                if written {
                    return Ok((version, seal));
                }
            }
            Err(Error::Conflict { id })
        })
        .await
    }

    /// `update`: a compare-and-swap on the version ([`object::version_of`]: the sealed
    /// metadata's, or one of the bytes when Node wrote the value) and, for a record read as
    /// a sealed value, on that very value ([`object::is_value_read`]: a stale Node save
    /// brings an old version back); a Node touch in between (the same value, another
    /// `expires`) is read again, not a conflict. Returns the written value's seal too.
    pub(crate) async fn express_update(
        &self,
        record: &Record,
    ) -> Result<(Found, Option<object::Seal>)> {
        let record = record.clone();
        let key = record.id().expose().to_owned();
        self.locked(&key, move |store| async move {
            let id = record.id().clone();
            for _ in 0..MAX_ID_ATTEMPTS {
                let (read, stored) = match store.current(&id).await? {
                    Current::Missing | Current::Gone(_) => return Ok((Found::Missing, None)),
                    Current::Corrupt(..) => return Ok((Found::Corrupt, None)),
                    Current::Live(read, stored) => (read, stored),
                };
                if !object::is_value_read(&record, &stored) {
                    return Ok((Found::Missing, None));
                }
                let value = store.express_value(&record, stored.cookie())?;
                let seal = object::written_seal(value.as_bytes());
                let set = set_of(value, record.expires_at(), Some(&read));
                let filter = as_read(id.expose(), &read, Some(now_bson()));
                let result = store.collection.update_one(filter, set).await;
                if result.map_err(|err| write_error(&id, err))?.matched_count == 1 {
                    return Ok((Found::Written, seal));
                }
            }
            Err(Error::Conflict { id })
        })
        .await
    }

    /// `touch`: moves `expires` only, as connect-mongo's touch does (the session string,
    /// its `cookie.expires` included, stays), capped at the metadata's deadline.
    pub(crate) async fn express_touch(&self, id: &SessionId, wanted: DateTime) -> Result<Found> {
        let (id, key) = (id.clone(), id.expose().to_owned());
        self.locked(&key, move |store| async move {
            for _ in 0..MAX_ID_ATTEMPTS {
                let (read, stored) = match store.current(&id).await? {
                    Current::Missing | Current::Gone(_) => return Ok(Found::Missing),
                    Current::Corrupt(..) => return Ok(Found::Corrupt),
                    Current::Live(read, stored) => (read, stored),
                };
                let target = match stored.deadline() {
                    Some(deadline) => {
                        DateTime::from_millis(unix_millis(deadline).min(wanted.timestamp_millis()))
                    }
                    None => wanted,
                };
                let mut set = doc! { EXPIRES: target };
                if read.contains_key(LAST_MODIFIED) {
                    set.insert(LAST_MODIFIED, now_bson());
                }
                let filter = as_read(id.expose(), &read, Some(now_bson()));
                let result = store
                    .collection
                    .update_one(filter, doc! { "$set": set })
                    .await
                    .map_err(backend_error)?;
                if result.matched_count == 1 {
                    return Ok(Found::Written);
                }
            }
            Err(Error::Conflict { id })
        })
        .await
    }

    /// Every live session whose owner is `owner` (the owner path's, else the metadata's),
    /// with the document it was read as: a walk of the whole collection, since the owner
    /// lives inside the session string. A document that doesn't decode is nobody's.
    async fn express_owned(&self, owner: &str) -> Result<Vec<(Record, Document)>> {
        let documents: Vec<Document> = self
            .collection
            .find(live_filter(now_bson()))
            .await
            .map_err(backend_error)?
            .try_collect()
            .await
            .map_err(backend_error)?;
        let mut found = Vec::new();
        for document in documents {
            let Some(id) = document_id(&document) else {
                continue;
            };
            if let Ok(record) = self.express_decode(&id, &document)
                && !record.is_expired()
                && record.owner() == Some(owner)
            {
                found.push((record, document));
            }
        }
        Ok(found)
    }

    /// `list_by_owner`.
    pub(crate) async fn express_list(&self, owner: &str) -> Result<Vec<Record>> {
        let found = self.express_owned(owner).await?;
        Ok(found.into_iter().map(|(record, _)| record).collect())
    }

    /// The passes of `destroy_by_owner` (the caller holds the owner's lock when locking):
    /// each deletes every session the walk finds naming the owner, only as read (with
    /// locks: under its lock, read again by `_id`); pass after pass until one finds none.
    pub(crate) async fn express_revoke_passes(&self, owner: &str) -> Result<u64> {
        let mut removed = 0;
        for _ in 0..crate::writes::REVOKE_PASSES {
            let found = self.express_owned(owner).await?;
            if found.is_empty() {
                break;
            }
            for (record, document) in found {
                let id = record.id().clone();
                let deleted = if self.locks.is_some() {
                    let name = owner.to_owned();
                    let key = id.clone();
                    self.locked(id.expose(), move |store| async move {
                        let check = store.clone();
                        let raw = key.expose().to_owned();
                        store
                            .delete_by_id_if(&raw, move |document, now| {
                                is_live(document, now)
                                    && check.express_decode(&key, document).is_ok_and(|r| {
                                        !r.is_expired() && r.owner() == Some(name.as_str())
                                    })
                            })
                            .await
                    })
                    .await?
                } else {
                    let filter = as_read(id.expose(), &document, None);
                    let result = self
                        .collection
                        .delete_one(filter)
                        .await
                        .map_err(backend_error)?;
                    result.deleted_count == 1
                };
                removed += u64::from(deleted);
            }
        }
        Ok(removed)
    }

    /// `count`: the live documents, as connect-mongo judges them.
    pub(crate) async fn express_count(&self) -> Result<u64> {
        self.collection
            .count_documents(live_filter(now_bson()))
            .await
            .map_err(backend_error)
    }

    /// One page of a scan: live documents along `_id`.
    pub(crate) async fn express_scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        let now = now_bson();
        let mut filter = live_filter(now);
        filter.insert("_id", doc! { "$gt": cursor.as_str() });
        let documents: Vec<Document> = self
            .collection
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(backend_error)?
            .try_collect()
            .await
            .map_err(backend_error)?;
        let full = documents.len() >= limit;
        let (mut records, mut corrupt, mut last) = (Vec::new(), 0, None);
        for document in documents {
            let Some(Bson::String(raw)) = document.get("_id") else {
                continue;
            };
            last = Some(raw.clone());
            if !is_live(&document, now) {
                continue;
            }
            match SessionId::parse(raw).map(|id| self.express_decode(&id, &document)) {
                Ok(Ok(record)) if record.is_expired() => {}
                Ok(Ok(record)) => records.push(record),
                _ => corrupt += 1,
            }
        }
        let next = last.filter(|_| full).map(ScanCursor::from_backend);
        Ok(ScanPage::new(records, corrupt, next))
    }
}

/// The session id a document is stored under, when its `_id` is one.
fn document_id(document: &Document) -> Option<SessionId> {
    match document.get("_id") {
        Some(Bson::String(raw)) => SessionId::parse(raw).ok(),
        _ => None,
    }
}

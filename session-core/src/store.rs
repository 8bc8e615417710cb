//! The store trait every backend implements, and the promises every backend keeps.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::record::Record;

/// How many fresh ids [`SessionStore::create`] and [`SessionStore::cycle_id`] try before
/// giving up. With 192-bit ids a single collision already means a broken random source.
pub const MAX_ID_ATTEMPTS: usize = 8;

/// How long [`SessionStore::cycle_id`] waits before asking again after a failure that leaves
/// it unknown whether the session moved (a lost reply).
const RESOLVE_PAUSE: Duration = Duration::from_millis(20);

/// What [`SessionStore::rename`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    /// The record now lives under the new id only.
    Moved,
    /// There was no live record under the old id; nothing changed.
    SourceMissing,
    /// The new id is taken by another live record (or is the old id itself, and that record
    /// is live); nothing changed.
    TargetTaken,
}

/// A session store. Every method means the same on every backend; the conformance suite
/// (feature `conformance`) checks each promise below, and the
/// [store author's guide](crate::guide) says how to keep them.
///
/// # Liveness
///
/// A record is *live* at time `t` when `t < expires_at` (milliseconds, by the application's
/// clock, [`now`](crate::now)): at `expires_at` exactly it has expired. A record that is not
/// live is gone for every method, whether or not the backend has removed it yet: `get`
/// returns `None`, `update` conflicts, `touch` returns `false`, `rename` reports
/// [`Rename::SourceMissing`], `insert` may take its id, `list_by_owner`, `destroy_by_owner`
/// and `count` leave it out. Hosts sharing a store should keep their clocks in sync (NTP):
/// a host whose clock runs ahead sees sessions end early.
///
/// # What a write stores
///
/// Every field of the record: data, owner, `created_at`, `expires_at`, `deadline` and the
/// version. `expires_at` is never after `deadline` ([`Record`] caps it). A write with data
/// nested deeper than [`codec::MAX_DATA_DEPTH`](crate::codec::MAX_DATA_DEPTH), or larger
/// than [`StoreOptions::max_payload_bytes`](crate::StoreOptions), fails and writes nothing.
/// Whatever a write accepted reads back equal (`get` returns a record `==` to the one
/// written, at its new version).
///
/// # Versions
///
/// A record that was never stored has version 0. `insert` stores version 1 (the record's
/// version + 1); `update` stores the version it compared + 1; `set` stores one more than
/// the larger of the live stored version and the record's, so a version is never reused
/// while a session lives: a compare-and-swap against any version read before a write
/// fails. `touch` and `rename` keep the version. Every successful write advances the
/// caller's record to the stored version; a failed one leaves it as it was. Versions stop
/// at [`Record::MAX_VERSION`] (a write past it is an [`Error::Encode`]).
///
/// # Atomicity and concurrency
///
/// Every method on one session (`get`, `insert`, `set`, `update`, `touch`, `destroy`) is
/// atomic: concurrent calls behave as if they ran one at a time, each at some instant between
/// its call and its return. So parallel requests using `update` (or [`modify`](crate::modify))
/// never lose each other's writes, and a session that `destroy`, `rename`, `destroy_by_owner`
/// or its expiry ended never comes back through `update`, `touch` or `rename`. (`set` and
/// `insert` write whatever they are given: they are how a session starts.)
///
/// `destroy_by_owner` is complete: it removes every session of the owner that lives
/// throughout the call, one kept busy by concurrent writes or being moved by a concurrent
/// `rename` included. Where the backend can, `rename`, `list_by_owner` and
/// `destroy_by_owner` are atomic too, acting as of one instant (memory, PostgreSQL, Redis on
/// one server); each backend crate says where it is weaker: a Redis Cluster, whose keys
/// live on different nodes, and MongoDB, where a move is two writes (the session shows under
/// both ids while it moves) and a revocation goes session by session.
///
/// # Failures
///
/// An error from a write means it may or may not have happened: its reply may have been lost.
/// A store never sends a command again by itself (a client library's automatic retry could
/// apply a compare-and-swap twice); the caller decides, and [`Error::is_retryable`] says
/// whether trying again may help. Every call ends within
/// [`StoreOptions::timeout`](crate::StoreOptions) with [`Error::Timeout`] at the latest.
///
/// # Corrupt records
///
/// A stored record that no longer decodes is left as it is for every method but `set`
/// (which overwrites it) and `destroy` (which removes it): `get` returns [`Error::Decode`]
/// naming it (or `None` under [`CorruptPolicy::TreatAsMissing`](crate::CorruptPolicy)),
/// `insert` returns `false`, `update` and `rename` return [`Error::Decode`] or report it as
/// they would a missing session ([`Error::Conflict`], [`Rename::SourceMissing`]), `touch`
/// returns [`Error::Decode`] or `false`. `count` may include it.
#[async_trait]
pub trait SessionStore: Send + Sync + Debug {
    /// The live record under `id`, or `None` when missing or expired.
    async fn get(&self, id: &SessionId) -> Result<Option<Record>>;

    /// Stores `record` at its version + 1 (1 for a new record) only if its id is free (no
    /// live record; an expired one gives way); atomic on the server. Returns `false`, changing nothing, when the id is taken (also by a corrupt
    /// record). Prefer [`Self::create`].
    async fn insert(&self, record: &mut Record) -> Result<bool>;

    /// Stores `record` whatever is there (a live record, an expired or corrupt one, or
    /// nothing): last writer wins, as in express-session and tower-sessions. The stored
    /// version is one more than the larger of the live stored version and the record's, so
    /// a compare-and-swap by a request that read the session before this write fails. Use
    /// [`Self::update`] when concurrent requests must not lose writes.
    async fn set(&self, record: &mut Record) -> Result<()>;

    /// Compare-and-swap: stores `record` only if the live stored version equals
    /// `record.version()`; then the stored version is that plus one. Otherwise returns
    /// [`Error::Conflict`] and changes nothing, also when the session is missing, expired,
    /// destroyed or was cycled away: an update never resurrects a session.
    async fn update(&self, record: &mut Record) -> Result<()>;

    /// Sets a live session's expiry to `expires_at`, capped at its deadline, without
    /// rewriting its data or changing its version or creation time. It may shorten the
    /// expiry; a time not after now ends the session. Returns whether a live session was
    /// there; never resurrects.
    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool>;

    /// Removes the session (live, expired or corrupt); removing a missing session is not an
    /// error.
    async fn destroy(&self, id: &SessionId) -> Result<()>;

    /// Moves the live record under `from` to `to`, keeping every field (data, owner,
    /// `created_at`, `expires_at`, deadline, version). Nothing changes when `from` has no
    /// live record ([`Rename::SourceMissing`]) or `to` has one ([`Rename::TargetTaken`];
    /// `rename(id, id)` of a live session is `TargetTaken`). A write to `from` acknowledged
    /// before the move is never lost, and `from` is dead afterwards. Prefer
    /// [`Self::cycle_id`].
    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename>;

    /// Removes expired records and returns how many (never a live one). Backends whose
    /// server expires records by itself (Redis, the memory store) return 0.
    async fn delete_expired(&self) -> Result<u64>;

    /// The live sessions whose owner is exactly `owner` (byte for byte: no prefix, case or
    /// Unicode folding), in no particular order.
    ///
    /// Behind [`HashedIds`](crate::HashedIds) the listed records carry their stored
    /// (hashed) ids, which are not usable as cookies.
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>>;

    /// Removes every live session whose owner is exactly `owner` ("log out everywhere"),
    /// including one a concurrent `update` keeps busy or a concurrent `rename` moves, and
    /// returns how many live sessions it removed. A session created while it runs may
    /// survive it.
    async fn destroy_by_owner(&self, owner: &str) -> Result<u64>;

    /// How many live sessions the store holds. May include corrupt records, and sessions
    /// that expired too recently for a backend that expires them by its own clock (Redis)
    /// to have removed them.
    async fn count(&self) -> Result<u64>;

    /// How long one call may take ([`StoreOptions::timeout`](crate::StoreOptions)): the
    /// provided methods that make several calls (`cycle_id`, `limit_owner`) keep to it in total. Override
    /// it: a store built on [`StoreOptions`](crate::StoreOptions) returns its own timeout;
    /// the default returns the library's default timeout, not the one your store was given.
    fn timeout(&self) -> Duration {
        crate::StoreOptions::default().timeout
    }

    /// Stores a new session, never overwriting another: when `record`'s id is taken, it
    /// gets a fresh id and tries again (at most [`MAX_ID_ATTEMPTS`] times).
    async fn create(&self, record: &mut Record) -> Result<()> {
        for _ in 0..MAX_ID_ATTEMPTS {
            if self.insert(record).await? {
                return Ok(());
            }
            record.set_id(SessionId::generate());
        }
        Err(Error::Conflict {
            id: record.id().clone(),
        })
    }

    /// Moves a live session to a fresh id (the defence against session fixation: call it
    /// at login) and returns the new id, or `None` when there was no live session.
    ///
    /// When a move fails in a way that leaves its outcome unknown (a lost reply), it asks
    /// again with the same fresh id, which no one else can know: the session found under it
    /// is the one it moved. So a lost reply never leaves a session under an id the caller
    /// doesn't learn, unless the store stays unreachable for the rest of its
    /// [`timeout`](Self::timeout) (which bounds the whole call); then the error is returned.
    async fn cycle_id(&self, id: &SessionId) -> Result<Option<SessionId>> {
        cycle(self, id).await
    }

    /// Keeps the `keep` newest live sessions of `owner` (by creation time, then version,
    /// then id) and destroys the rest, returning how many it destroyed: "at most N devices;
    /// a new login ends the oldest". Built on the owner index, so it works on every
    /// backend.
    ///
    /// It lists again until at most `keep` remain, so a session that a concurrent
    /// `cycle_id` moved is ended under its new id, and counts only sessions it found live
    /// and ended; when it can't get down to `keep` within the
    /// [`timeout`](Self::timeout), it fails with [`Error::Timeout`] rather than report
    /// success. A store whose rename is two steps (copy,
    /// then retire) lists a session being moved twice, under both ids with one creation
    /// time: a surplus session created at the same instant as a kept one is left for the
    /// next listing, at most half the [`timeout`](Self::timeout) long, so a rotation of the
    /// newest session never costs it its place. Two logins racing may both trim, ending one
    /// more session than needed, never fewer. The whole call keeps to the timeout.
    async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
        limit(self, owner, keep).await
    }
}

/// What `rename(id, id)` means on every backend: [`Rename::TargetTaken`] when `id` has a live
/// record (the target is taken, by that record), else [`Rename::SourceMissing`]. For
/// backends, which call it when `from == to`.
pub async fn rename_onto_itself<S: SessionStore + ?Sized>(
    store: &S,
    id: &SessionId,
) -> Result<Rename> {
    Ok(match store.get(id).await? {
        Some(_) => Rename::TargetTaken,
        None => Rename::SourceMissing,
    })
}

/// [`SessionStore::cycle_id`]: moves to a fresh id; after a failure of unknown outcome, asks
/// again with the same id (see there).
async fn cycle<S: SessionStore + ?Sized>(store: &S, id: &SessionId) -> Result<Option<SessionId>> {
    let deadline = tokio::time::Instant::now() + store.timeout();
    let mut fresh = SessionId::generate();
    // The failure of the last attempt with `fresh`, whose outcome is unknown.
    let mut unknown: Option<Error> = None;
    // Fresh ids an unknown attempt may have left a copy under, while the source lived on.
    let mut leftovers: Vec<SessionId> = Vec::new();
    let mut attempts = 0;
    while attempts < MAX_ID_ATTEMPTS {
        // Every attempt within the call's time: a store whose rename is several calls
        // (a wrapper) would otherwise overrun it.
        let Ok(renamed) = tokio::time::timeout_at(deadline, store.rename(id, &fresh)).await else {
            return Err(unknown.unwrap_or_else(|| overran(store, "cycle_id")));
        };
        match renamed {
            Ok(Rename::Moved) => {
                remove_leftovers(store, &leftovers, deadline).await;
                return Ok(Some(fresh));
            }
            Ok(Rename::SourceMissing) => {
                // An earlier attempt may have moved it before its reply was lost.
                if unknown.is_some()
                    && by(deadline, store, "cycle_id", store.get(&fresh))
                        .await?
                        .is_some()
                {
                    remove_leftovers(store, &leftovers, deadline).await;
                    return Ok(Some(fresh));
                }
                remove_leftovers(store, &leftovers, deadline).await;
                return Ok(None);
            }
            Ok(Rename::TargetTaken) => {
                // Either a real collision, or a copy an unknown attempt left under `fresh`
                // while the source lives on: move to another id; remove the copy after.
                if unknown.take().is_some() {
                    leftovers.push(fresh);
                }
                fresh = SessionId::generate();
                attempts += 1;
            }
            Err(err) if err.is_retryable() && tokio::time::Instant::now() < deadline => {
                unknown = Some(err);
                tokio::time::sleep(RESOLVE_PAUSE).await;
            }
            Err(err) => return Err(err),
        }
    }
    Err(unknown.unwrap_or(Error::Conflict { id: id.clone() }))
}

/// `call`, one step of the provided method `operation`, if it ends by `deadline`.
async fn by<S: SessionStore + ?Sized, T>(
    deadline: tokio::time::Instant,
    store: &S,
    operation: &'static str,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout_at(deadline, call)
        .await
        .unwrap_or_else(|_| Err(overran(store, operation)))
}

/// The error of a provided method that ran out of the store's timeout.
fn overran<S: SessionStore + ?Sized>(store: &S, operation: &'static str) -> Error {
    Error::Timeout {
        backend: "store",
        operation,
        after: store.timeout(),
    }
}

/// Best effort: a copy left under an id nobody knows holds no usable cookie, and expires.
async fn remove_leftovers<S: SessionStore + ?Sized>(
    store: &S,
    leftovers: &[SessionId],
    deadline: tokio::time::Instant,
) {
    for leftover in leftovers {
        if let Err(err) = by(deadline, store, "cycle_id", store.destroy(leftover)).await {
            tracing::warn!(
                session = %leftover.fingerprint(),
                error = %err,
                "could not remove the copy an interrupted cycle_id left; it expires as usual"
            );
        }
    }
}

/// [`SessionStore::limit_owner`]: list, end the oldest, list again until at most `keep`.
async fn limit<S: SessionStore + ?Sized>(store: &S, owner: &str, keep: usize) -> Result<u64> {
    let start = tokio::time::Instant::now();
    let deadline = start + store.timeout();
    // Waiting for a move to finish uses at most half the call's time.
    let patience = start + store.timeout() / 2;
    let mut pause = RESOLVE_PAUSE;
    let mut ended = 0;
    let mut confirmed = false;
    // Until a listing shows at most `keep`: a session a concurrent `cycle_id` moved after the
    // listing is missed under its old id and ended under its new one next time. Bounded by
    // the call's timeout (an error, never an `Ok` with more than `keep` left).
    loop {
        // A listing is a read: one that failed retryably (e.g. a Redis owner index that
        // kept changing under concurrent moves) is asked again while time remains.
        let mut sessions =
            match by(deadline, store, "limit_owner", store.list_by_owner(owner)).await {
                Err(err) if err.is_retryable() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(RESOLVE_PAUSE).await;
                    continue;
                }
                listed => listed?,
            };
        if sessions.len() <= keep {
            // Where a listing is not one instant (a Redis Cluster, MongoDB), a session being
            // moved can be missing from it: a second listing in a row has to agree.
            if confirmed {
                return Ok(ended);
            }
            confirmed = true;
            continue;
        }
        confirmed = false;
        sessions.sort_by(|a, b| {
            (b.created_at(), b.version(), b.id()).cmp(&(a.created_at(), a.version(), a.id()))
        });
        // A session that a rename is moving is listed twice (copy and original, one
        // creation time). Ending one of the two ends it (a rename gives way to a destroy),
        // and counting both would cost another session its place, so a session created at
        // the same instant as a kept one waits for the move to finish; a lasting "twin" is
        // a distinct session created at the same instant, ended once patience runs out.
        let patient = tokio::time::Instant::now() < patience;
        let mut kept: Vec<OffsetDateTime> = Vec::with_capacity(keep);
        let mut twins = false;
        for session in &sessions {
            if patient && kept.contains(&session.created_at()) {
                twins = true;
            } else if kept.len() < keep {
                kept.push(session.created_at());
            } else if end(store, session.id(), deadline).await? {
                ended += 1;
            }
        }
        if twins {
            let left = patience.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause *= 2;
        }
    }
}

/// Ends the session under `id` for [`limit`], saying whether a live one was there: `touch`
/// to a past time ends it atomically and tells (a `destroy` can't: a concurrent move may
/// have taken the session away, and counting that would over-report), then `destroy`
/// removes what is left of it.
async fn end<S: SessionStore + ?Sized>(
    store: &S,
    id: &SessionId,
    deadline: tokio::time::Instant,
) -> Result<bool> {
    let past = crate::now() - time::Duration::seconds(1);
    let was_live = by(deadline, store, "limit_owner", store.touch(id, past)).await?;
    if was_live {
        by(deadline, store, "limit_owner", store.destroy(id)).await?;
    }
    Ok(was_live)
}

macro_rules! forward_store {
    ($($wrapper:ty),*) => {$(
        #[async_trait]
        impl<S: SessionStore + ?Sized> SessionStore for $wrapper {
            async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
                (**self).get(id).await
            }
            async fn insert(&self, record: &mut Record) -> Result<bool> {
                (**self).insert(record).await
            }
            async fn set(&self, record: &mut Record) -> Result<()> {
                (**self).set(record).await
            }
            async fn update(&self, record: &mut Record) -> Result<()> {
                (**self).update(record).await
            }
            async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
                (**self).touch(id, expires_at).await
            }
            async fn destroy(&self, id: &SessionId) -> Result<()> {
                (**self).destroy(id).await
            }
            async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
                (**self).rename(from, to).await
            }
            async fn delete_expired(&self) -> Result<u64> {
                (**self).delete_expired().await
            }
            async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
                (**self).list_by_owner(owner).await
            }
            async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
                (**self).destroy_by_owner(owner).await
            }
            async fn count(&self) -> Result<u64> {
                (**self).count().await
            }
            async fn create(&self, record: &mut Record) -> Result<()> {
                (**self).create(record).await
            }
            async fn cycle_id(&self, id: &SessionId) -> Result<Option<SessionId>> {
                (**self).cycle_id(id).await
            }
            async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
                (**self).limit_owner(owner, keep).await
            }
            fn timeout(&self) -> Duration {
                (**self).timeout()
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);

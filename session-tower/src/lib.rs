//! Plugs any session-stores store into [tower-sessions](tower_sessions) 0.15, the session
//! middleware of axum and tower.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use axum::{Router, routing::get};
//! use session_core::SessionStore;
//! use session_tower::{Expiry, Session, TowerStore, time::Duration};
//!
//! async fn visits(session: Session) -> String {
//!     let n = session.get::<u32>("visits").await.ok().flatten().unwrap_or(0) + 1;
//!     session.insert("visits", n).await.ok();
//!     format!("visit {n}")
//! }
//!
//! # async fn run() {
//! let store: Arc<dyn SessionStore> = Arc::new(session_memory::MemoryStore::new());
//! // HttpOnly, Secure, SameSite=Lax; the `user` data key names the owner (for revocation).
//! let layer = TowerStore::new(store)
//!     .with_owner_key("user")
//!     .secure_layer()
//!     .with_expiry(Expiry::OnInactivity(Duration::minutes(30)));
//! let app: Router = Router::new().route("/", get(visits)).layer(layer);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! # How the models map
//!
//! | tower-sessions | session-stores |
//! |---|---|
//! | [`Id`] (an `i128`, shown as 22 base64url characters) | [`SessionId`] parsed from that text |
//! | `Record::expiry_date` | [`Record::expires_at`](session_core::Record::expires_at) (ms precision) |
//! | `Record::data` (`HashMap<String, Value>`) | [`Record::data`](session_core::Record::data) (a JSON object) |
//! | `create` | [`SessionStore::insert`](session_core::SessionStore::insert); on a taken id, a fresh [`Id`] and again |
//! | `save` | [`SessionStore::set`](session_core::SessionStore::set) (last writer wins) |
//! | `load` | [`SessionStore::get`](session_core::SessionStore::get) (expired: `None`) |
//! | `delete` | [`SessionStore::destroy`](session_core::SessionStore::destroy) |
//! | `session_store::Error` | `Encode` for encode and size errors, `Decode` for corrupt records, `Backend` for the rest; the message is kept |
//!
//! # What tower-sessions' model lacks
//!
//! - **Versioned writes.** tower-sessions' `save` overwrites whatever is stored, so two
//!   concurrent requests that both change a session lose one change, and a request in
//!   flight when the session is destroyed elsewhere (logout in another tab, "log out
//!   everywhere") writes it back. The adapter cannot do better through tower's interface;
//!   where that matters, use [`TowerStore::inner`] with
//!   [`session_core::modify`] (compare-and-swap, retried) for that piece of state.
//! - **Owners.** tower's record has no owner, so by default sessions saved through it have
//!   none. [`TowerStore::with_owner_key`] names a data key (for example `"user_id"`) whose
//!   value becomes the owner on every write, which makes
//!   [`list_by_owner`](session_core::SessionStore::list_by_owner) and
//!   [`destroy_by_owner`](session_core::SessionStore::destroy_by_owner) on
//!   [`TowerStore::inner`] work for tower apps.
//! - **Absolute deadlines.** tower knows one expiry date per record; a `save` stores no
//!   deadline, and resets the record's creation time and version.
//! - **Moving an id.** tower-sessions' own `Session::cycle_id` does not call the store's
//!   [`cycle_id`](session_core::SessionStore::cycle_id): it deletes the old record at once
//!   and creates the session under a fresh [`Id`] when the response is saved. The effect
//!   is the same (the old id is dead, the data lives on under a new one), but if that final
//!   save fails the session is gone, and the user must log in again: safe, if not kind.

pub mod express;

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use serde_json::Value;
use session_core::{Error, MAX_ID_ATTEMPTS, SessionId};
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

pub use time;
pub use tower_sessions::{self, Expiry, Session, SessionManagerLayer};

/// A session-stores store seen as a [`tower_sessions::SessionStore`].
///
/// `S` is any [`session_core::SessionStore`]: a backend such as `MemoryStore`, or an
/// `Arc<dyn SessionStore>` shared with the rest of the app.
#[derive(Clone)]
pub struct TowerStore<S> {
    inner: S,
    owner_key: Option<String>,
}

impl<S: session_core::SessionStore> TowerStore<S> {
    /// Wraps `store`.
    pub fn new(store: S) -> Self {
        Self {
            inner: store,
            owner_key: None,
        }
    }

    /// On every write, the value under `key` in the session data (a string, or a number
    /// written as text) becomes the record's owner; without the key the owner is cleared.
    /// Lets "list / revoke the sessions of a user" work for sessions tower-sessions wrote.
    pub fn with_owner_key(mut self, key: impl Into<String>) -> Self {
        self.owner_key = Some(key.into());
        self
    }

    /// The wrapped store, for what tower-sessions has no words for: owners, versioned
    /// writes, counting, pruning.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped store.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A [`SessionManagerLayer`] over this store with secure cookie defaults: `HttpOnly`,
    /// `Secure`, `SameSite=Lax`, path `/`, name `id`.
    ///
    /// Configure it further with the layer's own methods, for example
    /// `.with_expiry(Expiry::OnInactivity(..))`. Browsers drop `Secure` cookies on plain
    /// HTTP (except on `localhost` in some browsers): for local development over `http://`
    /// call `.with_secure(false)` on the result, and never in production.
    pub fn secure_layer(self) -> SessionManagerLayer<Self>
    where
        S: 'static,
    {
        secure_layer(self)
    }

    fn to_core(&self, record: &Record) -> session_store::Result<session_core::Record> {
        let mut core =
            session_core::Record::with_id(to_session_id(&record.id)?, record.expiry_date);
        core.set_data(
            record
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        if let Some(key) = &self.owner_key {
            core.set_owner_from(key);
        }
        Ok(core)
    }
}

/// [`SessionManagerLayer::new`] with secure cookie defaults: `HttpOnly`, `Secure`,
/// `SameSite=Lax`. See [`TowerStore::secure_layer`].
pub fn secure_layer<S>(store: TowerStore<S>) -> SessionManagerLayer<TowerStore<S>>
where
    S: session_core::SessionStore + 'static,
{
    SessionManagerLayer::new(store)
        .with_http_only(true)
        .with_secure(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
}

impl<S: fmt::Debug> fmt::Debug for TowerStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerStore")
            .field("inner", &self.inner)
            .field("owner_key", &self.owner_key)
            .finish()
    }
}

/// A tower [`Id`] as a [`SessionId`]: its 22-character base64url text, which always parses.
pub fn to_session_id(id: &Id) -> session_store::Result<SessionId> {
    SessionId::parse(&id.to_string())
        .map_err(|err| session_store::Error::Backend(format!("session id: {err}")))
}

/// A session-stores error as tower's: `Encode` for data the backend cannot store (including
/// payloads over the size limit), `Decode` for corrupt records, `Backend` for everything
/// else. The message (with the backend's own error) is kept; ids appear only as
/// fingerprints.
pub fn to_tower_error(err: Error) -> session_store::Error {
    match err {
        Error::Encode { .. } | Error::PayloadTooLarge { .. } => {
            session_store::Error::Encode(err.to_string())
        }
        Error::Decode { .. } => session_store::Error::Decode(err.to_string()),
        other => session_store::Error::Backend(error_chain(&other)),
    }
}

/// The error's message followed by its sources not already in it.
fn error_chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[async_trait]
impl<S> tower_sessions::SessionStore for TowerStore<S>
where
    S: session_core::SessionStore + 'static,
{
    /// Stores a new session without ever overwriting another: on a taken id, the record
    /// gets a fresh [`Id`] and tries again, at most [`MAX_ID_ATTEMPTS`] times.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        for _ in 0..MAX_ID_ATTEMPTS {
            let mut core = self.to_core(record)?;
            if self.inner.insert(&mut core).await.map_err(to_tower_error)? {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(format!(
            "no free session id after {MAX_ID_ATTEMPTS} attempts: is the random source broken?"
        )))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let mut core = self.to_core(record)?;
        self.inner.set(&mut core).await.map_err(to_tower_error)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(core) = self
            .inner
            .get(&to_session_id(id)?)
            .await
            .map_err(to_tower_error)?
        else {
            return Ok(None);
        };
        let expiry_date = core.expires_at();
        let data: HashMap<String, Value> = core
            .data()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.inner
            .destroy(&to_session_id(id)?)
            .await
            .map_err(to_tower_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_memory::MemoryStore;
    use std::sync::Arc;
    use tower_sessions::SessionStore as _;

    fn record(expiry: time::Duration) -> Record {
        Record {
            id: Id::default(),
            data: HashMap::from([
                ("user".to_owned(), Value::from("alice")),
                ("n".to_owned(), Value::from(3)),
            ]),
            expiry_date: time::OffsetDateTime::now_utc() + expiry,
        }
    }

    #[tokio::test]
    async fn ids_map_faithfully() {
        for _ in 0..1000 {
            let id = Id::default();
            let sid = to_session_id(&id).unwrap();
            assert_eq!(sid.expose(), id.to_string());
            assert_eq!(sid.expose().parse::<Id>().unwrap(), id);
        }
    }

    #[tokio::test]
    async fn round_trip_owner_and_delete() {
        let core: Arc<dyn session_core::SessionStore> = Arc::new(MemoryStore::new());
        let store = TowerStore::new(core.clone()).with_owner_key("user");
        let mut rec = record(time::Duration::minutes(5));
        store.create(&mut rec).await.unwrap();
        let loaded = store.load(&rec.id).await.unwrap().unwrap();
        assert_eq!(loaded.data, rec.data);
        assert_eq!(
            loaded.expiry_date.unix_timestamp_nanos() / 1_000_000,
            rec.expiry_date.unix_timestamp_nanos() / 1_000_000
        );
        assert_eq!(core.list_by_owner("alice").await.unwrap().len(), 1);

        rec.data.insert("n".into(), Value::from(4));
        store.save(&rec).await.unwrap();
        assert_eq!(store.load(&rec.id).await.unwrap().unwrap().data["n"], 4);

        store.delete(&rec.id).await.unwrap();
        assert!(store.load(&rec.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn create_never_overwrites() {
        let store = TowerStore::new(MemoryStore::new());
        let mut first = record(time::Duration::minutes(5));
        store.create(&mut first).await.unwrap();
        let mut second = record(time::Duration::minutes(5));
        second.id = first.id;
        second.data.insert("user".into(), Value::from("mallory"));
        store.create(&mut second).await.unwrap();
        assert_ne!(second.id, first.id, "a taken id must be replaced");
        let kept = store.load(&first.id).await.unwrap().unwrap();
        assert_eq!(kept.data["user"], "alice");
        assert_eq!(
            store.load(&second.id).await.unwrap().unwrap().data["user"],
            "mallory"
        );
    }

    #[tokio::test]
    async fn expired_records_are_not_loaded() {
        let store = TowerStore::new(MemoryStore::new());
        let mut rec = record(time::Duration::milliseconds(50));
        store.create(&mut rec).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        assert!(store.load(&rec.id).await.unwrap().is_none());
    }

    #[test]
    fn errors_keep_kind_and_message() {
        let id = SessionId::generate();
        match to_tower_error(Error::decode(&id, "not json")) {
            session_store::Error::Decode(msg) => assert!(msg.contains("not json")),
            other => panic!("{other:?}"),
        }
        match to_tower_error(Error::PayloadTooLarge {
            id: id.clone(),
            size: 10,
            max: 5,
        }) {
            session_store::Error::Encode(msg) => assert!(msg.contains("maximum of 5")),
            other => panic!("{other:?}"),
        }
        match to_tower_error(Error::transient("redis", "connection reset")) {
            session_store::Error::Backend(msg) => assert!(msg.contains("connection reset")),
            other => panic!("{other:?}"),
        }
    }
}

//! Plugs any session-stores store into [actix-session](actix_session) 0.11, the session
//! middleware of actix-web 4.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use actix_web::{App, HttpServer, cookie::Key, web};
//! use session_actix::{ActixStore, Session};
//! use session_core::SessionStore;
//!
//! async fn visits(session: Session) -> String {
//!     let n = session.get::<u32>("visits").ok().flatten().unwrap_or(0) + 1;
//!     session.insert("visits", n).ok();
//!     format!("visit {n}")
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let store: Arc<dyn SessionStore> = Arc::new(session_memory::MemoryStore::new());
//!     let key = Key::generate(); // load a fixed key in production: cookies survive restarts
//!     HttpServer::new(move || {
//!         // HttpOnly, Secure, SameSite=Lax; the `user` data key names the owner.
//!         let sessions = ActixStore::new(store.clone()).with_owner_key("user");
//!         App::new()
//!             .wrap(sessions.secure_middleware(key.clone()).build())
//!             .route("/", web::get().to(visits))
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! }
//! ```
//!
//! # How the models map
//!
//! | actix-session | session-stores |
//! |---|---|
//! | [`SessionKey`] | [`SessionId`]: new keys are [`SessionId::generate`]d (32 characters); a key that is not a valid id loads as no session and never reaches the backend |
//! | state `HashMap<String, String>` of JSON texts | [`Record::data`](session_core::Record::data): each value stored as the JSON it holds (so the data stays queryable and readable by other apps); a text that would not come back byte for byte (not JSON, or a number `serde_json::Value` can't hold, such as a `u128` above `u64::MAX`) as `{"__json_text": "<the text>"}`; loaded back as the exact text |
//! | `ttl` | [`Record::expires_at`](session_core::Record::expires_at) = now + ttl (capped at the record's deadline) |
//! | `save` | [`SessionStore::create`]: never overwrites |
//! | `update` | read, then [`SessionStore::update`] (compare-and-swap, retried); a session that is gone is saved under a new key, as actix's Redis store does |
//! | `update_ttl` | [`SessionStore::touch`]: never resurrects |
//! | `delete` | [`SessionStore::destroy`] |
//! | errors | a corrupt record is `LoadError::Deserialization` (actix starts an empty session), encode and size errors `Serialization`, the rest `Other`; the session-stores error is the source |
//!
//! `actix_web::cookie::time` is the same `time` 0.3 crate session-stores uses, so durations
//! pass through unchanged.
//!
//! # What actix-session's model lacks
//!
//! - **Versioned writes.** actix-session has no versions, so `update` reads the record's
//!   version and writes with compare-and-swap, retrying on conflict: the record's owner,
//!   deadline and creation time survive, and a concurrent write is overwritten whole (last
//!   writer wins, as with actix's own stores). Use [`ActixStore::inner`] with
//!   [`session_core::modify`] where concurrent changes must merge.
//! - **Owners.** actix's state has no owner. [`ActixStore::with_owner_key`] names a data key
//!   whose value becomes the owner on every write, so
//!   [`destroy_by_owner`](session_core::SessionStore::destroy_by_owner) on
//!   [`ActixStore::inner`] can log a user out everywhere.
//! - **Resurrection.** Following actix, an `update` of a session that is gone (expired, or
//!   destroyed by another request) saves the state under a fresh key. A request in flight
//!   while a user is logged out everywhere can therefore write its state back as a new
//!   session; apps that revoke sessions should re-check authorization state (for example
//!   a per-user "sessions valid after" time) rather than rely on the session alone.
//! - **Renewal** (`Session::renew`) is a `delete` then a `save` with a new key in actix, not
//!   the store's atomic [`cycle_id`](session_core::SessionStore::cycle_id); the old key is
//!   dead either way.

pub mod express;

use std::collections::HashMap;
use std::fmt;

use actix_session::SessionMiddleware;
use actix_session::config::SessionMiddlewareBuilder;
use actix_session::storage::{LoadError, SaveError, SessionKey, UpdateError};
use actix_web::cookie::time::Duration;
use actix_web::cookie::{Key, SameSite};
use serde_json::Value;
use session_core::{Data, Error, MAX_ID_ATTEMPTS, Record, SessionId, SessionStore};
use time::OffsetDateTime;

pub use actix_session::{self, Session};

/// A session-stores store seen as an [`actix_session::storage::SessionStore`].
///
/// `S` is any [`SessionStore`]: a backend such as `MemoryStore`, or an
/// `Arc<dyn SessionStore>` shared with the rest of the app.
#[derive(Clone)]
pub struct ActixStore<S> {
    inner: S,
    owner_key: Option<String>,
}

impl<S: fmt::Debug> fmt::Debug for ActixStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActixStore")
            .field("inner", &self.inner)
            .field("owner_key", &self.owner_key)
            .finish()
    }
}

impl<S: SessionStore> ActixStore<S> {
    /// Wraps `store`.
    pub fn new(store: S) -> Self {
        Self {
            inner: store,
            owner_key: None,
        }
    }

    /// On every write, the value under `key` in the session state (a string, or a number
    /// written as text) becomes the record's owner; without the key the owner is cleared.
    /// Without an owner key, `update` keeps whatever owner the record had.
    pub fn with_owner_key(mut self, key: impl Into<String>) -> Self {
        self.owner_key = Some(key.into());
        self
    }

    /// The wrapped store, for what actix-session has no words for: owners, versioned
    /// writes, counting, pruning.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped store.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A [`SessionMiddleware`] builder over this store with secure cookie defaults. See
    /// [`secure_middleware`].
    pub fn secure_middleware(self, key: Key) -> SessionMiddlewareBuilder<Self>
    where
        S: 'static,
    {
        secure_middleware(self, key)
    }

    fn apply_owner(&self, record: &mut Record) {
        if let Some(key) = &self.owner_key {
            record.set_owner_from(key);
        }
    }

    async fn create(
        &self,
        state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, Error> {
        let mut record = Record::new(expires_in(ttl));
        record.set_data(state_to_data(state));
        self.apply_owner(&mut record);
        self.inner.create(&mut record).await?;
        Ok(to_key(record.id()))
    }
}

/// A [`SessionMiddleware`] builder with secure cookie defaults: `HttpOnly`, `Secure`,
/// `SameSite=Lax`, path `/`, the cookie encrypted and authenticated with `key` (actix's
/// `Private` content security).
///
/// Call `.build()` on it, after any further settings such as
/// `.session_lifecycle(PersistentSession::default().session_ttl(..))`. Browsers drop
/// `Secure` cookies on plain HTTP (except on `localhost` in some browsers): for local
/// development over `http://` add `.cookie_secure(false)`, and never in production.
pub fn secure_middleware<S>(
    store: ActixStore<S>,
    key: Key,
) -> SessionMiddlewareBuilder<ActixStore<S>>
where
    S: SessionStore + 'static,
{
    SessionMiddleware::builder(store, key)
        .cookie_http_only(true)
        .cookie_secure(true)
        .cookie_same_site(SameSite::Lax)
        .cookie_path("/".to_owned())
}

/// The owner named by a data value: a non-empty string, or a number as text.
fn expires_in(ttl: &Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc().saturating_add(*ttl)
}

fn to_key(id: &SessionId) -> SessionKey {
    // A session id has at most 128 characters, far under actix's 4064-byte limit.
    SessionKey::try_from(id.expose().to_owned())
        .unwrap_or_else(|_| unreachable!("a session id always fits a session key"))
}

/// The one key of the object that holds a state text as it is (see [`state_to_data`]).
pub const RAW_TEXT_FIELD: &str = "__json_text";

/// actix's state (JSON texts) as session data: each text stored as the JSON value it holds
/// when that value writes back as the same text; any other text (not JSON, or a number
/// `serde_json::Value` can't hold exactly, such as a `u128` above `u64::MAX`) as
/// `{"__json_text": text}`, so [`data_to_state`] gives every text back byte for byte.
pub fn state_to_data(state: HashMap<String, String>) -> Data {
    state
        .into_iter()
        .map(|(key, text)| {
            let value = match serde_json::from_str::<Value>(&text) {
                Ok(value) if serde_json::to_string(&value).is_ok_and(|back| back == text) => value,
                _ => {
                    let mut raw = Data::new();
                    raw.insert(RAW_TEXT_FIELD.into(), Value::String(text));
                    Value::Object(raw)
                }
            };
            (key, value)
        })
        .collect()
}

/// Session data as actix's state: each value as JSON text (a text [`state_to_data`] kept
/// as it is, as that text).
pub fn data_to_state(data: &Data) -> HashMap<String, String> {
    data.iter()
        .map(|(key, value)| {
            let text = match value {
                Value::Object(raw) if raw.len() == 1 => match raw.get(RAW_TEXT_FIELD) {
                    Some(Value::String(text)) => text.clone(),
                    _ => value.to_string(),
                },
                _ => value.to_string(),
            };
            (key.clone(), text)
        })
        .collect()
}

fn save_error(err: Error) -> SaveError {
    match err {
        Error::Encode { .. } | Error::PayloadTooLarge { .. } => {
            SaveError::Serialization(err.into())
        }
        other => SaveError::Other(other.into()),
    }
}

fn update_error(err: Error) -> UpdateError {
    match err {
        Error::Encode { .. } | Error::PayloadTooLarge { .. } => {
            UpdateError::Serialization(err.into())
        }
        other => UpdateError::Other(other.into()),
    }
}

impl<S: SessionStore> actix_session::storage::SessionStore for ActixStore<S> {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let Ok(id) = SessionId::parse(key.as_ref()) else {
            return Ok(None);
        };
        match self.inner.get(&id).await {
            Ok(record) => Ok(record.map(|r| data_to_state(r.data()))),
            Err(err @ Error::Decode { .. }) => Err(LoadError::Deserialization(err.into())),
            Err(err) => Err(LoadError::Other(err.into())),
        }
    }

    async fn save(
        &self,
        state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, SaveError> {
        self.create(state, ttl).await.map_err(save_error)
    }

    async fn update(
        &self,
        key: SessionKey,
        state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let Ok(id) = SessionId::parse(key.as_ref()) else {
            return self.create(state, ttl).await.map_err(update_error);
        };
        let data = state_to_data(state);
        for _ in 0..MAX_ID_ATTEMPTS {
            let mut record = match self.inner.get(&id).await {
                Ok(Some(record)) => record,
                // Gone (or corrupt, which actix already showed as an empty session): the
                // state goes to a new key, as actix's own stores do.
                Ok(None) | Err(Error::Decode { .. }) => {
                    return self
                        .create(data_to_state(&data), ttl)
                        .await
                        .map_err(update_error);
                }
                Err(err) => return Err(update_error(err)),
            };
            record.set_data(data.clone());
            record.set_expires_at(expires_in(ttl));
            self.apply_owner(&mut record);
            match self.inner.update(&mut record).await {
                Ok(()) => return Ok(key),
                Err(err) if err.is_conflict() => continue,
                Err(err) => return Err(update_error(err)),
            }
        }
        Err(update_error(Error::Conflict { id }))
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
        let Ok(id) = SessionId::parse(key.as_ref()) else {
            return Ok(());
        };
        self.inner.touch(&id, expires_in(ttl)).await?;
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        let Ok(id) = SessionId::parse(key.as_ref()) else {
            return Ok(());
        };
        self.inner.destroy(&id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_session::storage::SessionStore as _;
    use session_memory::MemoryStore;
    use std::sync::Arc;

    fn state() -> HashMap<String, String> {
        HashMap::from([
            ("user".to_owned(), "\"alice\"".to_owned()),
            ("n".to_owned(), "3".to_owned()),
            ("roles".to_owned(), r#"["a","b"]"#.to_owned()),
            ("raw".to_owned(), "not json".to_owned()),
        ])
    }

    #[tokio::test]
    async fn save_load_update_delete() {
        let core: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let store = ActixStore::new(core.clone()).with_owner_key("user");
        let ttl = Duration::minutes(5);
        let key = store.save(state(), &ttl).await.unwrap();
        assert_eq!(key.as_ref().len(), 32);

        let id = SessionId::parse(key.as_ref()).unwrap();
        let record = core.get(&id).await.unwrap().unwrap();
        assert_eq!(record.data()["n"], 3, "values are stored as JSON, not text");
        assert_eq!(record.data()["raw"][RAW_TEXT_FIELD], "not json");
        assert_eq!(record.owner(), Some("alice"));

        let loaded = store.load(&key).await.unwrap().unwrap();
        assert_eq!(loaded["user"], "\"alice\"");
        assert_eq!(loaded["n"], "3");
        assert_eq!(loaded["roles"], r#"["a","b"]"#);
        assert_eq!(loaded["raw"], "not json", "every text comes back as it was");

        let mut changed = loaded.clone();
        changed.insert("n".into(), "4".into());
        let same = store.update(key, changed, &ttl).await.unwrap();
        assert_eq!(same.as_ref(), id.expose(), "an update keeps the key");
        assert_eq!(store.load(&same).await.unwrap().unwrap()["n"], "4");

        store.delete(&same).await.unwrap();
        assert!(store.load(&same).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn update_of_a_vanished_session_moves_to_a_new_key() {
        let store = ActixStore::new(MemoryStore::new());
        let ttl = Duration::minutes(5);
        let key = store.save(state(), &ttl).await.unwrap();
        let old = key.as_ref().to_owned();
        store.delete(&key).await.unwrap();
        let new = store.update(key, state(), &ttl).await.unwrap();
        assert_ne!(new.as_ref(), old);
        assert!(store.load(&new).await.unwrap().is_some());
        let old: SessionKey = old.try_into().unwrap();
        assert!(
            store.load(&old).await.unwrap().is_none(),
            "no resurrection under the old key"
        );
    }

    #[tokio::test]
    async fn invalid_keys_never_reach_the_backend() {
        let store = ActixStore::new(MemoryStore::new());
        for bad in ["short", "sess:*", "{\"$ne\":null}aaaaaaaaaaaaaaaaaaaaaa"] {
            let key: SessionKey = bad.to_owned().try_into().unwrap();
            assert!(store.load(&key).await.unwrap().is_none());
            store.update_ttl(&key, &Duration::minutes(1)).await.unwrap();
            store.delete(&key).await.unwrap();
        }
    }

    #[tokio::test]
    async fn ttl_touch_never_resurrects_and_expiry_hides() {
        let store = ActixStore::new(MemoryStore::new());
        let key = store
            .save(state(), &Duration::milliseconds(80))
            .await
            .unwrap();
        store
            .update_ttl(&key, &Duration::milliseconds(80))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        assert!(store.load(&key).await.unwrap().is_none());
        store.update_ttl(&key, &Duration::minutes(5)).await.unwrap();
        assert!(store.load(&key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn corrupt_records_are_deserialization_errors() {
        let core = MemoryStore::new();
        let id = SessionId::generate();
        core.write_raw(
            &id,
            "{not json",
            OffsetDateTime::now_utc() + Duration::minutes(5),
        )
        .await;
        let store = ActixStore::new(core);
        let key: SessionKey = id.expose().to_owned().try_into().unwrap();
        assert!(matches!(
            store.load(&key).await,
            Err(LoadError::Deserialization(_))
        ));
    }

    /// Defect: `u128::MAX` went through a `serde_json::Value` and came back as a float.
    #[tokio::test]
    async fn every_state_text_comes_back_byte_for_byte() {
        let store = ActixStore::new(MemoryStore::new());
        let texts = [
            serde_json::to_string(&u128::MAX).unwrap(),
            serde_json::to_string(&i128::MIN).unwrap(),
            "1.0".to_owned(),
            "1e400".to_owned(),
            "{\"a\": 1}".to_owned(),
            "\"\\u00e9\"".to_owned(),
            "[1,2]".to_owned(),
            "0.30000000000000004".to_owned(),
        ];
        let state: HashMap<String, String> = texts
            .iter()
            .enumerate()
            .map(|(n, text)| (format!("k{n}"), text.clone()))
            .collect();
        let key = store
            .save(state.clone(), &Duration::minutes(5))
            .await
            .unwrap();
        assert_eq!(store.load(&key).await.unwrap().unwrap(), state);
        let record = store
            .inner()
            .get(&SessionId::parse(key.as_ref()).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            record.data()["k6"],
            serde_json::json!([1, 2]),
            "plain JSON stays queryable"
        );
    }
}

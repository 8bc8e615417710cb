//! express-session's request cycle, framework-free: what session-tower's and
//! session-actix's express layers run around each request.
//!
//! [`ExpressSessions::load`] turns the request's `Cookie` header into an
//! [`ExpressSession`] (the session its signed cookie names, or a new one), the handler reads
//! and changes it, and [`ExpressSessions::commit`] stores what changed and says which
//! `Set-Cookie` the response carries, with express-session's rules for `rolling`,
//! `saveUninitialized` and `resave`.
//!
//! Where express-session overwrites the whole session (`store.set`), a commit here applies
//! only the fields this request changed to the stored session, with a compare-and-swap
//! retried on conflict ([`crate::modify`]): two parallel requests that change different
//! fields both land, and a session destroyed meanwhile (logout in another tab, "log out
//! everywhere") stays destroyed.
//!
//! Limits, on purpose:
//! - The unit of a commit is the top-level field: two parallel requests that change
//!   different members of one object (`cart.a`, `cart.b`) each write the whole field, and
//!   the last one wins, as in express-session (which writes the whole session). Keep what
//!   parallel requests change in fields of their own.
//! - A stored `originalMaxAge` that is not a number (`"x"`, `true`), on which
//!   express-session's `touch` throws (a server error on every request), makes a
//!   browser-session cookie here; a cookie object that is not an object is a
//!   [`Error::Decode`] (a server error, as in express-session).
//! - A `secure` cookie is sent on plain HTTP too (the layer doesn't know the scheme behind a
//!   proxy; express-session withholds it); browsers drop it there.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use cookie::{Cookie, Expiration, SameSite};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use super::js_iso;
use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::modify::modify;
use crate::owner_path::OwnerPath;
use crate::record::{Data, Record};
use crate::signed_cookie::SignedCookie;
use crate::store::SessionStore;
use crate::time_util::now;

/// How often a commit reads again after losing a compare-and-swap to a parallel request.
/// A commit loses only to another request's commit landing between its read and its write,
/// so with n requests writing one session at once each lands within n attempts: this many
/// parallel writers on one session all land (an HTTP/2 page's requests can number dozens;
/// at 16, 40 parallel requests got 500s). Past it, a commit fails with [`Error::Conflict`].
const COMMIT_ATTEMPTS: usize = 128;
/// The latest expiry a session or its cookie gets: the last millisecond of year 9999, the
/// latest date `time` holds without its large-dates feature and a JavaScript `Date` can
/// print as `Date.prototype.toJSON` does (four-digit years). A `maxAge` past it (an app's
/// `Duration::MAX`, a stored `1e15`) ends there instead of overflowing.
const LATEST: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999 UTC);
/// The store lifetime of a session whose cookie has no `maxAge` (a browser-session cookie):
/// one day, as connect-redis and connect-pg-simple keep it.
const BROWSER_SESSION_TTL: Duration = Duration::DAY;

/// express-session's options, and the store: build one per app and share it.
///
/// The defaults are express-session's: cookie `connect.sid`, path `/`, `HttpOnly`, no
/// `maxAge` (a browser-session cookie), `rolling: false`, `saveUninitialized: true`,
/// `resave: true`. Most apps set the last two to `false`, as express-session advises.
///
/// ```
/// use std::sync::Arc;
/// use session_core::express::ExpressSessions;
/// use time::Duration;
///
/// # fn demo(store: Arc<dyn session_core::SessionStore>) -> session_core::Result<()> {
/// // app.use(session({ secret: ['new', 'old'], resave: false, saveUninitialized: false,
/// //                   rolling: true, cookie: { maxAge: 30 * 60 * 1000, sameSite: 'lax' } }))
/// let sessions = ExpressSessions::new(store, ["new", "old"])?
///     .resave(false)
///     .save_uninitialized(false)
///     .rolling(true)
///     .max_age(Some(Duration::minutes(30)))
///     .same_site(Some("lax"))
///     .owner_path("passport.user")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ExpressSessions {
    store: Arc<dyn SessionStore>,
    signer: SignedCookie,
    name: String,
    rolling: bool,
    save_uninitialized: bool,
    resave: bool,
    cookie: Data,
    owner_path: Option<OwnerPath>,
}

/// Shows the options, never the secrets.
impl fmt::Debug for ExpressSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpressSessions")
            .field("name", &self.name)
            .field("signer", &self.signer)
            .field("rolling", &self.rolling)
            .field("save_uninitialized", &self.save_uninitialized)
            .field("resave", &self.resave)
            .field("cookie", &self.cookie)
            .field(
                "owner_path",
                &self.owner_path.as_ref().map(OwnerPath::as_str),
            )
            .finish()
    }
}

impl ExpressSessions {
    /// Sessions in `store` (one in an express-session format, to share them with Node),
    /// cookies signed with the first of `secrets` and verified with any (express-session's
    /// `secret` array: put a new secret first to rotate, keep the old ones to verify).
    pub fn new<S: AsRef<[u8]>>(
        store: Arc<dyn SessionStore>,
        secrets: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let mut cookie = Map::new();
        cookie.insert("originalMaxAge".into(), Value::Null);
        cookie.insert("expires".into(), Value::Null);
        cookie.insert("httpOnly".into(), Value::Bool(true));
        cookie.insert("path".into(), Value::from("/"));
        Ok(Self {
            store,
            signer: SignedCookie::new(secrets)?,
            name: "connect.sid".into(),
            rolling: false,
            save_uninitialized: true,
            resave: true,
            cookie,
            owner_path: None,
        })
    }

    /// The cookie's name (`name`; default `connect.sid`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// `rolling`: send the cookie on every response, its expiry moved (default `false`).
    pub fn rolling(mut self, rolling: bool) -> Self {
        self.rolling = rolling;
        self
    }

    /// `saveUninitialized`: store a new session the request did not change (default
    /// `true`).
    pub fn save_uninitialized(mut self, save: bool) -> Self {
        self.save_uninitialized = save;
        self
    }

    /// `resave`: store a loaded session even when the request did not change it (default
    /// `true`); otherwise its expiry is moved with [`SessionStore::touch`].
    pub fn resave(mut self, resave: bool) -> Self {
        self.resave = resave;
        self
    }

    /// `cookie.maxAge` for new sessions; `None` (the default) makes browser-session
    /// cookies, kept one day in the store. Each session keeps its own (see
    /// [`ExpressSession::set_max_age`]).
    pub fn max_age(mut self, max_age: Option<Duration>) -> Self {
        set_max_age(&mut self.cookie, max_age, now());
        self
    }

    /// `cookie.path` (default `/`).
    pub fn path(self, path: &str) -> Self {
        self.cookie_member("path", Some(Value::from(path)))
    }

    /// `cookie.domain` (default none: the host that set it).
    pub fn domain(self, domain: Option<&str>) -> Self {
        self.cookie_member("domain", domain.map(Value::from))
    }

    /// `cookie.secure` (default `false`; set it behind HTTPS).
    pub fn secure(self, secure: bool) -> Self {
        self.cookie_member("secure", secure.then_some(Value::Bool(true)))
    }

    /// `cookie.httpOnly` (default `true`).
    pub fn http_only(self, http_only: bool) -> Self {
        self.cookie_member("httpOnly", Some(Value::Bool(http_only)))
    }

    /// `cookie.sameSite`: `"lax"`, `"strict"` or `"none"` (default none set).
    pub fn same_site(self, same_site: Option<&str>) -> Self {
        self.cookie_member("sameSite", same_site.map(Value::from))
    }

    /// The owner of each session this app writes: the value at `path` in its data
    /// (`passport.user`, `user.id`), so [`SessionStore::list_by_owner`] and
    /// [`SessionStore::destroy_by_owner`] find it. [`Error::Config`] for an empty path.
    pub fn owner_path(mut self, path: &str) -> Result<Self> {
        self.owner_path = Some(OwnerPath::parse(path)?);
        Ok(self)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    fn cookie_member(mut self, key: &str, value: Option<Value>) -> Self {
        match value {
            Some(value) => self.cookie.insert(key.into(), value),
            None => self.cookie.remove(key),
        };
        self
    }

    /// The session a request's `Cookie` headers name, when its signature verifies under one
    /// of the secrets and the store holds it; else a new session (stored at
    /// [`Self::commit`] if the options say so). A store error is returned: answer it
    /// with a server error rather than a new, empty session.
    pub async fn load<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a str>,
    ) -> Result<ExpressSession> {
        let cookie_id = self.cookie_id(cookie_headers);
        let loaded = match &cookie_id {
            Some(id) => self.store.get(id).await?,
            None => None,
        };
        let state = match loaded {
            Some(record) => State::loaded(record, cookie_id, &self.cookie),
            None => State::fresh(self.new_record(), cookie_id, &self.cookie),
        };
        Ok(ExpressSession(Arc::new(Mutex::new(state))))
    }

    /// Stores what the request did to `session` and returns the `Set-Cookie` header value
    /// the response carries, if any (express-session's `shouldSave`, `shouldTouch` and
    /// `shouldSetCookie`).
    pub async fn commit(&self, session: &ExpressSession) -> Result<Option<String>> {
        let mut state = session.lock().clone();
        if let Some(old) = state.to_destroy.take() {
            self.store.destroy(&old).await?;
        }
        if state.destroyed {
            return Ok(state.cookie_id.is_some().then(|| self.clearing_cookie()));
        }
        // express-session's `req.session.touch()`: the cookie's expiry moves to now + maxAge.
        let expires_at = expiry_of(state.record.cookie(), now());
        state.record.set_expires_at(expires_at);
        let changed = state.changed();
        let is_new = !state.loaded;
        let send_cookie = if is_new || state.cookie_id.as_ref() != Some(state.record.id()) {
            self.save_uninitialized || changed
        } else {
            self.rolling || (changed && !cookie_is_browser_session(state.record.cookie()))
        };
        let stored = if is_new {
            if self.save_uninitialized || changed {
                self.create(&mut state.record).await?;
            }
            true
        } else if changed || self.resave {
            self.save(&state).await?
        } else {
            self.store.touch(state.record.id(), expires_at).await?
        };
        if !stored {
            // Destroyed elsewhere during the request: it stays so. The cookie is cleared only
            // where express-session would have sent one: the browser may hold a newer cookie
            // by now (a login in a parallel request regenerated the session), which an
            // unasked-for clearing cookie arriving after it would log out.
            return Ok(send_cookie.then(|| self.clearing_cookie()));
        }
        session.lock().record.set_id(state.record.id().clone());
        Ok(send_cookie.then(|| self.set_cookie(&state.record)))
    }

    fn cookie_id<'a>(&self, headers: impl IntoIterator<Item = &'a str>) -> Option<SessionId> {
        // The first cookie of that name counts, as in express-session.
        let value = headers
            .into_iter()
            .flat_map(Cookie::split_parse)
            .filter_map(|cookie| cookie.ok())
            .find(|cookie| cookie.name() == self.name)?;
        // A value in double quotes is unquoted, as the `cookie` package does.
        self.signer.verify(value.value_trimmed())
    }

    fn new_record(&self) -> Record {
        new_record(&self.cookie)
    }

    async fn create(&self, record: &mut Record) -> Result<()> {
        self.set_owner(record);
        self.store.create(record).await
    }

    /// Applies the request's changes to the stored session; `false` when it is gone.
    async fn save(&self, state: &State) -> Result<bool> {
        let id = state.record.id().clone();
        let saved = modify(&*self.store, &id, COMMIT_ATTEMPTS, |stored| {
            state.apply_to(stored);
            self.set_owner(stored);
        })
        .await?;
        Ok(saved.is_some())
    }

    fn set_owner(&self, record: &mut Record) {
        if let Some(path) = &self.owner_path {
            let owner = path.owner_in(record.data());
            record.set_owner(owner);
        }
    }

    fn set_cookie(&self, record: &Record) -> String {
        let options = record.cookie().cloned().unwrap_or_default();
        let text = |key: &str| options.get(key).and_then(Value::as_str).map(str::to_owned);
        // express-session's `Cookie` starts from `httpOnly: true`: absent means set.
        let flag = |key: &str, absent: bool| options.get(key).map_or(absent, truthy);
        let mut cookie = Cookie::new(self.name.clone(), self.signer.sign_encoded(record.id()));
        cookie.set_path(text("path").unwrap_or_else(|| "/".into()));
        if let Some(domain) = text("domain") {
            cookie.set_domain(domain);
        }
        if !cookie_is_browser_session(Some(&options)) {
            cookie.set_expires(Expiration::DateTime(record.expires_at()));
        }
        cookie.set_http_only(flag("httpOnly", true));
        cookie.set_secure(flag("secure", false));
        // The `cookie` crate adds `Secure` to a partitioned cookie (the `cookie` package
        // doesn't); browsers refuse `Partitioned` without `Secure`, so it is the same cookie.
        cookie.set_partitioned(flag("partitioned", false));
        cookie.set_same_site(same_site(options.get("sameSite")));
        let mut header = cookie.to_string();
        // The `cookie` crate has no `Priority`; the `cookie` package writes it so.
        let priority = match text("priority").map(|p| p.to_ascii_lowercase()).as_deref() {
            Some("low") => Some("Low"),
            Some("medium") => Some("Medium"),
            Some("high") => Some("High"),
            _ => None,
        };
        if let Some(priority) = priority {
            header.push_str("; Priority=");
            header.push_str(priority);
        }
        header
    }

    fn clearing_cookie(&self) -> String {
        let mut cookie = Cookie::new(self.name.clone(), "");
        cookie.set_path(
            self.cookie
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_owned(),
        );
        cookie.make_removal();
        cookie.to_string()
    }
}

/// Sets a cookie object's `originalMaxAge` and `expires` as express-session's
/// `cookie.maxAge = max_age` does `at`: `expires` is a date, not `null` (Node reads a `null`
/// `expires` as a browser-session cookie); a write sets it to the session's expiry.
/// A `max_age` that would end past [`LATEST`] is stored as the one ending there, so Node
/// (whose `Date` can't hold more) reads it too.
fn set_max_age(cookie: &mut Data, max_age: Option<Duration>, at: OffsetDateTime) {
    let (millis, expires) = match max_age {
        Some(age) => {
            let left = (LATEST - at).whole_milliseconds();
            let millis = age.whole_milliseconds().min(left);
            let millis = i64::try_from(millis).unwrap_or(i64::MIN);
            (Value::from(millis), Value::from(js_iso(after(at, millis))))
        }
        None => (Value::Null, Value::Null),
    };
    cookie.insert("originalMaxAge".into(), millis);
    cookie.insert("expires".into(), expires);
}

/// A new session with the app's cookie settings.
fn new_record(defaults: &Data) -> Record {
    let mut record = Record::new(expiry_of(Some(defaults), now()));
    record.set_cookie(Some(defaults.clone()));
    record
}

/// express-session's `sameSite`: `true` is `Strict`, a string names the mode.
fn same_site(value: Option<&Value>) -> Option<SameSite> {
    match value? {
        Value::Bool(true) => Some(SameSite::Strict),
        Value::String(mode) => match mode.to_ascii_lowercase().as_str() {
            "strict" => Some(SameSite::Strict),
            "lax" => Some(SameSite::Lax),
            "none" => Some(SameSite::None),
            _ => None,
        },
        _ => None,
    }
}

/// Whether this cookie object makes a browser-session cookie (no `Expires`): as
/// express-session's `touch` decides at each request (`cookie.maxAge = originalMaxAge`),
/// by `originalMaxAge` alone, whatever the stored `expires` says.
fn cookie_is_browser_session(cookie: Option<&Data>) -> bool {
    max_age_millis(cookie).is_none()
}

/// The cookie object's `originalMaxAge` in milliseconds, when it is a number: a fraction
/// truncated (a JavaScript `Date` holds whole milliseconds), past `i64` saturated. Anything
/// else (`null`, a string, `true`: express-session throws on the last two) is a
/// browser-session cookie.
fn max_age_millis(cookie: Option<&Data>) -> Option<i64> {
    let max_age = cookie?.get("originalMaxAge")?;
    max_age.as_i64().or_else(|| {
        // `as` saturates; a JSON number is never NaN or infinite in serde_json.
        max_age.as_f64().map(|millis| millis as i64)
    })
}

/// `at` plus `millis`, held between the Unix epoch (a past expiry: the session ends at once)
/// and [`LATEST`].
fn after(at: OffsetDateTime, millis: i64) -> OffsetDateTime {
    at.checked_add(Duration::milliseconds(millis)).map_or(
        if millis < 0 {
            OffsetDateTime::UNIX_EPOCH
        } else {
            LATEST
        },
        |end| end.clamp(OffsetDateTime::UNIX_EPOCH, LATEST),
    )
}

/// When a session with this cookie object ends if touched `at`: `at + originalMaxAge`
/// (within [`after`]'s bounds), and the cookie's `expires` set to match; a browser-session
/// cookie lives [`BROWSER_SESSION_TTL`] in the store.
fn expiry_of(cookie: Option<&Data>, at: OffsetDateTime) -> OffsetDateTime {
    match max_age_millis(cookie) {
        Some(millis) => after(at, millis),
        None => at + BROWSER_SESSION_TTL,
    }
}

/// JavaScript's truthiness of a cookie object's member, as `cookie.serialize` tests its
/// options (`if (opt.secure)`).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// One request's session: read and change it in a handler; the layer commits it.
///
/// Cloning gives another handle on the same session.
#[derive(Clone)]
pub struct ExpressSession(Arc<Mutex<State>>);

/// Shows the id's fingerprint and the data's keys, never the values.
impl fmt::Debug for ExpressSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExpressSession")
            .field(&self.lock().record)
            .finish()
    }
}

impl ExpressSession {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked mid-change leaves data that is still valid JSON.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session id (`req.sessionID`).
    pub fn id(&self) -> SessionId {
        self.lock().record.id().clone()
    }

    /// Whether the store held this session when the request came in (not a new one).
    pub fn is_loaded(&self) -> bool {
        self.lock().loaded
    }

    /// The value under `key` (`req.session[key]`), `None` when absent; [`Error::Decode`]
    /// when it is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.lock().record.get(key)
    }

    /// Sets `key` (`req.session[key] = value`); [`Error::Encode`] when `value` is not
    /// JSON, or `key` is `cookie` (express-session's own; see [`Self::set_max_age`]).
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<()> {
        let mut state = self.lock();
        if key == super::COOKIE_FIELD {
            return Err(Error::Encode {
                id: state.record.id().clone(),
                reason: "`cookie` is express-session's cookie object: use set_max_age".into(),
            });
        }
        state.record.insert(key, value).map(drop)
    }

    /// Removes `key` (`delete req.session[key]`), returning its value.
    pub fn remove(&self, key: &str) -> Option<Value> {
        self.lock().record.remove(key)
    }

    /// A copy of the data.
    pub fn data(&self) -> Data {
        self.lock().record.data().clone()
    }

    /// This session's `cookie.maxAge` ("remember me": `Some(Duration::days(30))`; `None`
    /// for a browser-session cookie). Kept with the session, so later requests, from Rust
    /// or Node, keep it.
    pub fn set_max_age(&self, max_age: Option<Duration>) {
        let mut state = self.lock();
        let mut cookie = state.record.cookie().cloned().unwrap_or_default();
        set_max_age(&mut cookie, max_age, now());
        state.record.set_cookie(Some(cookie));
    }

    /// This session's `cookie.originalMaxAge`, `None` for a browser-session cookie.
    pub fn max_age(&self) -> Option<Duration> {
        let state = self.lock();
        max_age_millis(state.record.cookie()).map(Duration::milliseconds)
    }

    /// `req.session.regenerate()`: a new session under a new id, empty, with the app's
    /// default cookie; the old one is destroyed when the request commits. Call it at login
    /// (session fixation), then set the user.
    pub fn regenerate(&self) {
        let mut state = self.lock();
        if state.loaded {
            state.to_destroy = Some(state.record.id().clone());
        }
        state.record = new_record(&state.defaults);
        state.original = Data::new();
        state.original_cookie = state.record.cookie().cloned();
        state.loaded = false;
        state.destroyed = false;
        state.regenerated = true;
    }

    /// `req.session.destroy()`: the session is destroyed when the request commits, and
    /// the response clears the cookie.
    pub fn destroy(&self) {
        let mut state = self.lock();
        if state.loaded {
            state.to_destroy = Some(state.record.id().clone());
        }
        state.destroyed = true;
    }
}

#[derive(Clone)]
struct State {
    record: Record,
    /// The data as loaded: what the request changed is the difference.
    original: Data,
    original_cookie: Option<Data>,
    /// The id the request's cookie named, verified (the session may not exist).
    cookie_id: Option<SessionId>,
    loaded: bool,
    destroyed: bool,
    /// [`ExpressSession::regenerate`] was called: express-session counts the new id as a
    /// change (`originalId !== sess.id`), so the new session is saved and its cookie sent
    /// even with `saveUninitialized: false`.
    regenerated: bool,
    to_destroy: Option<SessionId>,
    /// The app's cookie settings, for [`ExpressSession::regenerate`].
    defaults: Data,
}

impl State {
    fn loaded(record: Record, cookie_id: Option<SessionId>, defaults: &Data) -> Self {
        Self {
            original: record.data().clone(),
            original_cookie: record.cookie().cloned(),
            record,
            cookie_id,
            loaded: true,
            destroyed: false,
            regenerated: false,
            to_destroy: None,
            defaults: defaults.clone(),
        }
    }

    fn fresh(record: Record, cookie_id: Option<SessionId>, defaults: &Data) -> Self {
        Self {
            original: Data::new(),
            original_cookie: record.cookie().cloned(),
            record,
            cookie_id,
            loaded: false,
            destroyed: false,
            regenerated: false,
            to_destroy: None,
            defaults: defaults.clone(),
        }
    }

    /// Whether the request changed the data or the cookie's settings, or regenerated the
    /// session (express-session's `isModified` counts the data and the id only; a changed
    /// `maxAge` is saved here too).
    fn changed(&self) -> bool {
        self.regenerated || *self.record.data() != self.original || self.cookie_settings_changed()
    }

    fn cookie_settings_changed(&self) -> bool {
        let settings = |cookie: Option<&Data>| {
            cookie.map(|cookie| {
                let mut cookie = cookie.clone();
                cookie.remove("expires");
                cookie
            })
        };
        settings(self.record.cookie()) != settings(self.original_cookie.as_ref())
    }

    /// Puts this request's changes (fields set or removed, the cookie's settings, the
    /// expiry) on `stored`, the session as the store holds it now.
    fn apply_to(&self, stored: &mut Record) {
        for (key, value) in self.record.data() {
            if self.original.get(key) != Some(value) {
                stored.data_mut().insert(key.clone(), value.clone());
            }
        }
        for key in self.original.keys() {
            if !self.record.data().contains_key(key) {
                stored.data_mut().remove(key);
            }
        }
        if self.cookie_settings_changed() {
            stored.set_cookie(self.record.cookie().cloned());
        }
        stored.set_expires_at(expiry_of(stored.cookie(), now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_the_cookies_max_age() {
        let at = now();
        let mut cookie = Map::new();
        cookie.insert("originalMaxAge".into(), Value::from(60_000));
        assert_eq!(expiry_of(Some(&cookie), at), at + Duration::minutes(1));
        cookie.insert("originalMaxAge".into(), Value::Null);
        assert_eq!(expiry_of(Some(&cookie), at), at + BROWSER_SESSION_TTL);
    }

    #[test]
    fn a_max_age_gives_new_sessions_an_expires_date() {
        let mut defaults = Map::new();
        defaults.insert("expires".into(), Value::Null);
        set_max_age(&mut defaults, Some(Duration::minutes(30)), now());
        let record = new_record(&defaults);
        let cookie: Value = serde_json::from_str(&super::super::cookie_json(&record)).unwrap();
        assert_eq!(
            cookie["expires"]
                .as_str()
                .and_then(super::super::parse_js_iso),
            Some(record.expires_at())
        );
        assert_eq!(cookie["originalMaxAge"], 1_800_000);
    }

    #[test]
    fn same_site_reads_express_values() {
        assert_eq!(same_site(Some(&Value::Bool(true))), Some(SameSite::Strict));
        assert_eq!(same_site(Some(&Value::from("Lax"))), Some(SameSite::Lax));
        assert_eq!(same_site(Some(&Value::Bool(false))), None);
        assert_eq!(same_site(None), None);
    }

    #[test]
    fn a_commit_applies_only_what_the_request_changed() {
        let mut loaded = Record::new(now() + Duration::hours(1));
        loaded.insert("a", 1).unwrap();
        loaded.insert("b", 1).unwrap();
        loaded.insert("gone", 1).unwrap();
        let mut state = State::loaded(loaded.clone(), Some(loaded.id().clone()), &Data::new());
        state.record.insert("a", 2).unwrap();
        state.record.remove("gone");
        assert!(state.changed());
        // Meanwhile another request changed `b` and added `c`.
        let mut stored = loaded;
        stored.insert("b", 5).unwrap();
        stored.insert("c", 7).unwrap();
        state.apply_to(&mut stored);
        let data = serde_json::to_value(stored.data()).unwrap();
        assert_eq!(data, serde_json::json!({"a": 2, "b": 5, "c": 7}));
    }
}

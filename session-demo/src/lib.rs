//! The demo app: the login / who-am-I / logout tutorial users know from NestJS, on any
//! session store.
//!
//! - `POST /auth` with `{"username": "alice", "password": "wonderland"}` logs in: a fresh
//!   session (or the current one moved to a new id, against fixation) and a signed cookie.
//! - `GET /me` returns the logged-in user, or 401.
//! - `POST /logout` destroys the session and answers 204.
//!
//! And what this crate family adds, on every backend:
//! - `GET /sessions` lists the user's live sessions ("devices"), the current one marked;
//!   sessions are shown by fingerprint, never by id (an id is a bearer secret).
//! - `POST /logout-everywhere` ends every session of the user (owner revocation), 204.
//! - At most [`Demo::max_sessions_per_user`] live sessions per user: a new login ends the
//!   oldest (`SessionStore::limit_owner`).
//! - `GET /metrics` ([`metrics_routes`]): every store call's metrics, as Prometheus text.
//!
//! [`express_app`] serves the same routes in express-session mode: the `connect.sid` cookie
//! and sessions shared with a Node app (see the README's express-session section).
//!
//! The cookie `sid` is HttpOnly, SameSite=Lax and signed (HMAC-SHA256, checked in constant
//! time by the `cookie` crate); `Secure` when [`Demo::secure_cookies`] is set.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use axum_extra::extract::cookie::Key;
use axum_extra::extract::cookie::{Cookie, SameSite, SignedCookieJar};
use serde::Deserialize;
use serde_json::json;
use session_core::{Expiry, Record, SessionId, SessionStore, modify};

mod express;
mod telemetry;
pub use express::express_app;
use telemetry::instrument;
pub use telemetry::{install_prometheus, metrics_routes};

/// The store a setting names: `memory` (or nothing) for the in-process store, or a
/// `redis://` (also `rediss://`, `redis+cluster://`, comma-separated nodes,
/// `redis+sentinel://`), `postgres://`, `mysql://` (also `mariadb://`),
/// `sqlite://path/to/file.db` (or `sqlite::memory:`) or `mongodb://` URL, opened by
/// [`session_admin::open`] (the operator's tool reads the same URLs, in one place). The SQL
/// databases get their table created; MongoDB uses the interval expiry mode, which works on
/// MongoDB and on MongoDB-protocol servers without TTL indexes alike. Every store comes
/// wrapped in an [`InstrumentedStore`](session_telemetry::InstrumentedStore): spans and
/// metrics for every call.
pub async fn store_from_setting(
    setting: Option<&str>,
) -> session_core::Result<Arc<dyn SessionStore>> {
    let setting = setting.map(str::trim).unwrap_or_default();
    let opened = session_admin::open(setting).await?;
    Ok(instrument(opened.store, opened.backend, setting))
}

/// The session cookie's name.
pub const COOKIE: &str = "sid";

/// The demo's users: name and password. A real app checks a password hash.
pub(crate) const USERS: [(&str, &str); 2] = [("alice", "wonderland"), ("bob", "builder")];

/// The demo app's shared state.
#[derive(Clone)]
pub struct Demo {
    /// Where sessions live.
    pub store: Arc<dyn SessionStore>,
    /// Signs the cookie.
    pub key: Key,
    /// How long sessions live.
    pub expiry: Expiry,
    /// Whether cookies get the `Secure` flag (needs HTTPS in a browser).
    pub secure_cookies: bool,
    /// Live sessions one user may hold; a new login ends the oldest beyond it.
    pub max_sessions_per_user: usize,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("store", &self.store)
            .field("key", &"<redacted>")
            .field("expiry", &self.expiry)
            .field("secure_cookies", &self.secure_cookies)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .finish()
    }
}

/// The app's routes.
pub fn app(demo: Demo) -> Router {
    Router::new()
        .route("/auth", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/logout-everywhere", post(logout_everywhere))
        .with_state(demo)
}

impl axum::extract::FromRef<Demo> for Key {
    fn from_ref(demo: &Demo) -> Key {
        demo.key.clone()
    }
}

#[derive(Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

/// Errors become 503 when the store may recover, 500 otherwise; never a panic.
pub(crate) struct Failure(pub(crate) session_core::Error);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "session store failed");
        let status = if self.0.is_retryable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        (status, Json(json!({"error": self.0.to_string()}))).into_response()
    }
}

impl From<session_core::Error> for Failure {
    fn from(err: session_core::Error) -> Self {
        Self(err)
    }
}

fn session_id(jar: &SignedCookieJar) -> Option<SessionId> {
    SessionId::parse(jar.get(COOKIE)?.value()).ok()
}

fn cookie(demo: &Demo, id: &SessionId) -> Cookie<'static> {
    Cookie::build((COOKIE, id.expose().to_owned()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(demo.secure_cookies)
        .path("/")
        .build()
}

async fn login(
    State(demo): State<Demo>,
    jar: SignedCookieJar,
    Json(creds): Json<Credentials>,
) -> Result<Response, Failure> {
    if !USERS
        .iter()
        .any(|(u, p)| *u == creds.username && *p == creds.password)
    {
        return Ok((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad credentials"})),
        )
            .into_response());
    }
    // A session from before the login moves to a fresh id: an id an attacker planted
    // before authentication is worthless after it.
    let carried = match session_id(&jar) {
        Some(old) => demo.store.cycle_id(&old).await?,
        None => None,
    };
    let id = match carried {
        Some(id) => {
            modify(&*demo.store, &id, 8, |s| log_in(s, &creds.username)).await?;
            id
        }
        None => {
            let mut session = demo.expiry.new_record();
            log_in(&mut session, &creds.username);
            demo.store.create(&mut session).await?;
            session.id().clone()
        }
    };
    demo.store
        .limit_owner(&creds.username, demo.max_sessions_per_user)
        .await?;
    let jar = jar.add(cookie(&demo, &id));
    Ok((jar, Json(json!({"user": creds.username}))).into_response())
}

fn log_in(session: &mut Record, username: &str) {
    session.insert("user", username).ok();
    session.set_owner(Some(username.to_owned()));
}

/// The logged-in session and its user, or `None` (answer 401).
async fn current(demo: &Demo, jar: &SignedCookieJar) -> Result<Option<(Record, String)>, Failure> {
    let Some(id) = session_id(jar) else {
        return Ok(None);
    };
    let Some(session) = demo.store.get(&id).await? else {
        return Ok(None);
    };
    let Some(user) = session.get::<String>("user").ok().flatten() else {
        return Ok(None);
    };
    Ok(Some((session, user)))
}

pub(crate) fn unauthorized() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

async fn me(State(demo): State<Demo>, jar: SignedCookieJar) -> Result<Response, Failure> {
    let Some((session, user)) = current(&demo, &jar).await? else {
        return Ok(unauthorized());
    };
    if let Some(until) = demo.expiry.touch_target(&session) {
        demo.store.touch(session.id(), until).await?;
    }
    let expires_at = session.expires_at().unix_timestamp();
    Ok(Json(json!({"user": user, "expires_at": expires_at})).into_response())
}

async fn sessions(State(demo): State<Demo>, jar: SignedCookieJar) -> Result<Response, Failure> {
    let Some((session, user)) = current(&demo, &jar).await? else {
        return Ok(unauthorized());
    };
    let mut devices = demo.store.list_by_owner(&user).await?;
    devices.sort_by_key(|s| s.created_at());
    let listed: Vec<_> = devices
        .iter()
        .map(|s| {
            json!({
                "session": s.id().fingerprint().to_string(),
                "created_at": s.created_at().unix_timestamp(),
                "expires_at": s.expires_at().unix_timestamp(),
                "current": s.id() == session.id(),
            })
        })
        .collect();
    Ok(Json(json!({"user": user, "sessions": listed})).into_response())
}

async fn logout_everywhere(
    State(demo): State<Demo>,
    jar: SignedCookieJar,
) -> Result<Response, Failure> {
    let Some((_, user)) = current(&demo, &jar).await? else {
        return Ok(unauthorized());
    };
    demo.store.destroy_by_owner(&user).await?;
    let jar = jar.remove(Cookie::build(COOKIE).path("/"));
    Ok((jar, StatusCode::NO_CONTENT).into_response())
}

async fn logout(State(demo): State<Demo>, jar: SignedCookieJar) -> Result<Response, Failure> {
    if let Some(id) = session_id(&jar) {
        demo.store.destroy(&id).await?;
    }
    let jar = jar.remove(Cookie::build(COOKIE).path("/"));
    Ok((jar, StatusCode::NO_CONTENT).into_response())
}

//! The demo app: the login / who-am-I / logout tutorial users know from NestJS, on any
//! session store.
//!
//! - `POST /auth` with `{"username": "alice", "password": "wonderland"}` logs in: a fresh
//!   session (or the current one moved to a new id, against fixation) and a signed cookie.
//! - `GET /me` returns the logged-in user, or 401.
//! - `POST /logout` destroys the session and answers 204.
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

/// The session cookie's name.
pub const COOKIE: &str = "sid";

/// The demo's users: name and password. A real app checks a password hash.
const USERS: [(&str, &str); 2] = [("alice", "wonderland"), ("bob", "builder")];

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
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("store", &self.store)
            .field("key", &"<redacted>")
            .field("expiry", &self.expiry)
            .field("secure_cookies", &self.secure_cookies)
            .finish()
    }
}

/// The app's routes.
pub fn app(demo: Demo) -> Router {
    Router::new()
        .route("/auth", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .with_state(demo)
}

impl axum::extract::FromRef<Demo> for Key {
    fn from_ref(demo: &Demo) -> Key {
        demo.key.clone()
    }
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// Errors become 503 when the store may recover, 500 otherwise; never a panic.
struct Failure(session_core::Error);

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
    let jar = jar.add(cookie(&demo, &id));
    Ok((jar, Json(json!({"user": creds.username}))).into_response())
}

fn log_in(session: &mut Record, username: &str) {
    session.insert("user", username).ok();
    session.set_owner(Some(username.to_owned()));
}

async fn me(State(demo): State<Demo>, jar: SignedCookieJar) -> Result<Response, Failure> {
    let Some(id) = session_id(&jar) else {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    };
    let Some(session) = demo.store.get(&id).await? else {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    };
    let Some(user) = session.get::<String>("user").ok().flatten() else {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    };
    if let Some(until) = demo.expiry.touch_target(&session) {
        demo.store.touch(&id, until).await?;
    }
    Ok(
        Json(json!({"user": user, "expires_at": session.expires_at().unix_timestamp()}))
            .into_response(),
    )
}

async fn logout(State(demo): State<Demo>, jar: SignedCookieJar) -> Result<Response, Failure> {
    if let Some(id) = session_id(&jar) {
        demo.store.destroy(&id).await?;
    }
    let jar = jar.remove(Cookie::build(COOKIE).path("/"));
    Ok((jar, StatusCode::NO_CONTENT).into_response())
}

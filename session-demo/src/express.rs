//! The demo's express-session mode: the same routes, sharing sessions with a Node app
//! (express-session + connect-redis) through [`ExpressLayer`]. No cookie code here: the
//! layer reads and writes the `connect.sid` cookie as express-session does.
//!
//! Run the Node side with the same store, secret and cookie name, for example:
//!
//! ```js
//! app.use(session({ store: new RedisStore({ client }), secret: ['keyboard cat'],
//!                   resave: false, saveUninitialized: false,
//!                   cookie: { maxAge: 30 * 60 * 1000, sameSite: 'lax' } }));
//! // at login: req.session.regenerate(() => { req.session.passport = { user }; ... })
//! ```

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use session_core::express::ExpressSessions;
use session_tower::express::{Express, ExpressLayer};

use crate::{Credentials, Failure, USERS, unauthorized};

/// The demo's routes in express-session mode. `sessions` names the store (an
/// express-format one, owner path `passport.user`) and the Node app's options.
pub fn express_app(sessions: ExpressSessions) -> Router {
    let store = sessions.store().clone();
    Router::new()
        .route("/auth", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/sessions", get(list_sessions))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(ExpressLayer::new(sessions))
        .with_state(store)
}

type Store = axum::extract::State<std::sync::Arc<dyn session_core::SessionStore>>;

/// The user as Passport keeps it (`req.session.passport.user`), shared with Node.
fn user(session: &Express) -> Option<String> {
    let passport = session.get::<serde_json::Value>("passport").ok()??;
    passport.get("user")?.as_str().map(str::to_owned)
}

async fn login(session: Express, Json(creds): Json<Credentials>) -> Response {
    if !USERS
        .iter()
        .any(|(u, p)| *u == creds.username && *p == creds.password)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad credentials"})),
        )
            .into_response();
    }
    // A fresh id at login, as express-session's docs advise (session fixation).
    session.regenerate();
    // Both where Passport keeps the login and where the Node app's own routes look.
    let saved = session
        .insert("passport", json!({"user": creds.username}))
        .and_then(|()| session.insert("user", &creds.username));
    if let Err(err) = saved {
        return Failure(err).into_response();
    }
    Json(json!({"user": creds.username})).into_response()
}

async fn me(session: Express) -> Response {
    match user(&session) {
        Some(user) => Json(json!({"user": user})).into_response(),
        None => unauthorized(),
    }
}

async fn logout(session: Express) -> StatusCode {
    session.destroy();
    StatusCode::NO_CONTENT
}

async fn list_sessions(store: Store, session: Express) -> Result<Response, Failure> {
    let Some(user) = user(&session) else {
        return Ok(unauthorized());
    };
    let listed: Vec<_> = store
        .0
        .list_by_owner(&user)
        .await?
        .iter()
        .map(|s| {
            json!({
                "session": s.id().fingerprint().to_string(),
                "expires_at": s.expires_at().unix_timestamp(),
                "current": *s.id() == session.id(),
            })
        })
        .collect();
    Ok(Json(json!({"user": user, "sessions": listed})).into_response())
}

async fn logout_everywhere(store: Store, session: Express) -> Result<Response, Failure> {
    let Some(user) = user(&session) else {
        return Ok(unauthorized());
    };
    // Node's logins too: the store's owner path finds sessions Node created.
    store.0.destroy_by_owner(&user).await?;
    session.destroy();
    Ok(StatusCode::NO_CONTENT.into_response())
}

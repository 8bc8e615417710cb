//! Issue 16's live scenario: a Node express-session app and two Rust apps built only on
//! the adapters (an axum app with `session_tower::express::ExpressLayer`, an actix-web app
//! with `session_actix::express::ExpressMiddleware`) share one store and one cookie.
//!
//! The Rust apps have the Node app's routes (`node/app.js`) and options, and no cookie code:
//! handlers read and write fields through the `Express` extractor. [`scenario`] drives one of
//! them next to the Node app: a login on either side, changes both ways, rolling expiry
//! agreeing with Node's rule within a second, a per-session `maxAge` ("remember me")
//! honoured by both, regenerate, logout on either side, log out everywhere (Node-created
//! sessions included), cookies signed with the old secret, and parallel requests.
//!
//! It takes the store (in the Node store's express-session format, with
//! `owner_path("passport.user")`), how far the Node store rounds a session's expiry up
//! ([`scenario`]'s `rounding`: connect-pg-simple keeps whole seconds), and the base URL of
//! node/app.js run with [`SECRETS`], `SESSION_ROLLING=1` and the same store
//! (`SESSION_STORE=redis|pg|mongo`: connect-redis, connect-pg-simple or connect-mongo), so
//! every backend's live test runs the same scenario against the same routes and options:
//! `POST /login {user, remember}` (regenerate; `passport.user`; a 30-day `maxAge` when
//! `remember`), `GET /me`, `POST /cart`, `POST /field/:name {value}`, `POST /logout`;
//! `resave: false`, `saveUninitialized: false`, `rolling`, `maxAge` one hour,
//! `sameSite: 'lax'`.

use std::sync::Arc;

use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use session_core::express::ExpressSessions;
use session_core::{Record, SessionId, SessionStore, SignedCookie, now};
use time::{Duration, OffsetDateTime};

/// The secrets of both sides: the first signs, both verify (the Node app gets them
/// comma-separated in `SESSION_SECRETS`). The second is the one rotated out.
pub const SECRETS: [&str; 2] = ["new secret", "keyboard cat"];
/// Where the login is, as Passport keeps it: the owner of a session.
pub const OWNER_PATH: &str = "passport.user";
/// The cookie's name.
pub const COOKIE_NAME: &str = "connect.sid";
/// The apps' `cookie.maxAge`.
pub const MAX_AGE: Duration = Duration::HOUR;
/// A "remember me" login's `cookie.maxAge`.
pub const REMEMBER: Duration = Duration::days(30);

/// Which adapter serves the Rust app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// axum with `session_tower::express::ExpressLayer`.
    Axum,
    /// actix-web with `session_actix::express::ExpressMiddleware`.
    Actix,
}

/// The Node app's options (node/app.js with `SESSION_ROLLING=1`): `resave: false`,
/// `saveUninitialized: false`, `rolling: true`, `cookie: { maxAge: 1 h, httpOnly: true,
/// sameSite: 'lax' }`, and the owner at [`OWNER_PATH`].
pub fn sessions(store: Arc<dyn SessionStore>) -> ExpressSessions {
    ExpressSessions::new(store, SECRETS)
        .expect("two secrets")
        .resave(false)
        .save_uninitialized(false)
        .rolling(true)
        .max_age(Some(MAX_AGE))
        .http_only(true)
        .same_site(Some("lax"))
        .owner_path(OWNER_PATH)
        .expect("a valid owner path")
}

/// A Rust app being served; stopped when dropped.
pub struct RustApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stop: Stop,
}

enum Stop {
    Axum(tokio::task::AbortHandle),
    Actix(actix_web::dev::ServerHandle),
}

impl Drop for RustApp {
    fn drop(&mut self) {
        match &self.stop {
            Stop::Axum(task) => task.abort(),
            // The stop command is sent at once; its future only waits for it.
            Stop::Actix(server) => drop(server.stop(false)),
        }
    }
}

/// Serves the Node app's routes with `adapter` in front, on `sessions`, at a free port.
///
/// Routes: `POST /login {user, remember?}` (regenerate, then the user; `remember` sets a
/// 30-day `maxAge`), `GET /me` (the data, 401 without a user), `POST /cart {cart}`,
/// `POST /field/{name} {value, delay_ms?}` (waits, then sets one field), `POST /logout`
/// (destroy, 204), `POST /everywhere` (destroys every session of the user,
/// `store.destroy_by_owner`).
pub async fn serve(adapter: Adapter, sessions: ExpressSessions) -> RustApp {
    match adapter {
        Adapter::Axum => axum_app::serve(sessions).await,
        Adapter::Actix => actix_app::serve(sessions),
    }
}

/// What each handler does, whichever framework called it: a status and a JSON body.
mod routes {
    use serde_json::{Value, json};
    use session_core::express::ExpressSession;
    use session_core::{Error, SessionStore};

    use super::REMEMBER;

    pub(super) type Reply = (u16, Value);

    fn server_error(err: &Error) -> Reply {
        (500, json!({"error": err.to_string()}))
    }

    pub(super) fn login(session: &ExpressSession, body: &Value) -> Reply {
        // A fresh id at login (session fixation), as app.js does.
        session.regenerate();
        let user = body["user"].clone();
        let set = session
            .insert("user", &user)
            .and_then(|()| session.insert("passport", json!({"user": user})));
        if let Err(err) = set {
            return server_error(&err);
        }
        if body["remember"] == Value::Bool(true) {
            session.set_max_age(Some(REMEMBER));
        }
        (200, json!({"user": user}))
    }

    pub(super) fn me(session: &ExpressSession) -> Reply {
        let data = session.data();
        if data.get("user").is_none_or(Value::is_null) {
            return (401, Value::Null);
        }
        (200, Value::Object(data))
    }

    pub(super) fn cart(session: &ExpressSession, body: &Value) -> Reply {
        if session.data().get("user").is_none_or(Value::is_null) {
            return (401, Value::Null);
        }
        match session.insert("cart", &body["cart"]) {
            Ok(()) => (200, json!({"cart": body["cart"]})),
            Err(err) => server_error(&err),
        }
    }

    pub(super) async fn field(session: &ExpressSession, name: &str, body: &Value) -> Reply {
        if let Some(delay) = body["delay_ms"].as_u64() {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        match session.insert(name, &body["value"]) {
            Ok(()) => (200, json!({name: body["value"]})),
            Err(err) => (400, json!({"error": err.to_string()})),
        }
    }

    pub(super) fn logout(session: &ExpressSession) -> Reply {
        session.destroy();
        (204, Value::Null)
    }

    /// Log out everywhere: every session of this user, on every device, Node's included.
    /// The request's own session goes too, and the layer must not bring it back.
    pub(super) async fn everywhere(session: &ExpressSession, store: &dyn SessionStore) -> Reply {
        let Ok(Some(user)) = session.get::<String>("user") else {
            return (401, Value::Null);
        };
        match store.destroy_by_owner(&user).await {
            Ok(destroyed) => (200, json!({"destroyed": destroyed})),
            Err(err) => server_error(&err),
        }
    }
}

mod axum_app {
    use std::sync::Arc;

    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde_json::Value;
    use session_core::SessionStore;
    use session_core::express::ExpressSessions;
    use session_tower::express::{Express, ExpressLayer};

    use super::routes::{self, Reply};
    use super::{RustApp, Stop};

    type Store = State<Arc<dyn SessionStore>>;

    fn reply((status, body): Reply) -> Response {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if body.is_null() {
            status.into_response()
        } else {
            (status, Json(body)).into_response()
        }
    }

    async fn login(Express(session): Express, Json(body): Json<Value>) -> Response {
        reply(routes::login(&session, &body))
    }

    async fn me(Express(session): Express) -> Response {
        reply(routes::me(&session))
    }

    async fn cart(Express(session): Express, Json(body): Json<Value>) -> Response {
        reply(routes::cart(&session, &body))
    }

    async fn field(
        Express(session): Express,
        Path(name): Path<String>,
        Json(body): Json<Value>,
    ) -> Response {
        reply(routes::field(&session, &name, &body).await)
    }

    async fn logout(Express(session): Express) -> Response {
        reply(routes::logout(&session))
    }

    async fn everywhere(Express(session): Express, State(store): Store) -> Response {
        reply(routes::everywhere(&session, &*store).await)
    }

    pub(super) async fn serve(sessions: ExpressSessions) -> RustApp {
        let store = Arc::clone(sessions.store());
        let router = Router::new()
            .route("/login", post(login))
            .route("/me", get(me))
            .route("/cart", post(cart))
            .route("/field/{name}", post(field))
            .route("/logout", post(logout))
            .route("/everywhere", post(everywhere))
            .with_state(store)
            .layer(ExpressLayer::new(sessions));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the axum test server");
        let addr = listener.local_addr().expect("a bound address");
        let task = tokio::spawn(async move { axum::serve(listener, router).await });
        RustApp {
            base: format!("http://{addr}"),
            stop: Stop::Axum(task.abort_handle()),
        }
    }
}

mod actix_app {
    use std::sync::Arc;

    use actix_web::http::StatusCode;
    use actix_web::{App, HttpResponse, HttpServer, web};
    use serde_json::Value;
    use session_actix::express::{Express, ExpressMiddleware};
    use session_core::SessionStore;
    use session_core::express::ExpressSessions;

    use super::routes::{self, Reply};
    use super::{RustApp, Stop};

    type Store = web::Data<Arc<dyn SessionStore>>;

    fn reply((status, body): Reply) -> HttpResponse {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if body.is_null() {
            HttpResponse::build(status).finish()
        } else {
            HttpResponse::build(status).json(body)
        }
    }

    async fn login(session: Express, body: web::Json<Value>) -> HttpResponse {
        reply(routes::login(&session, &body))
    }

    async fn me(session: Express) -> HttpResponse {
        reply(routes::me(&session))
    }

    async fn cart(session: Express, body: web::Json<Value>) -> HttpResponse {
        reply(routes::cart(&session, &body))
    }

    async fn field(
        session: Express,
        name: web::Path<String>,
        body: web::Json<Value>,
    ) -> HttpResponse {
        reply(routes::field(&session, &name, &body).await)
    }

    async fn logout(session: Express) -> HttpResponse {
        reply(routes::logout(&session))
    }

    async fn everywhere(session: Express, store: Store) -> HttpResponse {
        reply(routes::everywhere(&session, &***store).await)
    }

    /// actix-web runs its own runtime: the server lives on a thread of its own.
    pub(super) fn serve(sessions: ExpressSessions) -> RustApp {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let store: Store = web::Data::new(Arc::clone(sessions.store()));
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(store.clone())
                        .wrap(ExpressMiddleware::new(sessions.clone()))
                        .route("/login", web::post().to(login))
                        .route("/me", web::get().to(me))
                        .route("/cart", web::post().to(cart))
                        .route("/field/{name}", web::post().to(field))
                        .route("/logout", web::post().to(logout))
                        .route("/everywhere", web::post().to(everywhere))
                })
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("binding the actix test server");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle()))
                    .expect("the test waits for the address");
                server.await
            })
        });
        let (addr, handle) = rx.recv().expect("the actix server started");
        RustApp {
            base: format!("http://{addr}"),
            stop: Stop::Actix(handle),
        }
    }
}

/// One HTTP exchange, read to the end: express-session sends the headers before its store
/// write finishes and holds back the end of the body until then.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The JSON body (`null` when empty or not JSON).
    pub body: Value,
    /// The `connect.sid` cookie the response set, if any: its value (empty when cleared)
    /// and its `Expires`.
    pub cookie: Option<SetCookie>,
    /// Every `Set-Cookie` header, as sent.
    pub set_cookie: Vec<String>,
}

/// The `connect.sid` cookie of a response.
#[derive(Debug, Clone)]
pub struct SetCookie {
    /// The signed value (empty when the response clears the cookie).
    pub value: String,
    /// Its `Expires`, if any.
    pub expires: Option<OffsetDateTime>,
    /// Whether it is `HttpOnly`.
    pub http_only: bool,
    /// Whether it is `SameSite=Lax`.
    pub same_site_lax: bool,
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("the app answers");
    let status = response.status().as_u16();
    let cookie = response
        .cookies()
        .find(|cookie| cookie.name() == COOKIE_NAME)
        .map(|cookie| SetCookie {
            value: cookie.value().to_owned(),
            expires: cookie.expires().map(OffsetDateTime::from),
            http_only: cookie.http_only(),
            same_site_lax: cookie.same_site_lax(),
        });
    let set_cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect();
    let bytes = response.bytes().await.expect("the body is read");
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        cookie,
        set_cookie,
    }
}

/// A browser: one cookie jar for every app on 127.0.0.1 (cookies don't care for ports).
struct Browser {
    client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl std::ops::Deref for Browser {
    type Target = reqwest::Client;

    fn deref(&self) -> &reqwest::Client {
        &self.client
    }
}

impl Browser {
    fn new() -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .build()
            .expect("a reqwest client");
        Self { client, jar }
    }

    /// The `connect.sid` value it holds for `base`'s host.
    fn cookie(&self, base: &str) -> String {
        jar_cookie(&self.jar, base).unwrap_or_else(|| panic!("no {COOKIE_NAME} for {base}"))
    }
}

/// A client sending the cookie `value` and nothing else (no jar): a stolen or old cookie.
fn with_cookie(value: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        COOKIE,
        format!("{COOKIE_NAME}={value}")
            .parse()
            .expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a reqwest client")
}

async fn get(client: &reqwest::Client, url: String) -> Reply {
    send(client.get(url)).await
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Reply {
    send(client.post(url).json(&body)).await
}

/// The session id a response's cookie names (verified with both secrets).
fn cookie_id(reply: &Reply, what: &str) -> SessionId {
    let cookie = reply
        .cookie
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no {COOKIE_NAME} cookie set ({reply:?})"));
    SignedCookie::new(SECRETS)
        .expect("two secrets")
        .verify(&cookie.value)
        .unwrap_or_else(|| panic!("{what}: the cookie does not verify ({reply:?})"))
}

/// Asserts `at` is `max_age` after some instant in `[before, after]`, within a second:
/// express-session's rule (`expires = now + originalMaxAge` at each touch); HTTP dates
/// drop the milliseconds.
fn assert_expiry(
    what: &str,
    at: OffsetDateTime,
    before: OffsetDateTime,
    after: OffsetDateTime,
    max_age: Duration,
) {
    let low = before + max_age - Duration::SECOND;
    let high = after + max_age + Duration::SECOND;
    assert!(
        low <= at && at <= high,
        "{what}: expires {at}, expected {max_age} after the request ({before} .. {after})"
    );
}

/// [`assert_expiry`] for an expiry the store holds, which the Node store may have rounded
/// up by as much as `rounding`.
fn assert_stored_expiry(
    what: &str,
    at: OffsetDateTime,
    before: OffsetDateTime,
    after: OffsetDateTime,
    max_age: Duration,
    rounding: Duration,
) {
    let low = before + max_age - Duration::SECOND;
    let high = after + max_age + Duration::SECOND + rounding;
    assert!(
        low <= at && at <= high,
        "{what}: stored expiry {at}, expected {max_age} after the request ({before} .. \
         {after}), rounded up by {rounding} at most"
    );
}

/// The cookie's `Expires` of a reply, asserted to follow `max_age`.
fn assert_cookie_expiry(
    what: &str,
    reply: &Reply,
    before: OffsetDateTime,
    after: OffsetDateTime,
    max_age: Duration,
) {
    let cookie = reply
        .cookie
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no cookie sent (rolling is on): {reply:?}"));
    let expires = cookie
        .expires
        .unwrap_or_else(|| panic!("{what}: the cookie has no Expires: {reply:?}"));
    assert_expiry(what, expires, before, after, max_age);
}

/// Asserts the stored cookie object's `originalMaxAge` is `max_age`, within a second:
/// express-session recomputes it as `expires - Date.now()` whenever it sets `maxAge`
/// (login, each rolling touch), so Node's writes are a millisecond short now and then.
fn assert_max_age(what: &str, record: &Record, max_age: Duration) {
    let cookie = record
        .cookie()
        .unwrap_or_else(|| panic!("{what}: no cookie object stored"));
    let stored = cookie["originalMaxAge"]
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: originalMaxAge {}", cookie["originalMaxAge"]));
    let expected = max_age.whole_milliseconds() as i64;
    assert!(
        (stored - expected).abs() <= 1000,
        "{what}: originalMaxAge {stored}, expected {expected}"
    );
}

async fn stored(store: &dyn SessionStore, id: &SessionId) -> Option<Record> {
    store.get(id).await.expect("the store answers")
}

/// How far connect-pg-simple moves a session's expiry up from express-session's
/// `now + maxAge`: it stores `expire` in whole seconds, rounded up
/// (`to_timestamp(Math.ceil(expires / 1000))`), and the store reads that column.
pub const PG_SIMPLE_ROUNDING: Duration = Duration::SECOND;

/// Runs the scenario with the Rust app on `adapter`, next to the Node app at `node`; both
/// on `store` (see the module docs).
///
/// `rounding`: how much later than express-session's rule a Node write may leave the
/// stored expiry: zero for connect-redis and connect-mongo (milliseconds kept),
/// [`PG_SIMPLE_ROUNDING`] for connect-pg-simple. The checks on stored expiries allow it on
/// top of their second, and the rolling case waits that much longer so a rolled expiry is
/// still seen to move by a second.
pub async fn scenario(
    adapter: Adapter,
    store: Arc<dyn SessionStore>,
    node: &str,
    rounding: Duration,
) {
    let app = serve(adapter, sessions(Arc::clone(&store))).await;
    let rust = app.base.as_str();
    let store = &*store;
    let what = |step: &str| format!("{adapter:?}: {step}");

    // Nobody is logged in anywhere, and a request that changes nothing sets no cookie
    // (saveUninitialized: false) and stores nothing.
    let alice = Browser::new();
    let reply = get(&alice, format!("{rust}/me")).await;
    assert_eq!(reply.status, 401, "{}", what("no login yet"));
    assert!(reply.cookie.is_none(), "{}", what("uninitialized cookie"));

    // 1. Login on Node; Rust serves it, rolling its expiry as Node would.
    let before = now();
    let reply = post(&alice, format!("{node}/login"), json!({"user": "alice"})).await;
    let after = now();
    assert_eq!(reply.status, 200);
    let id = cookie_id(&reply, &what("Node login"));
    let node_record = stored(store, &id).await.expect("Node stored the session");
    assert_stored_expiry(
        &what("Node login's stored expiry"),
        node_record.expires_at(),
        before,
        after,
        MAX_AGE,
        rounding,
    );
    // Rolling: a second later, a Rust request moves the expiry to now + maxAge, in the
    // store and in the cookie.
    tokio::time::sleep((Duration::milliseconds(1200) + rounding).unsigned_abs()).await;
    let before = now();
    let reply = get(&alice, format!("{rust}/me")).await;
    let after = now();
    assert_eq!(reply.status, 200, "{}", what("Rust reads Node's login"));
    assert_eq!(reply.body["user"], "alice");
    assert_eq!(reply.body["passport"], json!({"user": "alice"}));
    assert!(reply.body.get("cookie").is_none(), "{:?}", reply.body);
    assert_eq!(cookie_id(&reply, &what("rolling")), id, "the same session");
    let cookie = reply.cookie.as_ref().expect("checked");
    assert!(cookie.http_only && cookie.same_site_lax, "{reply:?}");
    assert_cookie_expiry(&what("rolling cookie"), &reply, before, after, MAX_AGE);
    let rolled = stored(store, &id).await.expect("still stored");
    assert_stored_expiry(
        &what("rolling stored expiry"),
        rolled.expires_at(),
        before,
        after,
        MAX_AGE,
        rounding,
    );
    assert!(
        rolled.expires_at() >= node_record.expires_at() + Duration::SECOND,
        "{}: Node's login stored {}, the rolled session {}",
        what("rolling moved the expiry"),
        node_record.expires_at(),
        rolled.expires_at()
    );
    // Node still serves it, and rolls it too.
    let before = now();
    let reply = get(&alice, format!("{node}/me")).await;
    let after = now();
    assert_eq!(
        reply.status,
        200,
        "{}",
        what("Node after Rust's rolling touch")
    );
    assert_eq!(reply.body["user"], "alice");
    assert_cookie_expiry(
        &what("Node's rolling cookie"),
        &reply,
        before,
        after,
        MAX_AGE,
    );

    // 2. Changes both ways: Rust's cart is Node's and Node's is Rust's; Node's cookie
    //    object stays as Node wrote it.
    let reply = post(&alice, format!("{rust}/cart"), json!({"cart": ["book", 2]})).await;
    assert_eq!(reply.status, 200, "{}", what("Rust cart"));
    let reply = get(&alice, format!("{node}/me")).await;
    assert_eq!(
        reply.body["cart"],
        json!(["book", 2]),
        "{}",
        what("Node reads Rust's cart")
    );
    assert_eq!(reply.body["user"], "alice");
    let record = stored(store, &id).await.expect("still stored");
    assert_max_age(&what("Node's cookie object kept"), &record, MAX_AGE);
    assert_eq!(record.cookie().expect("checked")["sameSite"], "lax");
    let reply = post(&alice, format!("{node}/cart"), json!({"cart": {"n": 3}})).await;
    assert_eq!(reply.status, 200);
    let reply = get(&alice, format!("{rust}/me")).await;
    assert_eq!(
        reply.body["cart"],
        json!({"n": 3}),
        "{}",
        what("Rust reads Node's cart")
    );

    // 3. Old secret: Node's session in a cookie signed with the secret both list second
    //    (a browser that has not been back since the rotation) works in Rust, which
    //    re-signs it with the first; a change made with it reaches Node.
    let old_signed = SignedCookie::new([SECRETS[1]])
        .expect("a secret")
        .sign_encoded(&id);
    let old = with_cookie(&old_signed);
    let reply = get(&old, format!("{rust}/me")).await;
    assert_eq!(reply.status, 200, "{}", what("old-secret cookie refused"));
    assert_eq!(reply.body["user"], "alice");
    let resigned = reply.cookie.as_ref().expect("rolling sends the cookie");
    assert_eq!(
        SignedCookie::new([SECRETS[0]])
            .expect("a secret")
            .verify(&resigned.value),
        Some(id.clone()),
        "{}",
        what("Rust re-signs with the first secret")
    );
    let reply = post(&old, format!("{rust}/cart"), json!({"cart": ["old"]})).await;
    assert_eq!(reply.status, 200);
    let reply = get(&alice, format!("{node}/me")).await;
    assert_eq!(
        reply.body["cart"],
        json!(["old"]),
        "{}",
        what("old-secret change")
    );
    // A cookie signed with a secret neither side lists is a new visitor.
    let forged = SignedCookie::new(["not ours"])
        .expect("a secret")
        .sign_encoded(&id);
    let reply = get(&with_cookie(&forged), format!("{rust}/me")).await;
    assert_eq!(
        reply.status,
        401,
        "{}",
        what("a forged cookie was accepted")
    );

    // 4. Regenerate in Rust: a login over Node's session gets a new id, and the old session
    //    is gone for both sides.
    let old_cookie = alice.cookie(rust);
    let reply = post(&alice, format!("{rust}/login"), json!({"user": "bob"})).await;
    assert_eq!(reply.status, 200, "{}", what("Rust login"));
    let bob = cookie_id(&reply, &what("Rust login"));
    assert_ne!(bob, id, "{}", what("login kept the id (session fixation)"));
    assert!(
        stored(store, &id).await.is_none(),
        "{}",
        what("regenerate left the old session")
    );
    let reply = get(&with_cookie(&old_cookie), format!("{node}/me")).await;
    assert_eq!(
        reply.status,
        401,
        "{}",
        what("Node serves the regenerated-away session")
    );
    // Node reads the cookie object Rust stored as the app's: an hour, rolled by Node.
    let before = now();
    let reply = get(&alice, format!("{node}/me")).await;
    let after = now();
    assert_eq!(reply.status, 200, "{}", what("Node reads Rust's login"));
    assert_cookie_expiry(
        &what("Node's cookie for a Rust login"),
        &reply,
        before,
        after,
        MAX_AGE,
    );
    assert_eq!(reply.body["user"], "bob");
    assert_eq!(reply.body["passport"], json!({"user": "bob"}));
    let record = stored(store, &bob).await.expect("Rust stored the login");
    assert_eq!(record.owner(), Some("bob"), "{}", what("owner"));
    // Its cookie object is Node's for a dated cookie: `expires` a date (a `null` one is a
    // browser-session cookie to a Node app that does not roll).
    let cookie = record.cookie().expect("a cookie object");
    let expires = session_core::express::cookie_expires(cookie)
        .unwrap_or_else(|| panic!("{}: {cookie:?}", what("the stored cookie has no expires")));
    // Node's touch just now moved only the store's expiry (connect-pg-simple's `expire`,
    // connect-mongo's `expires`, rounded up as the store does), not the cookie's date.
    assert!(
        (expires - record.expires_at()).abs() <= Duration::SECOND + rounding,
        "{}: cookie.expires {expires}, session {}",
        what("stored cookie"),
        record.expires_at()
    );
    assert_max_age(&what("Rust login's cookie object"), &record, MAX_AGE);

    // 5. Logout in Rust: Node refuses the cookie after it, even sent again.
    let bob_cookie = alice.cookie(rust);
    let reply = post(&alice, format!("{rust}/logout"), json!({})).await;
    assert_eq!(reply.status, 204);
    let cleared = reply.cookie.as_ref().expect("logout clears the cookie");
    assert!(cleared.value.is_empty(), "{reply:?}");
    assert!(
        stored(store, &bob).await.is_none(),
        "{}",
        what("Rust logout")
    );
    let reply = get(&with_cookie(&bob_cookie), format!("{node}/me")).await;
    assert_eq!(
        reply.status,
        401,
        "{}",
        what("Node serves a Rust-logged-out session")
    );

    // 6. Regenerate in Node over a Rust session, then logout in Node: Rust refuses both
    //    cookies.
    let reply = post(&alice, format!("{rust}/login"), json!({"user": "carol"})).await;
    let carol = cookie_id(&reply, &what("Rust login"));
    let carol_cookie = alice.cookie(rust);
    let reply = post(&alice, format!("{node}/login"), json!({"user": "dan"})).await;
    assert_eq!(reply.status, 200);
    let dan = cookie_id(&reply, &what("Node login over Rust's"));
    assert_ne!(dan, carol);
    assert!(
        stored(store, &carol).await.is_none(),
        "{}",
        what("Node regenerate")
    );
    let reply = get(&with_cookie(&carol_cookie), format!("{rust}/me")).await;
    assert_eq!(
        reply.status,
        401,
        "{}",
        what("Rust serves Node's regenerated-away session")
    );
    assert_eq!(get(&alice, format!("{rust}/me")).await.body["user"], "dan");
    let dan_cookie = alice.cookie(rust);
    let reply = post(&alice, format!("{node}/logout"), json!({})).await;
    assert_eq!(reply.status, 204);
    let reply = get(&with_cookie(&dan_cookie), format!("{rust}/me")).await;
    assert_eq!(
        reply.status,
        401,
        "{}",
        what("Rust serves a Node-logged-out session")
    );
    assert!(
        reply.cookie.is_none(),
        "{}",
        what("a cookie for a gone session")
    );
    assert!(stored(store, &dan).await.is_none());

    remember_me(adapter, store, rust, node, rounding).await;
    log_out_everywhere(adapter, store, rust, node).await;
    parallel_requests(adapter, store, rust, node).await;
    drop(app);
}

/// "Remember me": a 30-day `maxAge` set on one side is the session's own, honoured by the
/// other side's cookie and by the store, and outlives the other side's rolling touches.
async fn remember_me(
    adapter: Adapter,
    store: &dyn SessionStore,
    rust: &str,
    node: &str,
    rounding: Duration,
) {
    let what = |step: &str| format!("{adapter:?}: remember me: {step}");
    for (login_side, other_side) in [(rust, node), (node, rust)] {
        let browser = Browser::new();
        let before = now();
        let reply = post(
            &browser,
            format!("{login_side}/login"),
            json!({"user": "rita", "remember": true}),
        )
        .await;
        let after = now();
        let side = if login_side == rust { "Rust" } else { "Node" };
        assert_eq!(reply.status, 200, "{}", what(side));
        let id = cookie_id(&reply, &what(side));
        assert_cookie_expiry(
            &what(&format!("{side}'s cookie")),
            &reply,
            before,
            after,
            REMEMBER,
        );
        let record = stored(store, &id).await.expect("stored");
        assert_stored_expiry(
            &what("stored expiry"),
            record.expires_at(),
            before,
            after,
            REMEMBER,
            rounding,
        );
        assert_max_age(&what(side), &record, REMEMBER);
        // The other side's rolling touch keeps the session's own maxAge.
        let before = now();
        let reply = get(&browser, format!("{other_side}/me")).await;
        let after = now();
        assert_eq!(reply.status, 200, "{}", what("the other side serves it"));
        assert_cookie_expiry(
            &what("the other side's cookie"),
            &reply,
            before,
            after,
            REMEMBER,
        );
        let record = stored(store, &id).await.expect("stored");
        assert_stored_expiry(
            &what("expiry after the other side"),
            record.expires_at(),
            before,
            after,
            REMEMBER,
            rounding,
        );
        // And a change there keeps it too.
        let reply = post(&browser, format!("{other_side}/cart"), json!({"cart": [1]})).await;
        assert_eq!(reply.status, 200);
        assert_cookie_expiry(&what("after a change"), &reply, before, now(), REMEMBER);
        let record = stored(store, &id).await.expect("stored");
        assert_max_age(&what("after a change"), &record, REMEMBER);
        assert_stored_expiry(
            &what("stored after a change"),
            record.expires_at(),
            before,
            now(),
            REMEMBER,
            rounding,
        );
    }
}

/// "Log out everywhere" from the Rust app ends every session of the user: the ones Node
/// created (which Rust never read) and the request's own; another user's stay.
async fn log_out_everywhere(adapter: Adapter, store: &dyn SessionStore, rust: &str, node: &str) {
    let what = |step: &str| format!("{adapter:?}: log out everywhere: {step}");
    let user = format!("dave-{}", &SessionId::generate().expose()[..8]);
    let login = |base: String| {
        let user = user.clone();
        async move {
            let browser = Browser::new();
            let reply = post(&browser, format!("{base}/login"), json!({"user": user})).await;
            assert_eq!(reply.status, 200);
            let id = cookie_id(&reply, "login");
            (browser, id)
        }
    };
    let (phone, phone_id) = login(node.to_owned()).await;
    let (laptop, laptop_id) = login(node.to_owned()).await;
    let (tablet, tablet_id) = login(rust.to_owned()).await;
    let erin = Browser::new();
    let reply = post(
        &erin,
        format!("{node}/login"),
        json!({"user": format!("erin-{user}")}),
    )
    .await;
    let erin_id = cookie_id(&reply, "erin's login");

    let reply = post(&tablet, format!("{rust}/everywhere"), json!({})).await;
    assert_eq!(reply.status, 200, "{}", what("the route"));
    assert_eq!(reply.body["destroyed"], 3, "{}", what("sessions destroyed"));
    // The request's own session went too, and the layer did not bring it back.
    assert!(
        reply
            .cookie
            .as_ref()
            .is_some_and(|cookie| cookie.value.is_empty()),
        "{}: {reply:?}",
        what("the cookie is cleared")
    );
    for (device, browser, id) in [
        ("phone (Node)", &phone, &phone_id),
        ("laptop (Node)", &laptop, &laptop_id),
        ("tablet (Rust)", &tablet, &tablet_id),
    ] {
        let left = stored(store, id).await;
        assert!(
            left.is_none(),
            "{}: survived as {:?} (created {:?}, expires {:?}, version {:?}, owner {:?})",
            what(device),
            left.as_ref().map(Record::data),
            left.as_ref().map(Record::created_at),
            left.as_ref().map(Record::expires_at),
            left.as_ref().map(Record::version),
            left.as_ref().map(Record::owner),
        );
        for base in [node, rust] {
            let reply = get(browser, format!("{base}/me")).await;
            assert_eq!(reply.status, 401, "{} on {base}", what(device));
        }
    }
    for base in [node, rust] {
        let reply = get(&erin, format!("{base}/me")).await;
        assert_eq!(reply.status, 200, "{}", what("another user's session"));
    }
    assert!(stored(store, &erin_id).await.is_some());
}

/// Parallel requests through the adapter, each setting a field of one session: all land
/// (the commit's compare-and-swap), and a session destroyed while they run stays so.
async fn parallel_requests(adapter: Adapter, store: &dyn SessionStore, rust: &str, node: &str) {
    const N: usize = 12;
    let what = |step: &str| format!("{adapter:?}: parallel: {step}");
    let browser = Browser::new();
    let reply = post(&browser, format!("{rust}/login"), json!({"user": "pat"})).await;
    let id = cookie_id(&reply, &what("login"));
    let replies = futures::future::join_all((0..N).map(|i| {
        post(
            &browser,
            format!("{rust}/field/f{i}"),
            json!({"value": i, "delay_ms": 50}),
        )
    }))
    .await;
    assert!(
        replies.iter().all(|reply| reply.status == 200),
        "{replies:?}"
    );
    let record = stored(store, &id).await.expect("stored");
    for i in 0..N {
        assert_eq!(
            record.data().get(&format!("f{i}")),
            Some(&json!(i)),
            "{}: {:?}",
            what("a field was lost"),
            record.data()
        );
    }
    assert_eq!(record.data()["user"], "pat");
    // Node reads them all.
    let reply = get(&browser, format!("{node}/me")).await;
    assert_eq!(reply.body[format!("f{}", N - 1)], json!(N - 1));

    // Logout in another tab (on Node) while N requests are in the handler (loaded 200 ms
    // before, answered 400 ms after).
    let cookie = browser.cookie(rust);
    let writes = futures::future::join_all((0..N).map(|i| {
        post(
            &browser,
            format!("{rust}/field/g{i}"),
            json!({"value": i, "delay_ms": 600}),
        )
    }));
    let logout = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        post(&with_cookie(&cookie), format!("{node}/logout"), json!({})).await
    };
    let (replies, logout) = tokio::join!(writes, logout);
    assert_eq!(logout.status, 204);
    assert!(
        stored(store, &id).await.is_none(),
        "{}",
        what("a write brought back a session destroyed meanwhile")
    );
    // Each response clears the cookie; one whose request a loaded machine only read after
    // the logout got a new session, as express-session would give it, never the old id.
    let mut cleared = 0;
    for reply in &replies {
        let sent = reply
            .cookie
            .as_ref()
            .unwrap_or_else(|| panic!("{}: {reply:?}", what("no cookie on a rolling response")));
        if sent.value.is_empty() {
            cleared += 1;
        } else {
            assert_ne!(
                cookie_id(reply, &what("a late request")),
                id,
                "{}: {reply:?}",
                what("a response to a destroyed session keeps its cookie")
            );
        }
    }
    assert!(
        cleared > 0,
        "{}",
        what("no request was in its handler at the logout (the machine too slow?)")
    );
    let reply = get(&with_cookie(&cookie), format!("{node}/me")).await;
    assert_eq!(reply.status, 401);
}

// What the backends' own live tests (express_interop, express_postgres, express_mongo) share
// beside the scenario: they drive app.js and the axum app of [`serve`] with one jar.

/// `GET {base}/me` (the same route on app.js and the Rust apps): the session's fields
/// (status 200), or the status.
pub async fn whoami(client: &reqwest::Client, base: &str) -> Result<Value, u16> {
    let response = client
        .get(format!("{base}/me"))
        .send()
        .await
        .expect("the app answers");
    match response.status().as_u16() {
        200 => Ok(response.json().await.expect("a JSON body")),
        other => {
            response.bytes().await.expect("the whole body");
            Err(other)
        }
    }
}

/// `POST url` with a JSON body (or none); the status once the whole response is read:
/// express-session sends the headers before its store write finishes and holds back the
/// end of the body until then.
pub async fn post_status(client: &reqwest::Client, url: String, body: Option<Value>) -> u16 {
    let mut request = client.post(url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the app answers");
    let status = response.status().as_u16();
    response.bytes().await.expect("the whole body");
    status
}

/// The signed `connect.sid` `jar` holds for `base`'s host (cookies don't care for ports:
/// Node's and Rust's apps share it).
pub fn jar_cookie(jar: &reqwest::cookie::Jar, base: &str) -> Option<String> {
    use reqwest::cookie::CookieStore;
    let header = jar.cookies(&base.parse().expect("a base URL"))?;
    let text = header.to_str().expect("cookies are ASCII");
    text.split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

/// One browser (one cookie jar) between app.js and the axum adapter app on the same store:
/// the backends' `share_one_login` tests. The Rust app has app.js' options, not rolling
/// (app.js runs with `SESSION_ROLLING=0` there); it commits through [`ExpressSessions`],
/// so a check that needs a particular store call makes it on the store itself.
pub struct SharedLogin {
    /// The Rust app, stopped when this is dropped.
    pub app: RustApp,
    /// Its base URL.
    pub rust: String,
    /// app.js' base URL.
    pub node: String,
    /// The browser's cookie jar.
    pub jar: Arc<reqwest::cookie::Jar>,
    /// The browser.
    pub client: reqwest::Client,
    /// Verifies and signs `connect.sid` with [`SECRETS`].
    pub cookies: SignedCookie,
}

impl SharedLogin {
    /// Serves the axum adapter app on `store` next to app.js at `node`, and checks that
    /// nobody is logged in on either side.
    pub async fn start(store: Arc<dyn SessionStore>, node: &str) -> Self {
        let app = serve(Adapter::Axum, sessions(store).rolling(false)).await;
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .build()
            .expect("a reqwest client");
        let shared = Self {
            rust: app.base.clone(),
            app,
            node: node.to_owned(),
            jar,
            client,
            cookies: SignedCookie::new(SECRETS).expect("two secrets"),
        };
        assert_eq!(whoami(&shared.client, &shared.node).await, Err(401));
        assert_eq!(whoami(&shared.client, &shared.rust).await, Err(401));
        shared
    }

    /// Logs `user` in on Node: one cookie for both apps, which verifies in Rust, and Rust
    /// sees the user. Returns the session's id.
    pub async fn login_on_node(&self, user: &str) -> SessionId {
        let (node, rust) = (&self.node, &self.rust);
        let status = post_status(
            &self.client,
            format!("{node}/login"),
            Some(json!({"user": user})),
        )
        .await;
        assert_eq!(status, 200);
        let node_cookie = jar_cookie(&self.jar, node).expect("Node set connect.sid");
        assert_eq!(
            jar_cookie(&self.jar, rust),
            Some(node_cookie.clone()),
            "one cookie for both"
        );
        let id = self
            .cookies
            .verify(&node_cookie)
            .expect("Node's cookie verifies in Rust");
        assert_eq!(
            whoami(&self.client, rust).await.expect("Rust sees it")["user"],
            user
        );
        id
    }

    /// Logs `user` in on Rust; returns the id its cookie names (Node's view is the
    /// caller's to check, after whatever it checks of the Rust write).
    pub async fn login_on_rust(&self, user: &str) -> SessionId {
        let rust = &self.rust;
        let status = post_status(
            &self.client,
            format!("{rust}/login"),
            Some(json!({"user": user})),
        )
        .await;
        assert_eq!(status, 200);
        let cookie = jar_cookie(&self.jar, rust).expect("Rust set connect.sid");
        self.cookies
            .verify(&cookie)
            .expect("Rust's cookie verifies")
    }

    /// Node sets the cart (a session Rust wrote, say) and Rust reads it.
    pub async fn node_cart_seen_by_rust(&self, cart: Value) {
        let node = &self.node;
        let status = post_status(
            &self.client,
            format!("{node}/cart"),
            Some(json!({"cart": cart})),
        )
        .await;
        assert_eq!(status, 200);
        let seen = whoami(&self.client, &self.rust)
            .await
            .expect("Rust sees it");
        assert_eq!(seen["cart"], cart);
    }

    /// Logs out on Rust (204); Node says 401.
    pub async fn logout_on_rust(&self) {
        let rust = &self.rust;
        let status = post_status(&self.client, format!("{rust}/logout"), None).await;
        assert_eq!(status, 204);
        assert_eq!(whoami(&self.client, &self.node).await, Err(401));
    }

    /// Logs `user` in on Node, Rust sees the user; logs out on Node (204), Rust says 401.
    pub async fn node_login_and_logout_seen_by_rust(&self, user: &str) {
        self.login_on_node(user).await;
        let node = &self.node;
        let status = post_status(&self.client, format!("{node}/logout"), None).await;
        assert_eq!(status, 204);
        assert_eq!(whoami(&self.client, &self.rust).await, Err(401));
    }
}

/// A fresh browser logged in as `user` on app.js at `node` (log out everywhere's devices).
pub async fn node_login(node: &str, user: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("a reqwest client");
    let status = post_status(
        &client,
        format!("{node}/login"),
        Some(json!({"user": user})),
    )
    .await;
    assert_eq!(status, 200);
    client
}

/// A Node write between a Rust read and its update is never overwritten: after
/// `store.get(id)`, app.js at `node` sets the cart (`POST /cart`, with `client`'s cookie
/// for `id`); the update from that read must fail as a conflict, and `modify` then applies
/// the same change on top of Node's, which Node's `/me` shows with its cart kept, and
/// `created_at` kept. Called on the store directly: the adapters commit through `modify`,
/// so no route of theirs makes a stale update.
pub async fn node_write_between_read_and_update(
    store: &dyn SessionStore,
    client: &reqwest::Client,
    node: &str,
    id: &SessionId,
) {
    let mut read = store
        .get(id)
        .await
        .expect("a read")
        .expect("the session is live");
    let created_at = read.created_at();
    let status = post_status(
        client,
        format!("{node}/cart"),
        Some(json!({"cart": ["from node"]})),
    )
    .await;
    assert_eq!(status, 200);
    read.insert("seen_by", "rust").expect("a string field");
    let err = store
        .update(&mut read)
        .await
        .expect_err("a Rust update overwrote a Node write it never read");
    assert!(
        err.is_conflict(),
        "a Rust update overwrote a Node write it never read: {err}"
    );
    session_core::modify(store, id, 8, |record| {
        record.insert("seen_by", "rust").expect("a string field");
    })
    .await
    .expect("modify on top of Node's write")
    .expect("the session is live");
    let seen = whoami(client, node)
        .await
        .expect("Node still sees the user");
    assert_eq!(seen["cart"], json!(["from node"]), "Node's write was lost");
    assert_eq!(seen["seen_by"], "rust");
    let after = store.get(id).await.expect("a read").expect("live");
    assert_eq!(after.created_at(), created_at, "created_at changed");
}

/// "Log out everywhere" with the owner path `passport.user` on `store`, beside the Node app
/// at `node`: dave's two Node logins (never read by Rust) and his Rust session go, Node
/// then answers 401 on each; erin's session and frank's, whose data merely names dave,
/// stay. Each backend's live test runs it on its store.
pub async fn log_out_everywhere_reaches_node_logins(store: &dyn SessionStore, node: &str) {
    let dave_phone = node_login(node, "dave").await;
    let dave_laptop = node_login(node, "dave").await;
    let erin = node_login(node, "erin").await;
    let mut rust_side = Record::new(now() + Duration::hours(1));
    rust_side
        .insert("passport", json!({"user": "dave"}))
        .unwrap();
    store.create(&mut rust_side).await.unwrap();
    // Another user's data naming dave is not dave's session.
    let mut mentions = Record::new(now() + Duration::hours(1));
    mentions
        .insert("passport", json!({"user": "frank"}))
        .unwrap();
    mentions.insert("doc", json!({"user": "dave"})).unwrap();
    store.create(&mut mentions).await.unwrap();

    let listed = store.list_by_owner("dave").await.unwrap();
    assert_eq!(
        listed.len(),
        3,
        "Node's two sessions and Rust's one: {listed:?}"
    );
    assert_eq!(store.destroy_by_owner("dave").await.unwrap(), 3);
    for client in [&dave_phone, &dave_laptop] {
        assert_eq!(
            whoami(client, node).await,
            Err(401),
            "dave survived log out everywhere"
        );
    }
    assert!(store.get(rust_side.id()).await.unwrap().is_none());
    assert!(
        store.get(mentions.id()).await.unwrap().is_some(),
        "frank's session went with dave's"
    );
    assert_eq!(whoami(&erin, node).await.unwrap()["user"], "erin");
    assert_eq!(store.list_by_owner("erin").await.unwrap().len(), 1);
}

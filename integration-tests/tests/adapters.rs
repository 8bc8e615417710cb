//! The middleware adapters over real HTTP: an axum app with tower-sessions and an actix-web
//! app with actix-session, each on our stores, driven by reqwest.
//!
//! Every scenario runs for both adapters on every backend in `integration_tests::backends`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::cookie::{Cookie, CookieJar, Key};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use session_core::{SessionId, SessionStore};
use session_memory::MemoryStore;
use time::Duration;

use integration_tests::backends::on_every_backend;

/// A user name no other test (or earlier run on a shared server) has used.
fn unique_user(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}-{n}-{}",
        std::process::id(),
        &SessionId::generate().expose()[..8]
    )
}

// ---------------------------------------------------------------------------------------
// The two apps: the same routes on each middleware
//
//   GET  /visit         counts visits in the session (creates an anonymous session)
//   POST /login/{user}  writes the user into the session and moves it to a new id
//   GET  /me            {"user", "visits"} or 401
//   POST /logout        ends the session
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapter {
    Tower,
    Actix,
}

const ADAPTERS: [Adapter; 2] = [Adapter::Tower, Adapter::Actix];

/// Both middlewares call their cookie `id` by default.
const COOKIE_NAME: &str = "id";

/// A running app.
struct Served {
    base: String,
    /// actix's cookie is encrypted with this key; tower's holds the id as it is.
    key: Option<Key>,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The session id inside a `id=...` cookie pair.
    fn session_id(&self, pair: &str) -> SessionId {
        let value = match &self.key {
            None => pair.split_once('=').expect("a cookie pair").1.to_owned(),
            Some(key) => {
                // actix percent-encodes the encrypted value.
                let cookie = Cookie::parse_encoded(pair.to_owned()).expect("a cookie pair");
                let mut jar = CookieJar::new();
                jar.add_original(cookie);
                jar.private(key)
                    .get(COOKIE_NAME)
                    .expect("the cookie decrypts with the app's key")
                    .value()
                    .to_owned()
            }
        };
        SessionId::parse(&value).expect("the cookie holds a valid session id")
    }
}

/// Serves `adapter` over `store`. `ttl`: the session lifetime; `secure_defaults`: the
/// helpers' settings untouched (Secure cookies), else Secure off for plain HTTP.
async fn serve(
    adapter: Adapter,
    store: Arc<dyn SessionStore>,
    ttl: Duration,
    secure_defaults: bool,
) -> Served {
    match adapter {
        Adapter::Tower => tower_app::serve(store, ttl, secure_defaults).await,
        Adapter::Actix => actix_app::serve(store, ttl, secure_defaults),
    }
}

mod tower_app {
    use super::*;
    use axum::Router;
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use session_tower::{Expiry, Session, TowerStore};

    fn internal(err: impl std::fmt::Display) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
    }

    async fn visit(session: Session) -> Result<String, Response> {
        let n = session
            .get::<u32>("visits")
            .await
            .map_err(internal)?
            .unwrap_or(0)
            + 1;
        session.insert("visits", n).await.map_err(internal)?;
        Ok(n.to_string())
    }

    async fn login(session: Session, Path(user): Path<String>) -> Result<StatusCode, Response> {
        session.insert("user", user).await.map_err(internal)?;
        // Fixation defence: the session moves to a new id at login.
        session.cycle_id().await.map_err(internal)?;
        Ok(StatusCode::OK)
    }

    async fn me(session: Session) -> Result<Response, Response> {
        let Some(user) = session.get::<String>("user").await.map_err(internal)? else {
            return Ok(StatusCode::UNAUTHORIZED.into_response());
        };
        let visits = session.get::<u32>("visits").await.map_err(internal)?;
        Ok(axum::Json(json!({"user": user, "visits": visits})).into_response())
    }

    async fn logout(session: Session) -> Result<StatusCode, Response> {
        session.flush().await.map_err(internal)?;
        Ok(StatusCode::NO_CONTENT)
    }

    pub(super) async fn serve(
        store: Arc<dyn SessionStore>,
        ttl: Duration,
        secure_defaults: bool,
    ) -> Served {
        let mut layer = TowerStore::new(store)
            .with_owner_key("user")
            .secure_layer()
            .with_expiry(Expiry::OnInactivity(ttl));
        if !secure_defaults {
            layer = layer.with_secure(false);
        }
        let app = Router::new()
            .route("/visit", get(visit))
            .route("/login/{user}", post(login))
            .route("/me", get(me))
            .route("/logout", post(logout))
            .layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Served {
            base: format!("http://{addr}"),
            key: None,
        }
    }
}

mod actix_app {
    use super::*;
    use actix_web::{App, HttpResponse, HttpServer, web};
    use session_actix::actix_session::config::BrowserSession;
    use session_actix::{ActixStore, Session};

    async fn visit(session: Session) -> actix_web::Result<String> {
        let n = session.get::<u32>("visits")?.unwrap_or(0) + 1;
        session.insert("visits", n)?;
        Ok(n.to_string())
    }

    async fn login(session: Session, user: web::Path<String>) -> actix_web::Result<HttpResponse> {
        session.insert("user", user.into_inner())?;
        // Fixation defence: the state moves to a new key at login.
        session.renew();
        Ok(HttpResponse::Ok().finish())
    }

    async fn me(session: Session) -> actix_web::Result<HttpResponse> {
        let Some(user) = session.get::<String>("user")? else {
            return Ok(HttpResponse::Unauthorized().finish());
        };
        let visits = session.get::<u32>("visits")?;
        Ok(HttpResponse::Ok().json(json!({"user": user, "visits": visits})))
    }

    async fn logout(session: Session) -> HttpResponse {
        session.purge();
        HttpResponse::NoContent().finish()
    }

    /// actix-web runs its own runtime: the server lives on a thread of its own.
    pub(super) fn serve(
        store: Arc<dyn SessionStore>,
        ttl: Duration,
        secure_defaults: bool,
    ) -> Served {
        let key = Key::generate();
        let app_key = key.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let mut sessions = ActixStore::new(store.clone())
                        .with_owner_key("user")
                        .secure_middleware(app_key.clone())
                        .session_lifecycle(BrowserSession::default().state_ttl(ttl));
                    if !secure_defaults {
                        sessions = sessions.cookie_secure(false);
                    }
                    App::new()
                        .wrap(sessions.build())
                        .route("/visit", web::get().to(visit))
                        .route("/login/{user}", web::post().to(login))
                        .route("/me", web::get().to(me))
                        .route("/logout", web::post().to(logout))
                })
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("binding the actix test server");
                tx.send(server.addrs()[0])
                    .expect("the test waits for the address");
                server.run().await
            })
        });
        let addr = rx.recv().expect("the actix server started");
        Served {
            base: format!("http://{addr}"),
            key: Some(key),
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------

fn jar_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// The session cookie's Set-Cookie header, if the response sets one.
fn set_cookie_header(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{COOKIE_NAME}=")))
}

/// The `id=...` pair from a response's Set-Cookie.
fn session_cookie(response: &reqwest::Response) -> String {
    let header = set_cookie_header(response).expect("a session cookie is set");
    header.split(';').next().unwrap().to_owned()
}

/// `GET path` with a manual Cookie header from a client without a jar: a replayed cookie.
async fn replay(app: &Served, path: &str, pair: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url(path))
        .header(COOKIE, pair)
        .send()
        .await
        .unwrap()
}

async fn get(client: &reqwest::Client, app: &Served, path: &str) -> reqwest::Response {
    client.get(app.url(path)).send().await.unwrap()
}

async fn post(client: &reqwest::Client, app: &Served, path: &str) -> reqwest::Response {
    client.post(app.url(path)).send().await.unwrap()
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// Anonymous visits, login (the id changes, the data moves along, the old id is dead),
/// read, modify, logout, and the logged-out cookie is refused.
async fn login_read_modify_logout(adapter: Adapter, store: Arc<dyn SessionStore>) {
    let ctx = format!("{adapter:?} on {store:?}");
    let app = serve(adapter, store.clone(), Duration::minutes(30), false).await;
    let client = jar_client();
    let user = unique_user("alice");

    // Anonymous.
    let first = get(&client, &app, "/visit").await;
    assert_eq!(first.status(), StatusCode::OK, "{ctx}");
    let anonymous_pair = session_cookie(&first);
    let anonymous = app.session_id(&anonymous_pair);
    assert_eq!(first.text().await.unwrap(), "1", "{ctx}");
    assert!(
        store.get(&anonymous).await.unwrap().is_some(),
        "{ctx}: stored"
    );
    assert_eq!(
        get(&client, &app, "/visit").await.text().await.unwrap(),
        "2",
        "{ctx}"
    );
    assert_eq!(
        get(&client, &app, "/me").await.status(),
        StatusCode::UNAUTHORIZED,
        "{ctx}"
    );

    // Log in: a new id, the data carried over, the old id gone.
    let login = post(&client, &app, &format!("/login/{user}")).await;
    assert_eq!(login.status(), StatusCode::OK, "{ctx}");
    let pair = session_cookie(&login);
    let id = app.session_id(&pair);
    assert_ne!(
        id, anonymous,
        "{ctx}: the id must change at login (fixation)"
    );
    assert!(
        store.get(&anonymous).await.unwrap().is_none(),
        "{ctx}: pre-login id dead"
    );
    let record = store
        .get(&id)
        .await
        .unwrap()
        .expect("the session is stored");
    assert_eq!(
        record.get::<String>("user").unwrap().as_deref(),
        Some(user.as_str())
    );
    assert_eq!(
        record.get::<u32>("visits").unwrap(),
        Some(2),
        "{ctx}: stored as JSON"
    );
    assert_eq!(
        record.owner(),
        Some(user.as_str()),
        "{ctx}: owner from the data key"
    );
    let replayed = replay(&app, "/me", &anonymous_pair).await;
    assert_eq!(
        replayed.status(),
        StatusCode::UNAUTHORIZED,
        "{ctx}: pre-login cookie works"
    );

    // Read.
    let me = get(&client, &app, "/me").await;
    assert_eq!(me.status(), StatusCode::OK, "{ctx}");
    assert_eq!(
        me.json::<Value>().await.unwrap(),
        json!({"user": user, "visits": 2})
    );

    // Modify.
    assert_eq!(
        get(&client, &app, "/visit").await.text().await.unwrap(),
        "3",
        "{ctx}"
    );
    let me = get(&client, &app, "/me")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(me["visits"], 3, "{ctx}");
    let listed = store.list_by_owner(&user).await.unwrap();
    assert_eq!(listed.len(), 1, "{ctx}");
    assert_eq!(listed[0].id(), &id, "{ctx}: a change keeps the id");
    assert_eq!(
        replay(&app, "/me", &pair).await.status(),
        StatusCode::OK,
        "{ctx}"
    );

    // Log out.
    let out = post(&client, &app, "/logout").await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT, "{ctx}");
    assert_eq!(
        get(&client, &app, "/me").await.status(),
        StatusCode::UNAUTHORIZED,
        "{ctx}"
    );
    assert!(
        store.get(&id).await.unwrap().is_none(),
        "{ctx}: destroyed in the store"
    );
    let replayed = replay(&app, "/me", &pair).await;
    assert_eq!(
        replayed.status(),
        StatusCode::UNAUTHORIZED,
        "{ctx}: a logged-out cookie still works"
    );
    assert!(
        store.get(&id).await.unwrap().is_none(),
        "{ctx}: not resurrected"
    );
}

/// A session past its expiry is refused, even when the cookie is replayed by hand.
async fn expired_session_is_refused(adapter: Adapter, store: Arc<dyn SessionStore>) {
    let ctx = format!("{adapter:?} on {store:?}");
    let app = serve(adapter, store.clone(), Duration::milliseconds(800), false).await;
    let user = unique_user("eve");
    let login = post(&reqwest::Client::new(), &app, &format!("/login/{user}")).await;
    assert_eq!(login.status(), StatusCode::OK, "{ctx}");
    let pair = session_cookie(&login);
    assert_eq!(
        replay(&app, "/me", &pair).await.status(),
        StatusCode::OK,
        "{ctx}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(
        replay(&app, "/me", &pair).await.status(),
        StatusCode::UNAUTHORIZED,
        "{ctx}: an expired session still works"
    );
    assert!(
        store.get(&app.session_id(&pair)).await.unwrap().is_none(),
        "{ctx}"
    );
}

/// "Log out everywhere" through the wrapped store, thanks to the owner key.
async fn revoked_by_owner(adapter: Adapter, store: Arc<dyn SessionStore>) {
    let ctx = format!("{adapter:?} on {store:?}");
    let app = serve(adapter, store.clone(), Duration::minutes(30), false).await;
    let user = unique_user("bob");
    let (laptop, phone) = (jar_client(), jar_client());
    for client in [&laptop, &phone] {
        let login = post(client, &app, &format!("/login/{user}")).await;
        assert_eq!(login.status(), StatusCode::OK, "{ctx}");
        assert_eq!(
            get(client, &app, "/me").await.status(),
            StatusCode::OK,
            "{ctx}"
        );
    }
    assert_eq!(store.list_by_owner(&user).await.unwrap().len(), 2, "{ctx}");
    assert_eq!(store.destroy_by_owner(&user).await.unwrap(), 2, "{ctx}");
    for client in [&laptop, &phone] {
        assert_eq!(
            get(client, &app, "/me").await.status(),
            StatusCode::UNAUTHORIZED,
            "{ctx}: a revoked session still works"
        );
    }
}

/// The helpers' defaults: HttpOnly, Secure, SameSite=Lax.
async fn default_cookie_is_secure(adapter: Adapter, store: Arc<dyn SessionStore>) {
    let app = serve(adapter, store, Duration::minutes(30), true).await;
    let response = get(&reqwest::Client::new(), &app, "/visit").await;
    assert_eq!(response.status(), StatusCode::OK);
    let header = set_cookie_header(&response).expect("a session cookie is set");
    let attributes: Vec<String> = header
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for wanted in ["httponly", "secure", "samesite=lax", "path=/"] {
        assert!(
            attributes.iter().any(|a| a == wanted),
            "{adapter:?}: {wanted} missing in {header}"
        );
    }
}

#[tokio::test]
async fn tower_login_read_modify_logout() {
    on_every_backend("tower_login_read_modify_logout", |store| {
        login_read_modify_logout(Adapter::Tower, store)
    })
    .await;
}

#[tokio::test]
async fn actix_login_read_modify_logout() {
    on_every_backend("actix_login_read_modify_logout", |store| {
        login_read_modify_logout(Adapter::Actix, store)
    })
    .await;
}

#[tokio::test]
async fn tower_expired_session_is_refused() {
    on_every_backend("tower_expired_session_is_refused", |store| {
        expired_session_is_refused(Adapter::Tower, store)
    })
    .await;
}

#[tokio::test]
async fn actix_expired_session_is_refused() {
    on_every_backend("actix_expired_session_is_refused", |store| {
        expired_session_is_refused(Adapter::Actix, store)
    })
    .await;
}

#[tokio::test]
async fn tower_revoked_by_owner() {
    on_every_backend("tower_revoked_by_owner", |store| {
        revoked_by_owner(Adapter::Tower, store)
    })
    .await;
}

#[tokio::test]
async fn actix_revoked_by_owner() {
    on_every_backend("actix_revoked_by_owner", |store| {
        revoked_by_owner(Adapter::Actix, store)
    })
    .await;
}

#[tokio::test]
async fn default_cookies_are_http_only_secure_and_lax() {
    for adapter in ADAPTERS {
        default_cookie_is_secure(adapter, Arc::new(MemoryStore::new())).await;
    }
}

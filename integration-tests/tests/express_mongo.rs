//! A real express-session + connect-mongo app (node/app.js with `SESSION_STORE=mongo`) and
//! a Rust app on
//! `MongoStore` in the express-session format share one collection and one cookie: a login
//! on either side is seen by the other, changes made on either side are read by the other
//! (a Node write between a Rust read and its update is never overwritten), a logout on
//! either side ends the session for both, both agree on when a session expires, and "log
//! out everywhere" reaches the sessions Node created (`owner_path`).
//!
//! The `*_adapter_scenario` tests run issue 16's whole scenario
//! (integration_tests::express_apps) through each adapter (axum, actix-web) on connect-mongo.
//!
//! Needs `node` on PATH and `npm ci` run in integration-tests/node (scripts/test does it),
//! and a MongoDB-protocol server (`SESSION_STORES_MONGO_URL`). Without them the test is
//! skipped loudly, unless `CI` is set: then it fails.

#![allow(clippy::unwrap_used)] // a failed call is a failed test

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use integration_tests::express_apps::{self, Adapter};
use integration_tests::node::NodeApp;
use integration_tests::{Backend, server_url};
use serde_json::{Value, json};
use session_core::{Record, SessionId, SessionStore, SignedCookie, modify, now, unix_millis};
use session_mongo::mongodb::bson::{Bson, Document, doc};
use session_mongo::{ExpiryMode, Format, MongoConfig, MongoStore};

const COOKIE: &str = "connect.sid";
const SECRETS: [&str; 2] = ["new secret", "keyboard cat"];
const DATABASE: &str = "session_express_tests";

/// The Rust side: the same routes as app.js, on `MongoStore` in the express format.
#[derive(Clone)]
struct RustApp {
    store: MongoStore,
    cookies: SignedCookie,
}

impl RustApp {
    fn session_id(&self, headers: &HeaderMap) -> Option<SessionId> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| self.cookies.verify(value))
    }
}

async fn me(State(app): State<RustApp>, headers: HeaderMap) -> Response {
    let Some(id) = app.session_id(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match app.store.get(&id).await.unwrap() {
        Some(record) if record.data().contains_key("user") => {
            Json(Value::Object(record.data().clone())).into_response()
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn cart(State(app): State<RustApp>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let Some(id) = app.session_id(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let cart = body["cart"].clone();
    let changed = modify(&app.store, &id, 8, |record| {
        if record.data().contains_key("user") {
            record.insert("cart", cart.clone()).unwrap();
        }
    })
    .await
    .unwrap();
    match changed {
        Some((record, ())) if record.data().contains_key("user") => {
            Json(json!({"cart": record.data()["cart"]})).into_response()
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn login(State(app): State<RustApp>, Json(body): Json<Value>) -> Response {
    let mut record = Record::new(now() + time::Duration::hours(1));
    record.insert("user", body["user"].clone()).unwrap();
    record
        .insert("passport", json!({"user": body["user"]}))
        .unwrap();
    app.store.create(&mut record).await.unwrap();
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
        app.cookies.sign_encoded(record.id())
    );
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({"user": body["user"]})),
    )
        .into_response()
}

async fn logout(State(app): State<RustApp>, headers: HeaderMap) -> Response {
    if let Some(id) = app.session_id(&headers) {
        app.store.destroy(&id).await.unwrap();
    }
    let clear = format!("{COOKIE}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}

async fn serve_rust(app: RustApp) -> String {
    let router = axum::Router::new()
        .route("/me", get(me))
        .route("/cart", post(cart))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// `GET {base}/me`: the session's fields (status 200), or the status.
async fn whoami(client: &reqwest::Client, base: &str) -> Result<Value, u16> {
    let response = client.get(format!("{base}/me")).send().await.unwrap();
    match response.status().as_u16() {
        200 => Ok(response.json().await.unwrap()),
        other => {
            response.bytes().await.unwrap();
            Err(other)
        }
    }
}

/// `POST url` with a JSON body (or none); the status once the whole response is read
/// (express-session finishes its store write before it ends the body).
async fn send(client: &reqwest::Client, url: String, body: Option<Value>) -> u16 {
    let mut request = client.post(url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    response.bytes().await.unwrap();
    status
}

/// The signed `connect.sid` the jar holds for 127.0.0.1.
fn jar_cookie(jar: &reqwest::cookie::Jar, base: &str) -> Option<String> {
    use reqwest::cookie::CookieStore;
    let header = jar.cookies(&base.parse().unwrap())?;
    header
        .to_str()
        .unwrap()
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The stored document under `id`.
async fn raw(store: &MongoStore, id: &SessionId) -> Option<Document> {
    store
        .collection()
        .find_one(doc! { "_id": id.expose() })
        .await
        .unwrap()
}

/// The session object a document holds, parsed.
fn session_of(document: &Document) -> Value {
    serde_json::from_str(document.get_str("session").unwrap()).unwrap()
}

/// `expires` of a document, in Unix ms.
fn expires_of(document: &Document) -> i64 {
    document.get_datetime("expires").unwrap().timestamp_millis()
}

/// A fresh collection, the Node app on it (`rolling` as asked) and an express-format store
/// on it; `None` when node or the server is missing (skipped loudly).
async fn set_up(owner_path: Option<&str>, rolling: bool) -> Option<(NodeApp, MongoStore)> {
    const WHAT: &str = "the express + connect-mongo interop test";
    if !integration_tests::node::available(WHAT) {
        return None;
    }
    let url = match server_url(Backend::Mongo) {
        Ok(url) => url,
        Err(skip) => {
            session_core::conformance::skip(WHAT, &skip.0);
            return None;
        }
    };
    let database = integration_tests::mongo_test_database(&url, DATABASE).await;
    let collection = format!("sessions_{}", &SessionId::generate().expose()[..16]);
    let config = MongoConfig {
        database: Some(database.into()),
        collection: Some(collection.clone()),
        expiry: ExpiryMode::Disabled,
        format: Format::ExpressSession,
        owner_path: owner_path.map(str::to_owned),
        ..MongoConfig::default()
    };
    let store = MongoStore::connect(&url, config).await.unwrap();
    let node = NodeApp::start(
        "app.js",
        &[
            ("SESSION_STORE", "mongo"),
            ("SESSION_ROLLING", if rolling { "1" } else { "0" }),
            ("MONGO_URL", url.as_str()),
            ("MONGO_DB", DATABASE),
            ("SESSION_COLLECTION", collection.as_str()),
            ("SESSION_SECRETS", &SECRETS.join(",")),
        ],
    );
    Some((node, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_session_on_connect_mongo_and_rust_share_one_login() {
    let Some((node, store)) = set_up(None, false).await else {
        return;
    };
    let cookies = SignedCookie::new(SECRETS).unwrap();
    let rust = serve_rust(RustApp {
        store: store.clone(),
        cookies: cookies.clone(),
    })
    .await;
    let node_url = node.base.clone();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    assert_eq!(whoami(&client, &node_url).await, Err(401));
    assert_eq!(whoami(&client, &rust).await, Err(401));

    // 1. Login on Node; Rust sees the same user with the same cookie.
    let status = send(
        &client,
        format!("{node_url}/login"),
        Some(json!({"user": "alice"})),
    );
    assert_eq!(status.await, 200);
    let node_cookie = jar_cookie(&jar, &node_url).expect("Node set connect.sid");
    let id = cookies
        .verify(&node_cookie)
        .expect("Node's cookie verifies in Rust");
    assert_eq!(whoami(&client, &rust).await.unwrap()["user"], "alice");
    let node_written = store.get(&id).await.unwrap().unwrap();
    assert!(
        node_written.version() >= 1 << 52,
        "{}",
        node_written.version()
    );
    let created_at = node_written.created_at();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        again.created_at(),
        created_at,
        "the first read's stamp did not hold"
    );
    assert_eq!(
        again.version(),
        node_written.version(),
        "the stamp changed the version"
    );

    // 2. Rust changes the cart; Node sees it, and the document stays connect-mongo's.
    let status = send(
        &client,
        format!("{rust}/cart"),
        Some(json!({"cart": ["book", 2]})),
    );
    assert_eq!(status.await, 200);
    // As Rust wrote it (before Node's next read touches `expires` only, leaving the
    // cookie's date in the string stale, as connect-mongo's own touch does).
    let document = raw(&store, &id).await.unwrap();
    let mut fields: Vec<&str> = document.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["_id", "expires", "session"], "{document}");
    let session = session_of(&document);
    assert_eq!(
        session["cookie"]["originalMaxAge"], 3_600_000,
        "Node's cookie kept: {session}"
    );
    assert_eq!(session["cookie"]["sameSite"], "lax");
    let cookie_expires =
        session_core::express::parse_js_iso(session["cookie"]["expires"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        unix_millis(cookie_expires),
        expires_of(&document),
        "cookie and document agree"
    );
    let seen = whoami(&client, &node_url).await.unwrap();
    assert_eq!(
        (seen["user"].clone(), seen["cart"].clone()),
        (json!("alice"), json!(["book", 2]))
    );

    // 3. Node changes the cart; Rust sees it, created_at kept; a Rust update from a read
    //    made before Node's write is a conflict, and `modify` applies it on top.
    let mut read = store.get(&id).await.unwrap().unwrap();
    let status = send(
        &client,
        format!("{node_url}/cart"),
        Some(json!({"cart": ["from node"]})),
    );
    assert_eq!(status.await, 200);
    read.insert("seen_by", "rust").unwrap();
    let err = store.update(&mut read).await.unwrap_err();
    assert!(
        err.is_conflict(),
        "a Rust update overwrote a Node write it never read: {err}"
    );
    modify(&store, &id, 8, |record| {
        record.insert("seen_by", "rust").unwrap();
    })
    .await
    .unwrap()
    .unwrap();
    let seen = whoami(&client, &node_url).await.unwrap();
    assert_eq!(seen["cart"], json!(["from node"]), "Node's write was lost");
    assert_eq!(seen["seen_by"], "rust");
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().created_at(),
        created_at
    );

    // 4. Expiry agrees. Node's touch (a read of an unchanged session) moves `expires`, and
    //    Rust reads that; a Rust touch to a moment ago ends the session for Node too.
    assert!(
        store
            .touch(&id, now() + time::Duration::minutes(10))
            .await
            .unwrap()
    );
    let before = unix_millis(now());
    whoami(&client, &node_url).await.unwrap();
    let touched = store.get(&id).await.unwrap().unwrap();
    let node_expiry = unix_millis(touched.expires_at());
    assert!(
        node_expiry >= before + 3_600_000 - 5_000,
        "Rust did not read Node's touch: {node_expiry} vs {before}"
    );
    assert!(
        store
            .touch(&id, now() + time::Duration::milliseconds(300))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        whoami(&client, &node_url).await,
        Err(401),
        "Node still sees a session Rust ended"
    );
    assert!(store.get(&id).await.unwrap().is_none());

    // 5. Login on Rust; Node sees the user, changes the cart, Rust reads it.
    let status = send(
        &client,
        format!("{rust}/login"),
        Some(json!({"user": "bob"})),
    );
    assert_eq!(status.await, 200);
    let rust_id = cookies.verify(&jar_cookie(&jar, &rust).unwrap()).unwrap();
    assert_ne!(rust_id, id);
    assert_eq!(whoami(&client, &node_url).await.unwrap()["user"], "bob");
    let status = send(
        &client,
        format!("{node_url}/cart"),
        Some(json!({"cart": ["pen"]})),
    );
    assert_eq!(status.await, 200);
    assert_eq!(
        whoami(&client, &rust).await.unwrap()["cart"],
        json!(["pen"])
    );

    // 6. Logout on Rust; Node says 401. Then login and logout on Node; Rust says 401.
    assert_eq!(send(&client, format!("{rust}/logout"), None).await, 204);
    assert_eq!(whoami(&client, &node_url).await, Err(401));
    assert!(raw(&store, &rust_id).await.is_none());
    let status = send(
        &client,
        format!("{node_url}/login"),
        Some(json!({"user": "carol"})),
    );
    assert_eq!(status.await, 200);
    assert_eq!(whoami(&client, &rust).await.unwrap()["user"], "carol");
    assert_eq!(send(&client, format!("{node_url}/logout"), None).await, 204);
    assert_eq!(whoami(&client, &rust).await, Err(401));
    drop(node);
}

/// "Log out everywhere" reaches sessions Node created and Rust never read: with the owner
/// path `passport.user` (where app.js, like Passport, keeps the login) the walk finds
/// them, and Node then answers 401 on each; another user's session stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_reaches_node_created_sessions() {
    let Some((node, store)) = set_up(Some("passport.user"), false).await else {
        return;
    };
    let login = |user: &'static str| {
        let base = node.base.clone();
        async move {
            let client = reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap();
            assert_eq!(
                send(
                    &client,
                    format!("{base}/login"),
                    Some(json!({"user": user}))
                )
                .await,
                200
            );
            client
        }
    };
    let dave_phone = login("dave").await;
    let dave_laptop = login("dave").await;
    let erin = login("erin").await;
    let mut rust_side = Record::new(now() + time::Duration::hours(1));
    rust_side
        .insert("passport", json!({"user": "dave"}))
        .unwrap();
    store.create(&mut rust_side).await.unwrap();

    let listed = store.list_by_owner("dave").await.unwrap();
    assert_eq!(
        listed.len(),
        3,
        "Node's two sessions and Rust's one: {listed:?}"
    );
    assert_eq!(store.destroy_by_owner("dave").await.unwrap(), 3);
    for client in [&dave_phone, &dave_laptop] {
        assert_eq!(
            whoami(client, &node.base).await,
            Err(401),
            "dave survived log out everywhere"
        );
    }
    assert!(store.get(rust_side.id()).await.unwrap().is_none());
    assert_eq!(whoami(&erin, &node.base).await.unwrap()["user"], "erin");
    assert_eq!(store.list_by_owner("erin").await.unwrap().len(), 1);
    drop(node);
}

/// What is not connect-mongo's document is a decode error naming the id, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_documents_are_decode_errors() {
    let Some((node, store)) = set_up(None, false).await else {
        return;
    };
    drop(node);
    let later = session_mongo::mongodb::bson::DateTime::from_millis(unix_millis(
        now() + time::Duration::hours(1),
    ));
    for (session, expires) in [
        (Bson::String("{not json".into()), Bson::DateTime(later)),
        (Bson::String("[1]".into()), Bson::DateTime(later)),
        (
            Bson::String(r#"{"user":"no cookie"}"#.into()),
            Bson::DateTime(later),
        ),
        (
            Bson::String(r#"{"cookie":{},"__session_stores":{"owner":7}}"#.into()),
            Bson::DateTime(later),
        ),
        (Bson::Document(doc! { "cookie": {} }), Bson::DateTime(later)),
        (Bson::Int32(3), Bson::DateTime(later)),
    ] {
        let id = SessionId::generate();
        store
            .collection()
            .insert_one(doc! { "_id": id.expose(), "session": session.clone(), "expires": expires })
            .await
            .unwrap();
        let err = store.get(&id).await.unwrap_err();
        assert!(
            matches!(err, session_core::Error::Decode { .. }),
            "{session}: {err}"
        );
        assert_eq!(err.session_id(), Some(&id));
        assert!(
            store
                .touch(&id, now() + time::Duration::hours(2))
                .await
                .is_err(),
            "{session}"
        );
        assert!(raw(&store, &id).await.is_some(), "left alone");
    }
    // A string `expires` never matches connect-mongo's live filter: no session, as for Node.
    let id = SessionId::generate();
    let value = r#"{"cookie":{"originalMaxAge":null,"expires":null}}"#;
    store
        .collection()
        .insert_one(doc! { "_id": id.expose(), "session": value, "expires": "tomorrow" })
        .await
        .unwrap();
    assert!(store.get(&id).await.unwrap().is_none());
}

/// Issue 16's scenario (integration_tests::express_apps) with the Rust app on the axum
/// adapter, next to app.js with `rolling: true` on the same connect-mongo collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_adapter_scenario() {
    adapter_scenario(Adapter::Axum).await;
}

/// The scenario with the Rust app on the actix-web adapter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_adapter_scenario() {
    adapter_scenario(Adapter::Actix).await;
}

async fn adapter_scenario(adapter: Adapter) {
    let Some((node, store)) = set_up(Some(express_apps::OWNER_PATH), true).await else {
        return;
    };
    // connect-mongo keeps milliseconds: no rounding.
    express_apps::scenario(adapter, Arc::new(store), &node.base, time::Duration::ZERO).await;
    drop(node);
}

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

use integration_tests::express_apps::{
    self, Adapter, SECRETS, SharedLogin, node_write_between_read_and_update, post_status, whoami,
};
use integration_tests::node::NodeApp;
use integration_tests::{Backend, server_url};
use serde_json::{Value, json};
use session_core::{SessionId, SessionStore, now, unix_millis};
use session_mongo::mongodb::bson::{Bson, Document, doc};
use session_mongo::{ExpiryMode, Format, MongoConfig, MongoStore};

const DATABASE: &str = "session_express_tests";

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
    let shared = SharedLogin::start(Arc::new(store.clone()), &node.base).await;
    let (rust, node_url, client) = (&shared.rust, &shared.node, &shared.client);

    // 1. Login on Node; Rust sees the same user with the same cookie.
    let id = shared.login_on_node("alice").await;
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
    let status = post_status(
        client,
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
    // express-session computes originalMaxAge as `expires - Date.now()`: now and then a
    // millisecond short.
    let kept = session["cookie"]["originalMaxAge"]
        .as_i64()
        .unwrap_or_default();
    assert!(
        (3_599_000..=3_600_000).contains(&kept),
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
    let seen = whoami(client, node_url).await.unwrap();
    assert_eq!(
        (seen["user"].clone(), seen["cart"].clone()),
        (json!("alice"), json!(["book", 2]))
    );

    // 3. Node changes the cart; Rust sees it, created_at kept; a Rust update from a read
    //    made before Node's write is a conflict, and `modify` applies it on top.
    node_write_between_read_and_update(&store, client, node_url, &id).await;

    // 4. Expiry agrees. Node's touch (a read of an unchanged session) moves `expires`, and
    //    Rust reads that; a Rust touch to a moment ago ends the session for Node too.
    assert!(
        store
            .touch(&id, now() + time::Duration::minutes(10))
            .await
            .unwrap()
    );
    let before = unix_millis(now());
    whoami(client, node_url).await.unwrap();
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
        whoami(client, node_url).await,
        Err(401),
        "Node still sees a session Rust ended"
    );
    assert!(store.get(&id).await.unwrap().is_none());

    // 5. Login on Rust; Node sees the user, changes the cart, Rust reads it.
    let rust_id = shared.login_on_rust("bob").await;
    assert_ne!(rust_id, id);
    assert_eq!(whoami(client, node_url).await.unwrap()["user"], "bob");
    shared.node_cart_seen_by_rust(json!(["pen"])).await;

    // 6. Logout on Rust; Node says 401. Then login and logout on Node; Rust says 401.
    shared.logout_on_rust().await;
    assert!(raw(&store, &rust_id).await.is_none());
    shared.node_login_and_logout_seen_by_rust("carol").await;
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
    express_apps::log_out_everywhere_reaches_node_logins(&store, &node.base).await;
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

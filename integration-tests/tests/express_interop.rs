//! A real express-session + connect-redis app (node/app.js) and a Rust app on
//! `RedisStore::express_session()` share one Redis, one prefix and one cookie: a login on
//! either side is seen by the other, changes made on either side are read by the other,
//! and a logout on either side ends the session for both. Also checks secret rotation.
//! The Rust app is built on the adapters only (integration_tests::express_apps); the
//! `*_adapter_scenario*` tests run issue 16's whole scenario through each of them.
//!
//! Needs `node` on PATH and `npm ci` run in integration-tests/node (scripts/test does it).
//! Without node, the test is skipped loudly, unless `CI` is set: then it fails.

#![allow(clippy::unwrap_used)] // a failed call is a failed test

use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use integration_tests::express_apps::{
    self, Adapter, SharedLogin, node_write_between_read_and_update, post_status, whoami,
};
use integration_tests::node::NodeApp;
use integration_tests::{Backend, server_url};
use serde_json::{Value, json};
use session_core::{Record, SessionId, SessionStore, SignedCookie, modify, now};
use session_redis::RedisStore;

const SECRETS: [&str; 2] = express_apps::SECRETS;

/// Starts node/app.js on `redis_url` and `prefix`, signing with `secrets`
/// (comma-separated), `rolling` as asked.
fn start_node(redis_url: &str, prefix: &str, secrets: &str, rolling: bool) -> NodeApp {
    NodeApp::start(
        "app.js",
        &[
            ("REDIS_URL", redis_url),
            ("SESSION_PREFIX", prefix),
            ("SESSION_SECRETS", secrets),
            ("SESSION_ROLLING", if rolling { "1" } else { "0" }),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_session_and_rust_share_one_login() {
    share_one_login(Backend::Redis).await;
}

/// The same on a Redis Cluster: connect-redis on node-redis' cluster client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_session_and_rust_share_one_login_on_a_cluster() {
    share_one_login(Backend::RedisCluster).await;
}

/// One test's world: the Redis URL, a fresh prefix, the Node app on it and an
/// express-session store on it (with `owner_path`, if given); `None` when node or the server
/// is missing (skipped loudly).
async fn set_up(
    backend: Backend,
    owner_path: Option<&str>,
    rolling: bool,
) -> Option<(String, String, NodeApp, RedisStore)> {
    const WHAT: &str = "the express interop test";
    if !integration_tests::node::available(WHAT) {
        return None;
    }
    let redis_url = match server_url(backend) {
        Ok(url) => url,
        Err(skip) => {
            session_core::conformance::skip(WHAT, &skip.0);
            return None;
        }
    };
    let prefix = format!("interop:{}:sess:", &SessionId::generate().expose()[..16]);
    let node = start_node(&redis_url, &prefix, &SECRETS.join(","), rolling);
    let mut builder = RedisStore::builder()
        .url(&redis_url)
        .prefix(&prefix)
        .express_session();
    if let Some(path) = owner_path {
        builder = builder.owner_path(path);
    }
    let store = builder.connect().await.unwrap();
    Some((redis_url, prefix, node, store))
}

async fn share_one_login(backend: Backend) {
    let Some((redis_url, prefix, node, store)) = set_up(backend, None, false).await else {
        return;
    };
    let shared = SharedLogin::start(Arc::new(store.clone()), &node.base).await;
    let (rust, node_url, client) = (&shared.rust, &shared.node, &shared.client);

    // 1. Login on Node; Rust sees the same user with the same cookie.
    let id = shared.login_on_node("alice").await;
    let node_written = store.get(&id).await.unwrap().unwrap();
    // Node wrote it: its version is derived from its bytes (2^52 and up), and the stamp the
    // first read added keeps that version.
    assert!(
        node_written.version() >= 1 << 52,
        "{}",
        node_written.version()
    );
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().version(),
        node_written.version(),
        "the first read's stamp changed the version"
    );
    let created_at = node_written.created_at();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().created_at(),
        created_at,
        "a Node-created session's created_at changed between two reads"
    );

    // 2. Rust changes the cart; Node sees it, and Node's cookie object is kept.
    let status = post_status(
        client,
        format!("{rust}/cart"),
        Some(json!({"cart": ["book", 2]})),
    )
    .await;
    assert_eq!(status, 200);
    let seen = whoami(client, node_url).await.unwrap();
    assert_eq!(seen["user"], "alice");
    assert_eq!(seen["cart"], json!(["book", 2]));
    let raw: Value =
        serde_json::from_slice(&store.raw_get(&store.key_for(&id)).await.unwrap().unwrap())
            .unwrap();
    // express-session computes originalMaxAge as `expires - Date.now()`: now and then a
    // millisecond short.
    let kept = raw["cookie"]["originalMaxAge"].as_i64().unwrap_or_default();
    assert!(
        (3_599_000..=3_600_000).contains(&kept),
        "Node's cookie kept: {raw}"
    );
    assert_eq!(raw["cookie"]["sameSite"], "lax");
    assert!(raw["cookie"]["expires"].as_str().unwrap().ends_with('Z'));
    let rust_version = node_written.version() + 1;
    assert_eq!(raw["__session_stores"]["version"], rust_version);
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().version(),
        rust_version
    );

    // 3. Node changes the cart; Rust sees it (Node keeps our metadata as it is).
    let status = post_status(
        client,
        format!("{node_url}/cart"),
        Some(json!({"cart": {"n": 3}})),
    )
    .await;
    assert_eq!(status, 200);
    let seen = whoami(client, rust).await.unwrap();
    assert_eq!(seen["user"], "alice");
    assert_eq!(seen["cart"], json!({"n": 3}));
    let after_node = store.get(&id).await.unwrap().unwrap();
    assert_ne!(
        after_node.version(),
        rust_version,
        "Node's write kept our metadata (and its version) but changed the value: a new version"
    );
    assert_eq!(after_node.created_at(), created_at, "Node kept created_at");
    // And Rust writes on top of Node's write at that version.
    let status = post_status(client, format!("{rust}/cart"), Some(json!({"cart": []}))).await;
    assert_eq!(status, 200);
    assert_eq!(whoami(client, node_url).await.unwrap()["cart"], json!([]));

    // 3b. A Node write between a Rust read and its update is never overwritten: the update
    //     fails as a conflict, and `modify` applies its change on top of Node's.
    node_write_between_read_and_update(&store, client, node_url, &id).await;

    // 3c. Half an emoji (a lone UTF-16 surrogate), which Node stores as `\ud83d`, reads and
    //     goes through Rust's scripts (touch, update) instead of reading as corrupt.
    // serde_json can't hold it, so the body is sent as text.
    let response = client
        .post(format!("{node_url}/cart"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"cart":["half \ud83d"]}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    response.bytes().await.unwrap();
    assert_eq!(status, 200);
    let half = store.get(&id).await.unwrap().unwrap();
    assert_eq!(half.data()["cart"], json!(["half \u{fffd}"]));
    assert!(
        store
            .touch(&id, now() + time::Duration::hours(1))
            .await
            .unwrap()
    );
    modify(&store, &id, 8, |record| {
        record.insert("after_half", true).unwrap();
    })
    .await
    .unwrap()
    .unwrap();
    // Node still has its half emoji (Rust wrote the field back as Node's text), which
    // serde_json can't read: checked in the response's text.
    let seen = client
        .get(format!("{node_url}/me"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(seen.contains(r#""after_half":true"#), "{seen}");
    assert!(
        seen.contains(r#""cart":["half \ud83d"]"#),
        "Rust's write changed Node's untouched field: {seen}"
    );

    // 4. Logout on Node; Rust says 401.
    assert_eq!(
        post_status(client, format!("{node_url}/logout"), None).await,
        204
    );
    assert!(store.get(&id).await.unwrap().is_none());
    assert_eq!(whoami(client, rust).await, Err(401));

    // 5. Login on Rust; Node sees the user.
    let rust_id = shared.login_on_rust("bob").await;
    assert_ne!(rust_id, id);
    assert_eq!(whoami(client, node_url).await.unwrap()["user"], "bob");
    // Node reads and rewrites a Rust-created session too.
    shared.node_cart_seen_by_rust(json!(["pen"])).await;

    // 6. Logout on Rust; Node says 401.
    shared.logout_on_rust().await;
    assert!(store.get(&rust_id).await.unwrap().is_none());
    assert_eq!(whoami(client, rust).await, Err(401));

    // 7. Rotation: a Node app still signing with the old secret only ("keyboard cat");
    //    Rust (new secret first, old one second) accepts its cookie, and so does the
    //    Node app that rotated.
    let old = start_node(&redis_url, &prefix, SECRETS[1], false);
    let old_client = express_apps::node_login(&old.base, "carol").await;
    assert_eq!(whoami(&old_client, rust).await.unwrap()["user"], "carol");
    assert_eq!(
        whoami(&old_client, node_url).await.unwrap()["user"],
        "carol"
    );
    let old_only = SignedCookie::new([SECRETS[1]]).unwrap();
    // The cookie Rust signs with the new secret is not accepted by the old-secret app.
    let fresh = SessionId::generate();
    assert_eq!(old_only.verify(&shared.cookies.sign_encoded(&fresh)), None);
    assert_eq!(
        shared.cookies.verify(&old_only.sign_encoded(&fresh)),
        Some(fresh)
    );

    drop(old);
    drop(node);
}

/// "Log out everywhere" reaches sessions Node created and Rust never read: with
/// `owner_path("passport.user")` (where app.js, like Passport, keeps the login),
/// `list_by_owner` and `destroy_by_owner` find them by walking every session, and the Node
/// app then answers 401 on each; another user's sessions stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_reaches_node_created_sessions() {
    log_out_everywhere(Backend::Redis).await;
}

/// The same on a Redis Cluster: the walk covers every primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_reaches_node_created_sessions_on_a_cluster() {
    log_out_everywhere(Backend::RedisCluster).await;
}

async fn log_out_everywhere(backend: Backend) {
    let Some((_, _, node, store)) = set_up(backend, Some("passport.user"), false).await else {
        return;
    };
    let login = |user| express_apps::node_login(&node.base, user);
    let dave_phone = login("dave").await;
    let dave_laptop = login("dave").await;
    let erin = login("erin").await;
    // One more, created on the Rust side with its owner set (so in the owner index).
    let mut rust_side = Record::new(now() + time::Duration::hours(1));
    rust_side.set_owner(Some("dave".into()));
    store.create(&mut rust_side).await.unwrap();

    let listed = store.list_by_owner("dave").await.unwrap();
    assert_eq!(
        listed.len(),
        3,
        "Node's two sessions and Rust's one: {listed:?}"
    );
    assert!(listed.iter().all(|r| r.owner() == Some("dave")));
    assert_eq!(store.destroy_by_owner("dave").await.unwrap(), 3);
    for (name, client) in [("phone", &dave_phone), ("laptop", &dave_laptop)] {
        assert_eq!(
            whoami(client, &node.base).await,
            Err(401),
            "dave's {name} session survived log out everywhere"
        );
    }
    assert!(store.get(rust_side.id()).await.unwrap().is_none());
    assert_eq!(whoami(&erin, &node.base).await.unwrap()["user"], "erin");
    assert_eq!(store.list_by_owner("dave").await.unwrap().len(), 0);
    assert_eq!(store.list_by_owner("erin").await.unwrap().len(), 1);
    drop(node);
}

/// Issue 16's scenario (integration_tests::express_apps) with the Rust app on the axum
/// adapter, next to app.js with `rolling: true` on one Redis server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_adapter_scenario() {
    adapter_scenario(Adapter::Axum, Backend::Redis).await;
}

/// The same on a Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_adapter_scenario_on_a_cluster() {
    adapter_scenario(Adapter::Axum, Backend::RedisCluster).await;
}

/// The scenario with the Rust app on the actix-web adapter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_adapter_scenario() {
    adapter_scenario(Adapter::Actix, Backend::Redis).await;
}

/// The same on a Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_adapter_scenario_on_a_cluster() {
    adapter_scenario(Adapter::Actix, Backend::RedisCluster).await;
}

async fn adapter_scenario(adapter: Adapter, backend: Backend) {
    let Some((_, _, node, store)) = set_up(backend, Some(express_apps::OWNER_PATH), true).await
    else {
        return;
    };
    express_apps::scenario(adapter, Arc::new(store), &node.base, time::Duration::ZERO).await;
    drop(node);
}

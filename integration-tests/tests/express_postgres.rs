//! A real express-session + connect-pg-simple app (node/app.js with `SESSION_STORE=pg`) and
//! a Rust app on
//! `PostgresStore` in the express-session format share one table (connect-pg-simple's
//! `session` layout) and one cookie: a login on either side is seen by the other, changes
//! made on either side are read by the other (a Node write between a Rust read and its
//! update is never overwritten), a logout on either side ends the session for both, both
//! agree on when a session expires (with the Node connections in a time zone other than
//! UTC, +05:45, so a store reading connect-pg-simple's zoneless `expire` as UTC is off by
//! hours), and "log out everywhere" reaches the sessions Node created (`owner_path`).
//!
//! The `*_adapter_scenario` tests run issue 16's whole scenario
//! (integration_tests::express_apps) through each adapter (axum, actix-web) on connect-pg-simple.
//!
//! Needs `node` on PATH and `npm ci` run in integration-tests/node (scripts/test does it),
//! and a PostgreSQL server (`SESSION_STORES_POSTGRES_URL`). Without them the test is
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
use session_postgres::PostgresStore;
use session_postgres::sqlx::{self, Row};

const SCHEMA: &str = "express_interop";
/// The Node connections' TimeZone: 5 h 45 min east of UTC, no daylight saving time.
const ZONE: &str = "Asia/Kathmandu";

/// The stored row under `id`: `sess` as text and `expire` read in [`ZONE`], as Unix ms.
async fn raw(store: &PostgresStore, id: &SessionId) -> Option<(Value, i64)> {
    let sql = format!(
        "SELECT sess::text AS sess, \
         (extract(epoch FROM expire AT TIME ZONE '{ZONE}') * 1000)::float8 AS expire \
         FROM {} WHERE sid = $1",
        store.table()
    );
    let row = sqlx::query(&sql)
        .bind(id.expose())
        .fetch_optional(store.pool())
        .await
        .unwrap()?;
    let sess: String = row.get("sess");
    let expire: f64 = row.get("expire");
    Some((serde_json::from_str(&sess).unwrap(), expire.round() as i64))
}

/// A fresh table, the Node app on it (`rolling` as asked) and an express-format store on
/// it; `None` when node or the server is missing (skipped loudly).
async fn set_up(owner_path: Option<&str>, rolling: bool) -> Option<(NodeApp, PostgresStore)> {
    const WHAT: &str = "the express + connect-pg-simple interop test";
    if !integration_tests::node::available(WHAT) {
        return None;
    }
    let url = match server_url(Backend::Postgres) {
        Ok(url) => url,
        Err(skip) => {
            session_core::conformance::skip(WHAT, &skip.0);
            return None;
        }
    };
    let table = integration_tests::unique_name("session")
        .to_lowercase()
        .replace('-', "_");
    let mut builder = PostgresStore::builder()
        .schema(SCHEMA)
        .table(table.clone())
        .express_session()
        .express_time_zone(ZONE);
    if let Some(path) = owner_path {
        builder = builder.owner_path(path);
    }
    let store = builder.connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let node = NodeApp::start(
        "app.js",
        &[
            ("SESSION_STORE", "pg"),
            ("SESSION_ROLLING", if rolling { "1" } else { "0" }),
            ("PG_URL", url.as_str()),
            ("PG_SCHEMA", SCHEMA),
            ("SESSION_TABLE", table.as_str()),
            ("PG_TIMEZONE", ZONE),
            ("SESSION_SECRETS", &SECRETS.join(",")),
        ],
    );
    Some((node, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_session_on_connect_pg_simple_and_rust_share_one_login() {
    let Some((node, store)) = set_up(None, false).await else {
        return;
    };
    let shared = SharedLogin::start(Arc::new(store.clone()), &node.base).await;
    let (rust, node_url, client) = (&shared.rust, &shared.node, &shared.client);

    // 1. Login on Node; Rust sees the same user with the same cookie, expiring when Node
    //    says (within connect-pg-simple's whole seconds).
    let before = unix_millis(now());
    let id = shared.login_on_node("alice").await;
    let node_written = store.get(&id).await.unwrap().unwrap();
    let expires = unix_millis(node_written.expires_at());
    assert!(
        (before + 3_600_000 - 2_000..=unix_millis(now()) + 3_600_000 + 2_000).contains(&expires),
        "Rust reads Node's expiry {} s off",
        (expires - before - 3_600_000) / 1000
    );
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

    // 2. Rust changes the cart; Node sees it, and the row stays connect-pg-simple's, with
    //    Node's cookie kept and `expire` the cookie's date in Node's zone.
    let status = post_status(
        client,
        format!("{rust}/cart"),
        Some(json!({"cart": ["book", 2]})),
    );
    assert_eq!(status.await, 200);
    let (session, expire) = raw(&store, &id).await.unwrap();
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
        expire,
        "cookie and row disagree"
    );
    let seen = whoami(client, node_url).await.unwrap();
    assert_eq!(
        (seen["user"].clone(), seen["cart"].clone()),
        (json!("alice"), json!(["book", 2]))
    );

    // 3. Node changes the cart; Rust sees it, created_at kept; a Rust update from a read
    //    made before Node's write is a conflict, and `modify` applies it on top.
    node_write_between_read_and_update(&store, client, node_url, &id).await;

    // 4. Expiry agrees. Node's touch (a read of an unchanged session) moves `expire`, and
    //    Rust reads that; a Rust touch to a moment ago ends the session for Node too.
    assert!(
        store
            .touch(&id, now() + time::Duration::minutes(10))
            .await
            .unwrap()
    );
    let before = unix_millis(now());
    whoami(client, node_url).await.unwrap();
    let touched = unix_millis(store.get(&id).await.unwrap().unwrap().expires_at());
    assert!(
        (before + 3_600_000 - 2_000..=unix_millis(now()) + 3_600_000 + 2_000).contains(&touched),
        "Rust did not read Node's touch: {} s off",
        (touched - before - 3_600_000) / 1000
    );
    assert!(
        store
            .touch(&id, now() + time::Duration::milliseconds(300))
            .await
            .unwrap()
    );
    // connect-pg-simple counts a session live while `expire >= ceil(now)` in seconds.
    tokio::time::sleep(Duration::from_millis(1_400)).await;
    assert_eq!(
        whoami(client, node_url).await,
        Err(401),
        "Node still sees a session Rust ended"
    );
    assert!(store.get(&id).await.unwrap().is_none());

    // 5. Login on Rust; Node sees the user, changes the cart, Rust reads it.
    let rust_id = shared.login_on_rust("bob").await;
    assert_ne!(rust_id, id);
    let (_, expire) = raw(&store, &rust_id).await.unwrap();
    let rust_expiry = unix_millis(store.get(&rust_id).await.unwrap().unwrap().expires_at());
    assert_eq!(expire, rust_expiry, "`expire` is not in Node's time zone");
    assert_eq!(whoami(client, node_url).await.unwrap()["user"], "bob");
    shared.node_cart_seen_by_rust(json!(["pen"])).await;

    // 6. Logout on Rust; Node says 401. Then login and logout on Node; Rust says 401.
    shared.logout_on_rust().await;
    assert!(raw(&store, &rust_id).await.is_none());
    shared.node_login_and_logout_seen_by_rust("carol").await;
    drop(node);
}

/// "Log out everywhere" reaches sessions Node created and Rust never read: with the owner
/// path `passport.user` (where app.js, like Passport, keeps the login) the scan finds
/// them, and Node then answers 401 on each; another user's session stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_reaches_node_created_sessions() {
    let Some((node, store)) = set_up(Some("passport.user"), false).await else {
        return;
    };
    express_apps::log_out_everywhere_reaches_node_logins(&store, &node.base).await;
    drop(node);
}

/// What is not express-session's session object is a decode error naming the id, never a
/// panic, and the writes leave it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_rows_are_decode_errors() {
    let Some((node, store)) = set_up(None, false).await else {
        return;
    };
    drop(node);
    let insert = format!(
        "INSERT INTO {} (sid, sess, expire) \
         VALUES ($1, $2::json, (now() + interval '1 hour') AT TIME ZONE '{ZONE}')",
        store.table()
    );
    for sess in [
        "[1]",
        "3",
        r#"{"user":"no cookie"}"#,
        r#"{"cookie":[]}"#,
        r#"{"cookie":{},"__session_stores":{"owner":7}}"#,
        r#"{"cookie":{},"__session_stores":{"created_at":"yesterday"}}"#,
    ] {
        let id = SessionId::generate();
        sqlx::query(&insert)
            .bind(id.expose())
            .bind(sess)
            .execute(store.pool())
            .await
            .unwrap();
        let err = store.get(&id).await.unwrap_err();
        assert!(
            matches!(err, session_core::Error::Decode { .. }),
            "{sess}: {err}"
        );
        assert_eq!(err.session_id(), Some(&id));
        let (_, expire) = raw(&store, &id).await.unwrap();
        assert!(
            store
                .touch(&id, now() + time::Duration::hours(2))
                .await
                .is_err(),
            "{sess}"
        );
        assert_eq!(raw(&store, &id).await.unwrap().1, expire, "{sess}: touched");
    }
    // A lone surrogate (half an emoji, as JSON.stringify writes it) anywhere in a session
    // breaks PostgreSQL's JSON operators, never this store.
    let id = SessionId::generate();
    let sess = r#"{"cookie":{"originalMaxAge":null,"expires":null},"half":"\ud83d","passport":{"user":"gus"}}"#;
    sqlx::query(&insert)
        .bind(id.expose())
        .bind(sess)
        .execute(store.pool())
        .await
        .unwrap();
    let record = store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.data()["half"], "\u{fffd}");
    assert_eq!(store.count().await.unwrap(), 7);
}

/// Issue 16's scenario (integration_tests::express_apps) with the Rust app on the axum
/// adapter, next to app.js with `rolling: true` on the same connect-pg-simple PostgreSQL table.
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
    // connect-pg-simple keeps whole seconds, rounded up.
    let rounding = express_apps::PG_SIMPLE_ROUNDING;
    express_apps::scenario(adapter, Arc::new(store), &node.base, rounding).await;
    drop(node);
}

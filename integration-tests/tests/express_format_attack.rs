//! Attacks on the express-session formats of session-postgres (connect-pg-simple's
//! `session` table) and session-mongo (connect-mongo's `{_id, expires, session}`
//! documents), on real PostgreSQL and MongoDB/FerretDB servers. The Node side's writes are
//! made here as the Node stores make them (connect-pg-simple's upsert of `sess`,
//! connect-mongo's `$set` of `session`), so each race is placed exactly where it hurts.
//!
//! Each test says the promise it attacks. Skipped loudly without the server, unless `CI`
//! is set: then it fails.

#![allow(clippy::unwrap_used)] // a failed call is a failed test

use integration_tests::{Backend, server_url};
use session_core::{Error, Record, SessionId, SessionStore, now};
use session_mongo::mongodb::bson::{Bson, DateTime, Document, doc};
use session_mongo::{ExpiryMode, Format, MongoConfig, MongoStore};
use session_postgres::PostgresStore;
use session_postgres::sqlx;

const SCHEMA: &str = "express_format_attack";
const DATABASE: &str = "express_format_attack";

async fn postgres(owner_path: Option<&str>) -> Option<PostgresStore> {
    let url = match server_url(Backend::Postgres) {
        Ok(url) => url,
        Err(skip) => {
            session_core::conformance::skip("express_format_attack (postgres)", &skip.0);
            return None;
        }
    };
    let table = integration_tests::unique_name("session")
        .to_lowercase()
        .replace('-', "_");
    let mut builder = PostgresStore::builder()
        .schema(SCHEMA)
        .table(table)
        .express_session();
    if let Some(path) = owner_path {
        builder = builder.owner_path(path);
    }
    let store = builder.connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    Some(store)
}

async fn mongo(owner_path: Option<&str>) -> Option<MongoStore> {
    let url = match server_url(Backend::Mongo) {
        Ok(url) => url,
        Err(skip) => {
            session_core::conformance::skip("express_format_attack (mongo)", &skip.0);
            return None;
        }
    };
    let database = integration_tests::mongo_test_database(&url, DATABASE).await;
    let config = MongoConfig {
        database: Some(database.into()),
        collection: Some(format!(
            "sessions_{}",
            &SessionId::generate().expose()[..16]
        )),
        expiry: ExpiryMode::Disabled,
        format: Format::ExpressSession,
        owner_path: owner_path.map(str::to_owned),
        ..MongoConfig::default()
    };
    Some(MongoStore::connect(&url, config).await.unwrap())
}

/// `sess` of the row under `id`, exactly as stored.
async fn pg_text(store: &PostgresStore, id: &str) -> Option<String> {
    let sql = format!("SELECT sess::text FROM {} WHERE sid = $1", store.table());
    sqlx::query_scalar(&sql)
        .bind(id)
        .fetch_optional(store.pool())
        .await
        .unwrap()
}

/// connect-pg-simple's `set`: an upsert of `sess` (last writer wins), an hour from now.
async fn pg_node_set(store: &PostgresStore, id: &str, sess: &str) {
    let sql = format!(
        "INSERT INTO {} (sess, expire, sid) SELECT $1::json, to_timestamp($2), $3 \
         ON CONFLICT (sid) DO UPDATE SET sess = $1::json, expire = to_timestamp($2) RETURNING sid",
        store.table()
    );
    let expire = (now().unix_timestamp() + 3600) as f64;
    sqlx::query(&sql)
        .bind(sess)
        .bind(expire)
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
}

/// `session` of the document under `id`, exactly as stored.
async fn mongo_text(store: &MongoStore, id: &str) -> Option<String> {
    let found = store
        .collection()
        .find_one(doc! { "_id": id })
        .await
        .unwrap()?;
    found.get_str("session").ok().map(str::to_owned)
}

/// connect-mongo's `set`: `$set` of `session` and `expires`, upserting.
async fn mongo_node_set(store: &MongoStore, id: &str, session: Bson) {
    let expires = DateTime::from_millis((now().unix_timestamp() + 3600) * 1000);
    store
        .collection()
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "session": session, "expires": expires } },
        )
        .upsert(true)
        .await
        .unwrap();
}

/// A session of `owner` (metadata owner) created by Rust.
async fn create(store: &impl SessionStore, owner: Option<&str>) -> Record {
    let mut record = Record::new(now() + time::Duration::hours(1));
    record.insert("n", 0).unwrap();
    record.set_owner(owner.map(str::to_owned));
    store.create(&mut record).await.unwrap();
    record
}

/// The ABA of a stale Node copy. Promise: an `update` never overwrites a write it did not
/// read. Rust B updates v1 to v2 and C reads v2; then an in-flight Node request, which read
/// v1 before B's write, saves its copy unchanged (express-session's `resave`, a browser-
/// session cookie whose `expires` stays null): the stored text is v1's again, byte for
/// byte, seal and all. Rust A, holding v1, updates it: fine, it read exactly that. C must
/// now fail: the value is no longer the one it read. A, whose record now expects what it
/// wrote, updates again. Shared by both backends (and express_attack.rs' Redis one).
async fn stale_copy_aba<S: SessionStore>(
    store: &S,
    text: impl AsyncFn(&str) -> String,
    node_set: impl AsyncFn(&str, String),
) {
    let mut a = create(store, None).await;
    let id = a.id().clone();
    let v1 = text(id.expose()).await;
    let mut b = store.get(&id).await.unwrap().unwrap();
    b.insert("n", 1).unwrap();
    store.update(&mut b).await.unwrap();
    let mut c = store.get(&id).await.unwrap().unwrap();
    assert_eq!(c.data()["n"], 1);
    node_set(id.expose(), v1).await;
    a.insert("n", 2).unwrap();
    store.update(&mut a).await.unwrap();
    c.insert("m", 3).unwrap();
    let late = store.update(&mut c).await;
    let stored = store.get(&id).await.unwrap().unwrap();
    assert!(
        matches!(late, Err(Error::Conflict { .. })),
        "C's update based on B's write overwrote A's, which it never read: {late:?}, now {:?}",
        stored.data()
    );
    assert_eq!(stored.data()["n"], 2, "A's write lost");
    a.insert("again", true).unwrap();
    store.update(&mut a).await.unwrap();
    let stored = store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.data()["again"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stale_node_copy_does_not_let_an_update_overwrite_an_unread_write() {
    let Some(store) = postgres(None).await else {
        return;
    };
    stale_copy_aba(
        &store,
        async |id| pg_text(&store, id).await.unwrap(),
        async |id, sess| pg_node_set(&store, id, &sess).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_stale_node_copy_does_not_let_an_update_overwrite_an_unread_write() {
    let Some(store) = mongo(None).await else {
        return;
    };
    stale_copy_aba(
        &store,
        async |id| mongo_text(&store, id).await.unwrap(),
        async |id, session| mongo_node_set(&store, id, Bson::String(session)).await,
    )
    .await;
}

/// A cookie object as express-session writes it for a browser-session cookie.
const COOKIE: &str = r#"{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"}"#;

/// A session Node created for `user` (Passport's `passport.user`), as express-session
/// stringifies it, with `extra` top-level members.
fn node_session(user: &str, extra: &str) -> String {
    format!(r#"{{"cookie":{COOKIE},"passport":{{"user":"{user}"}}{extra}}}"#)
}

/// Values that all spell `"user":"alice"` but are no session of hers, each a decode error.
fn bad_values() -> Vec<String> {
    let deep = format!(
        r#"{{"cookie":{COOKIE},"passport":{{"user":"alice"}},"d":{}1{}}}"#,
        "[".repeat(600),
        "]".repeat(600)
    );
    vec![
        r#"[{"passport":{"user":"alice"}}]"#.into(),
        r#""\"passport\":{\"user\":\"alice\"}""#.into(),
        r#"{"cookie":1,"passport":{"user":"alice"}}"#.into(),
        node_session("alice", r#","__session_stores":{"version":1,"owner":5}"#),
        node_session(
            "alice",
            r#","__session_stores":{"version":1,"created_at":"x"}"#,
        ),
        node_session("alice", r#","__session_stores":7"#),
        deep,
    ]
}

/// Promise: bad values (not an object, no cookie object, wrong types in the metadata,
/// nesting past the bound) are typed decode errors and block no other session; "log out
/// everywhere" and the listing reach exactly the owner's sessions (Rust's, Node's, one
/// holding half an emoji, one of 1 MiB) and leave alone the bad values and a session whose
/// data merely names the owner.
async fn bad_values_block_nothing<S: SessionStore>(
    store: &S,
    node_set: impl AsyncFn(&str, String),
    stored: impl AsyncFn(&str) -> Option<String>,
) {
    let mut rust = Record::new(now() + time::Duration::hours(1));
    rust.insert("passport", serde_json::json!({"user": "alice"}))
        .unwrap();
    store.create(&mut rust).await.unwrap();
    let mut alice = vec![rust.id().clone()];
    for extra in [
        String::new(),
        r#","half":"\ud83d""#.to_owned(),
        format!(r#","big":"{}""#, "x".repeat(1 << 20)),
    ] {
        let id = SessionId::generate();
        node_set(id.expose(), node_session("alice", &extra)).await;
        alice.push(id);
    }
    let bob = SessionId::generate();
    let bobs = node_session("bob", r#","friend":{"user":"alice"}"#);
    node_set(bob.expose(), bobs.clone()).await;
    let mut bad = Vec::new();
    for value in bad_values() {
        let id = SessionId::generate();
        node_set(id.expose(), value.clone()).await;
        let read = store.get(&id).await;
        assert!(
            matches!(read, Err(Error::Decode { .. })),
            "{value:.80}: {read:?}"
        );
        bad.push((id, value));
    }
    let mut listed: Vec<String> = store
        .list_by_owner("alice")
        .await
        .unwrap()
        .iter()
        .map(|record| record.id().expose().to_owned())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = alice.iter().map(|id| id.expose().to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected, "list_by_owner");
    assert_eq!(store.destroy_by_owner("alice").await.unwrap(), 4);
    for id in &alice {
        assert_eq!(stored(id.expose()).await, None, "alice's session survived");
    }
    assert_eq!(stored(bob.expose()).await.as_deref(), Some(bobs.as_str()));
    assert!(store.get(&bob).await.unwrap().is_some());
    for (id, value) in &bad {
        assert_eq!(
            stored(id.expose()).await.as_ref(),
            Some(value),
            "bad value moved"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bad_rows_block_nothing() {
    let Some(store) = postgres(Some("passport.user")).await else {
        return;
    };
    bad_values_block_nothing(
        &store,
        async |id, sess| pg_node_set(&store, id, &sess).await,
        async |id| pg_text(&store, id).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_bad_documents_block_nothing() {
    let Some(store) = mongo(Some("passport.user")).await else {
        return;
    };
    // connect-mongo's own odd shapes too: `stringify: false` objects, a number.
    let mut odd: Vec<(SessionId, Document)> = vec![
        doc! { "session": { "cookie": {}, "passport": { "user": "alice" } } },
        doc! { "session": 5 },
    ]
    .into_iter()
    .map(|document| (SessionId::generate(), document))
    .collect();
    for (id, document) in &odd {
        let mut document = document.clone();
        document.insert("_id", id.expose());
        if !document.contains_key("expires") {
            document.insert("expires", DateTime::from_millis(i64::MAX / 4));
        }
        store.collection().insert_one(&document).await.unwrap();
        let read = store.get(id).await;
        assert!(
            matches!(read, Err(Error::Decode { .. })),
            "{document}: {read:?}"
        );
    }
    // `expires` not a date (null, a string): never live, as connect-mongo's filter
    // (`$exists: false` or `$gt: now`) judges it, and left alone.
    for expires in [Bson::Null, Bson::String("tomorrow".into())] {
        let id = SessionId::generate();
        let session = node_session("alice", "");
        let document = doc! { "_id": id.expose(), "session": session, "expires": expires };
        store.collection().insert_one(&document).await.unwrap();
        assert!(store.get(&id).await.unwrap().is_none(), "{document}");
        odd.push((id, document));
    }
    bad_values_block_nothing(
        &store,
        async |id, session| mongo_node_set(&store, id, Bson::String(session)).await,
        async |id| mongo_text(&store, id).await,
    )
    .await;
    for (id, _) in &odd {
        let left = store
            .collection()
            .find_one(doc! { "_id": id.expose() })
            .await
            .unwrap();
        assert!(left.is_some(), "an odd document was removed");
    }
}

/// Promise: "log out everywhere" removes a session of the owner that Node keeps writing
/// throughout the call (each write a new text, still the owner's).
async fn revoke_under_node_writes<S: SessionStore + Clone + 'static>(
    store: &S,
    node_write: impl Fn(String, String) -> futures::future::BoxFuture<'static, ()> + Send + 'static,
    stored: impl AsyncFn(&str) -> Option<String>,
) {
    let id = SessionId::generate();
    node_write(id.expose().to_owned(), node_session("carol", "")).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, id) = (stop.clone(), id.expose().to_owned());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                node_write(id.clone(), node_session("carol", &format!(r#","n":{n}"#))).await;
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let removed = store.destroy_by_owner("carol").await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert_eq!(
        stored(id.expose()).await,
        None,
        "after {writes} Node writes"
    );
    assert_eq!(removed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_log_out_everywhere_under_node_writes() {
    let Some(store) = postgres(Some("passport.user")).await else {
        return;
    };
    let (pool, table) = (store.pool().clone(), store.table().to_owned());
    revoke_under_node_writes(
        &store,
        move |id, sess| {
            let (pool, table) = (pool.clone(), table.clone());
            Box::pin(async move {
                // connect-pg-simple's upsert, but never creating: a write to a session
                // removed meanwhile is Node's own resurrection, not this promise.
                let sql = format!(
                    "INSERT INTO {table} (sess, expire, sid) \
                     VALUES ($1::json, now() + interval '1 hour', $2) \
                     ON CONFLICT (sid) DO UPDATE SET sess = $1::json"
                );
                let sql = if sess.contains(r#""n":"#) {
                    format!("UPDATE {table} SET sess = $1::json WHERE sid = $2")
                } else {
                    sql
                };
                sqlx::query(&sql)
                    .bind(sess)
                    .bind(id)
                    .execute(&pool)
                    .await
                    .unwrap();
            })
        },
        async |id| pg_text(&store, id).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_log_out_everywhere_under_node_writes() {
    let Some(store) = mongo(Some("passport.user")).await else {
        return;
    };
    let collection = store.collection().clone();
    revoke_under_node_writes(
        &store,
        move |id, session| {
            let collection = collection.clone();
            Box::pin(async move {
                let expires = DateTime::from_millis((now().unix_timestamp() + 3600) * 1000);
                // The first write creates; the others never do (see the PostgreSQL case).
                let create = !session.contains(r#""n":"#);
                collection
                    .update_one(
                        doc! { "_id": id },
                        doc! { "$set": { "session": session, "expires": expires } },
                    )
                    .upsert(create)
                    .await
                    .unwrap();
            })
        },
        async |id| mongo_text(&store, id).await,
    )
    .await;
}

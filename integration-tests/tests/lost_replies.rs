//! A reply lost after the server ran the command: the connection drops between the two.
//! Neither the store nor its client library may send such a command again (a
//! compare-and-swap or a rename's delete applied twice), and the caller must never be told
//! "conflict" for a write that happened or "no session" for a session that moved.
//!
//! Each test puts [`FaultProxy`] between the store and its server and loses the reply to
//! one chosen request, on every network store (Redis with fred and with redis-rs,
//! PostgreSQL, FerretDB). Redis Cluster is not proxied: its nodes announce their own
//! addresses, which clients then use directly.

#![allow(clippy::unwrap_used)] // a failed call is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::proxy::FaultProxy;
use integration_tests::targets::{Target, host_port, with_host_port};
use integration_tests::{Skip, in_an_hour, server_url};
use session_core::conformance::skip;
use session_core::{Record, SessionId, SessionStore, StoreOptions};

async fn through_proxy(target: Target, test: &str) -> Option<(FaultProxy, Arc<dyn SessionStore>)> {
    let url = match server_url(target.backend()) {
        Ok(url) => url,
        Err(Skip(reason)) => {
            skip(&format!("{test} on {}", target.name()), &reason);
            return None;
        }
    };
    let cutter = FaultProxy::start(host_port(&url)).await.unwrap();
    let options = StoreOptions {
        timeout: Duration::from_secs(2),
        ..StoreOptions::default()
    };
    let store = target
        .connect(&with_host_port(&url, cutter.listen()), options)
        .await
        .unwrap_or_else(|err| panic!("{test} on {}: connecting: {err}", target.name()));
    Some((cutter, store))
}

/// The session under `id` once the store answers again (it reconnects by itself).
async fn read_back(store: &dyn SessionStore, id: &SessionId) -> Option<Record> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match store.get(id).await {
            Ok(found) => return found,
            Err(err) if err.is_retryable() && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("reading back: {err}"),
        }
    }
}

/// The one request of an `update` that carries `marker` (in the data it writes).
fn update_request(marker: &str) -> Vec<&[u8]> {
    vec![marker.as_bytes()]
}

/// The request of a rename (from `cycle_id`) that removes the old id: the script that moves
/// it (Redis), the `UPDATE` of its key (PostgreSQL, MySQL), the delete of the original (FerretDB).
fn rename_request(target: Target, from: &SessionId) -> Vec<&[u8]> {
    let id = from.expose().as_bytes();
    match target {
        Target::RedisFred | Target::RedisRs => vec![b"EVALSHA", id],
        Target::Postgres | Target::Mysql => vec![id],
        Target::Mongo => vec![b"delete\0", id],
    }
}

async fn lost_update_reply(target: Target) {
    let test = "a lost update reply";
    let Some((cutter, store)) = through_proxy(target, test).await else {
        return;
    };
    let name = target.name();
    let mut record = Record::new(in_an_hour());
    record.insert("n", 0).unwrap();
    store.create(&mut record).await.unwrap();
    // Scripts loaded, statements prepared: the cut request is the write itself.
    record.insert("n", 1).unwrap();
    store.update(&mut record).await.unwrap();

    let marker = format!("lost-{}", SessionId::generate().expose());
    let before = record.version();
    let mut changed = record.clone();
    changed.insert("marker", &marker).unwrap();
    cutter.arm(&update_request(&marker));
    let result = store.update(&mut changed).await;
    assert_eq!(cutter.cuts(), 1, "{name}: no reply was lost");

    let stored = read_back(&*store, record.id()).await.unwrap();
    let applied = stored.get::<String>("marker").unwrap().as_deref() == Some(marker.as_str());
    eprintln!("{name}: update with its reply lost: {result:?}, applied: {applied}");
    if applied {
        assert_eq!(
            stored.version(),
            before + 1,
            "{name}: the update was applied twice"
        );
        assert!(
            !result.as_ref().is_err_and(|err| err.is_conflict()),
            "{name}: an update that happened was reported as a conflict, so a retry (modify) \
             applies it again"
        );
    } else {
        assert!(result.is_err(), "{name}: acknowledged but not applied");
    }
}

async fn lost_rename_reply(target: Target) {
    let test = "a lost rename reply";
    let Some((cutter, store)) = through_proxy(target, test).await else {
        return;
    };
    let name = target.name();
    let mut record = Record::new(in_an_hour());
    record.insert("cart", 3).unwrap();
    record.set_owner(Some(format!("lost-{}", SessionId::generate().expose())));
    store.create(&mut record).await.unwrap();
    // Warm up the move's script or statement.
    let id = store.cycle_id(record.id()).await.unwrap().unwrap();

    cutter.arm(&rename_request(target, &id));
    let result = store.cycle_id(&id).await;
    assert_eq!(cutter.cuts(), 1, "{name}: no reply was lost");
    eprintln!("{name}: cycle_id with its reply lost: {result:?}");
    match result {
        Ok(Some(new_id)) => {
            let moved = read_back(&*store, &new_id).await;
            assert!(moved.is_some(), "{name}: the new id holds nothing");
            assert!(
                read_back(&*store, &id).await.is_none(),
                "{name}: the old id still works"
            );
        }
        Ok(None) => panic!("{name}: a live session was reported missing: it is lost"),
        Err(err) => {
            assert!(err.is_retryable(), "{name}: {err}");
            assert!(
                read_back(&*store, &id).await.is_some(),
                "{name}: cycle_id failed after the session left its id: the caller can't \
                 find it any more ({err})"
            );
        }
    }
    let owned = store.list_by_owner(record.owner().unwrap()).await.unwrap();
    assert_eq!(
        owned.len(),
        1,
        "{name}: the session is listed {} times",
        owned.len()
    );
}

macro_rules! lost_reply_tests {
    ($($module:ident => $target:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn update_reply_lost() {
                lost_update_reply($target).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rename_reply_lost() {
                lost_rename_reply($target).await;
            }
        }
    )*};
}

lost_reply_tests! {
    redis_fred => Target::RedisFred,
    redis_rs => Target::RedisRs,
    postgres => Target::Postgres,
    mongo => Target::Mongo,
    mysql => Target::Mysql,
}

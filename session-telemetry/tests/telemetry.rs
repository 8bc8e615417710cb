//! What the wrapper reports, read back: the metrics equal the calls made and their outcomes,
//! and the events come in order, each once. (The spans: tests/spans.rs.)

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

mod common;

use std::collections::BTreeMap;

use common::{instrumented, runtime, script, session};
use futures::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use session_core::{SessionId, SessionStore, modify};
use session_memory::MemoryStore;
use session_telemetry::metrics::{
    CONFLICTS, CREATED, DESTROYED, ERRORS, OPERATION_DURATION, PAYLOAD_SIZE, REVOKED, ROTATED,
};
use session_telemetry::{Delivery, InstrumentedStore, SessionEvent};

// ---------------------------------------------------------------------------------------
// Metrics

/// Every counter and histogram, by name and sorted labels.
type Metrics = BTreeMap<(String, Vec<(String, String)>), DebugValue>;

/// Every counter and histogram in a snapshot.
fn read(snapshotter: &Snapshotter) -> Metrics {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    labels
}

fn calls(metrics: &Metrics, operation: &str, outcome: &str) -> usize {
    let key = (
        OPERATION_DURATION.to_owned(),
        labels(&[
            ("db_system", "memory"),
            ("operation", operation),
            ("outcome", outcome),
        ]),
    );
    match metrics.get(&key) {
        Some(DebugValue::Histogram(values)) => values.len(),
        None => 0,
        other => panic!("{operation}/{outcome} is not a histogram: {other:?}"),
    }
}

fn counter(metrics: &Metrics, name: &str, pairs: &[(&str, &str)]) -> u64 {
    match metrics.get(&(name.to_owned(), labels(pairs))) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{name} {pairs:?} is not a counter: {other:?}"),
    }
}

#[test]
fn metrics_equal_the_calls_made_and_their_outcomes() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || runtime().block_on(script(&instrumented())));
    let m = read(&snapshotter);

    let expected = [
        ("create", "ok", 2),
        ("create", "error", 1),
        ("insert", "ok", 1),
        ("insert", "conflict", 1),
        ("get", "ok", 2),
        ("get", "miss", 1),
        ("update", "ok", 1),
        ("update", "conflict", 1),
        ("touch", "ok", 1),
        ("touch", "miss", 1),
        ("cycle_id", "ok", 1),
        ("rename", "conflict", 1),
        ("destroy", "ok", 1),
        ("limit_owner", "ok", 1),
        ("destroy_by_owner", "ok", 1),
    ];
    for (operation, outcome, n) in expected {
        assert_eq!(
            calls(&m, operation, outcome),
            n,
            "{operation}/{outcome} in {m:#?}"
        );
    }
    let durations = m
        .keys()
        .filter(|(name, _)| name == OPERATION_DURATION)
        .count();
    assert_eq!(
        durations,
        expected.len(),
        "no other call was recorded: {m:#?}"
    );

    let memory = [("db_system", "memory")];
    assert_eq!(counter(&m, CREATED, &memory), 3);
    assert_eq!(counter(&m, ROTATED, &memory), 1);
    assert_eq!(counter(&m, DESTROYED, &memory), 1);
    let revoked = |reason| counter(&m, REVOKED, &[("db_system", "memory"), ("reason", reason)]);
    assert_eq!((revoked("limit"), revoked("owner")), (1, 1));
    for operation in ["insert", "update", "rename"] {
        let labels = [("db_system", "memory"), ("operation", operation)];
        assert_eq!(counter(&m, CONFLICTS, &labels), 1, "{operation}");
    }
    let too_large = [
        ("db_system", "memory"),
        ("operation", "create"),
        ("error_type", "payload_too_large"),
        ("retryable", "false"),
    ];
    assert_eq!(counter(&m, ERRORS, &too_large), 1);

    // Payload sizes: the JSON size of `{"cart":"a secret cart"}`, once per write.
    let size = r#"{"cart":"a secret cart"}"#.len() as f64;
    for (operation, n) in [("create", 2), ("insert", 1), ("update", 1)] {
        let key = (
            PAYLOAD_SIZE.to_owned(),
            labels(&[("db_system", "memory"), ("operation", operation)]),
        );
        let Some(DebugValue::Histogram(values)) = m.get(&key) else {
            panic!("no payload sizes for {operation}: {m:#?}");
        };
        assert_eq!(values.len(), n, "{operation}");
        assert!(
            values.iter().all(|v| v.0 == size),
            "{operation}: {values:?}"
        );
    }
}

#[test]
fn modify_counts_its_retries_and_give_ups() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let store = instrumented();
            let mut record = session("u");
            store.create(&mut record).await.unwrap();
            // Each attempt's change is overtaken by another writer before it is stored.
            let rival = record.id().clone();
            let result = modify(&store, record.id(), 3, |r| {
                r.insert("n", 1).unwrap();
                let mut other = futures::executor::block_on(store.inner().get(&rival))
                    .unwrap()
                    .unwrap();
                futures::executor::block_on(store.inner().update(&mut other)).unwrap();
            })
            .await;
            assert!(result.unwrap_err().is_conflict());
        })
    });
    let m = read(&snapshotter);
    assert_eq!(counter(&m, session_core::MODIFY_RETRIES, &[]), 2);
    assert_eq!(counter(&m, session_core::MODIFY_GIVE_UPS, &[]), 1);
}

// ---------------------------------------------------------------------------------------
// Events

#[test]
fn events_come_once_each_in_the_order_of_the_calls() {
    runtime().block_on(async {
        let store = instrumented();
        let events = store.subscribe();
        let (destroyed, rotated) = script(&store).await;
        drop(store);
        let got: Vec<Delivery> = events.collect().await;
        let kinds: Vec<String> = got
            .iter()
            .map(|d| match d {
                Delivery::Event(SessionEvent::Created { owner, .. }) => {
                    format!("created {}", owner.as_deref().unwrap_or("-"))
                }
                Delivery::Event(SessionEvent::Rotated { to, .. }) => {
                    assert_eq!(to, &rotated);
                    "rotated".into()
                }
                Delivery::Event(SessionEvent::Destroyed { id }) => {
                    assert_eq!(id, &destroyed);
                    "destroyed".into()
                }
                Delivery::Event(SessionEvent::Revoked {
                    owner,
                    count,
                    everywhere,
                }) => format!("revoked {owner} {count} {everywhere}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "created u",
                "created u",
                "created u",
                "rotated",
                "destroyed",
                "revoked u 1 false",
                "revoked u 1 true",
            ]
        );
    });
}

#[test]
fn a_subscriber_that_falls_behind_is_told_how_many_it_missed() {
    runtime().block_on(async {
        let store = InstrumentedStore::builder(MemoryStore::new())
            .event_capacity(2)
            .build();
        let events = store.subscribe();
        for _ in 0..5 {
            store.destroy(&SessionId::generate()).await.unwrap();
        }
        drop(store);
        let got: Vec<Delivery> = events.collect().await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], Delivery::Missed(3));
        assert!(matches!(
            got[1],
            Delivery::Event(SessionEvent::Destroyed { .. })
        ));
    });
}

/// Sessions that expire on their own arrive as `Expired` events (with their owner), each
/// once, counted in `session_store_sessions_expired_total`; those ended by a call don't.
#[test]
fn expiries_reported_by_the_backend_become_events_and_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let store = instrumented();
                let mut events = store.subscribe();
                let options = session_core::WatchOptions::default()
                    .interval(std::time::Duration::from_millis(100));
                let reporter = store.report_expiries(options).await.unwrap();
                let mut expiring = std::collections::HashSet::new();
                for i in 0..5 {
                    let mut record = session(&format!("owner-{i}"));
                    record.set_expires_at(session_core::now() + time::Duration::milliseconds(300));
                    store.create(&mut record).await.unwrap();
                    expiring.insert(record.id().clone());
                }
                let mut logged_out = session("w");
                logged_out.set_expires_at(session_core::now() + time::Duration::milliseconds(300));
                store.create(&mut logged_out).await.unwrap();
                store.destroy(logged_out.id()).await.unwrap();

                let mut expired = Vec::new();
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                while expired.len() < expiring.len() {
                    let next = tokio::time::timeout_at(deadline, events.next()).await;
                    match next.expect("every expiry within 5 s").unwrap() {
                        Delivery::Event(SessionEvent::Expired { id, owner }) => {
                            assert!(owner.unwrap().starts_with("owner-"));
                            expired.push(id);
                        }
                        Delivery::Event(
                            SessionEvent::Created { .. } | SessionEvent::Destroyed { .. },
                        ) => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                // Nothing more: the destroyed session is not reported, nothing twice.
                let more =
                    tokio::time::timeout(std::time::Duration::from_millis(500), events.next())
                        .await;
                assert!(more.is_err(), "unexpected {more:?}");
                drop(reporter);
                let heard: std::collections::HashSet<_> = expired.iter().cloned().collect();
                assert_eq!(heard, expiring);
                assert_eq!(expired.len(), expiring.len());
            });
    });
    let metrics = read(&snapshotter);
    assert_eq!(
        counter(
            &metrics,
            session_telemetry::metrics::EXPIRED,
            &[("db_system", "memory")]
        ),
        5
    );
}

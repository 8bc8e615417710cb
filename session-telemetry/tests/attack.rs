//! Attacks on `InstrumentedStore`'s promises that need no server: panics on unusual
//! settings, the capacity a lagging subscriber is promised, the cost when nobody records,
//! cancelled calls in the metrics, and exact miss counts under concurrency.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use session_core::{Record, Rename, Result, SessionId, SessionStore, async_trait, now};
use session_memory::MemoryStore;
use session_telemetry::metrics::OPERATION_DURATION;
use session_telemetry::{Delivery, InstrumentedStore, SessionEvent};
use time::OffsetDateTime;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// A fake inner store: counts calls, can be slow, hands out one fixed record cheaply.

#[derive(Debug)]
struct Fake {
    record: Record,
    calls: AtomicUsize,
    delay: Duration,
}

impl Fake {
    fn new(record: Record, delay: Duration) -> Self {
        Self {
            record,
            calls: AtomicUsize::new(0),
            delay,
        }
    }

    async fn call(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

#[async_trait]
impl SessionStore for Fake {
    async fn get(&self, _: &SessionId) -> Result<Option<Record>> {
        self.call().await;
        Ok(Some(self.record.clone()))
    }
    async fn insert(&self, _: &mut Record) -> Result<bool> {
        self.call().await;
        Ok(true)
    }
    async fn set(&self, _: &mut Record) -> Result<()> {
        self.call().await;
        Ok(())
    }
    async fn update(&self, _: &mut Record) -> Result<()> {
        self.call().await;
        Ok(())
    }
    async fn touch(&self, _: &SessionId, _: OffsetDateTime) -> Result<bool> {
        self.call().await;
        Ok(true)
    }
    async fn destroy(&self, _: &SessionId) -> Result<()> {
        self.call().await;
        Ok(())
    }
    async fn rename(&self, _: &SessionId, _: &SessionId) -> Result<Rename> {
        self.call().await;
        Ok(Rename::Moved)
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.call().await;
        Ok(0)
    }
    async fn list_by_owner(&self, _: &str) -> Result<Vec<Record>> {
        self.call().await;
        Ok(Vec::new())
    }
    async fn destroy_by_owner(&self, _: &str) -> Result<u64> {
        self.call().await;
        Ok(0)
    }
    async fn count(&self) -> Result<u64> {
        self.call().await;
        Ok(1)
    }
}

fn in_an_hour() -> OffsetDateTime {
    now() + time::Duration::hours(1)
}

// ---------------------------------------------------------------------------------------
// Unusual settings

/// "It never panics": an event capacity is a plain number a user may read from config;
/// `usize::MAX` ("never drop events") must not bring the process down. tokio's broadcast
/// channel asserts `capacity <= usize::MAX / 2`, and the builder passes it through.
#[test]
fn a_huge_event_capacity_does_not_panic() {
    let built = std::panic::catch_unwind(|| {
        InstrumentedStore::builder(MemoryStore::new())
            .event_capacity(usize::MAX)
            .build()
    });
    assert!(
        built.is_ok(),
        "InstrumentedStore::builder(..).event_capacity(usize::MAX).build() panicked"
    );
}

/// `Builder::event_capacity`: the capacity rounded up to a power of two is how far a
/// subscriber may fall behind. With 3 (so 4), a subscriber 4 behind has missed nothing and
/// one 5 behind is told it missed exactly one.
#[test]
fn the_event_capacity_is_how_far_a_subscriber_may_fall_behind() {
    runtime().block_on(async {
        for (behind, missed) in [(4, None), (5, Some(1))] {
            let store = InstrumentedStore::builder(MemoryStore::new())
                .event_capacity(3)
                .build();
            let events = store.subscribe();
            for _ in 0..behind {
                store.destroy(&SessionId::generate()).await.unwrap();
            }
            drop(store);
            let got: Vec<Delivery> = events.collect().await;
            match missed {
                None => assert_eq!(got.len(), behind, "{behind} behind: {got:?}"),
                Some(n) => {
                    assert_eq!(got.first(), Some(&Delivery::Missed(n)), "{got:?}");
                    assert_eq!(got.len(), 5, "the 4 newest after the miss: {got:?}");
                }
            }
        }
    });
}

/// Unusual but valid calls through the wrapper don't panic and return what the inner store
/// returns.
#[test]
fn unusual_calls_pass_through_unchanged() {
    runtime().block_on(async {
        let store = InstrumentedStore::builder(MemoryStore::new())
            .event_capacity(0)
            .server("", Some(0))
            .build();
        let mut events = store.subscribe();
        let mut record = Record::new(in_an_hour());
        record.set_owner(Some(String::new()));
        store.create(&mut record).await.unwrap();
        let id = record.id().clone();
        // rename onto itself: TargetTaken, no Rotated.
        assert_eq!(store.rename(&id, &id).await.unwrap(), Rename::TargetTaken);
        assert_eq!(store.limit_owner("", usize::MAX).await.unwrap(), 0);
        assert_eq!(store.list_by_owner("").await.unwrap().len(), 1);
        // A touch into the past ends it; a second finds nothing.
        assert!(store.touch(&id, OffsetDateTime::UNIX_EPOCH).await.unwrap());
        assert!(!store.touch(&id, in_an_hour()).await.unwrap());
        assert_eq!(store.cycle_id(&id).await.unwrap(), None);
        assert_eq!(store.destroy_by_owner("").await.unwrap(), 0);
        drop(store);
        // capacity 0 means 1: only the newest event is kept, and the subscriber learns that
        // it missed none here (only one event: the creation).
        let first = events.next().await;
        assert!(
            matches!(first, Some(Delivery::Event(SessionEvent::Created { .. }))),
            "{first:?}"
        );
        assert_eq!(events.next().await, None);
    });
}

// ---------------------------------------------------------------------------------------
// The cost when nobody records

/// "metrics through the `metrics` facade (free when no recorder is installed)": with no
/// recorder, a `get` through the wrapper costs about what the inner `get` costs. It doesn't:
/// the payload-size pass serializes the whole session to JSON on every read and write,
/// recorder or not (here a 4 MiB string of quotes, every one of which JSON escapes).
#[test]
fn without_a_recorder_a_read_costs_no_pass_over_the_data() {
    runtime().block_on(async {
        let mut record = Record::new(in_an_hour());
        record.insert("blob", "\"".repeat(4 << 20)).unwrap();
        let store = InstrumentedStore::new(Fake::new(record, Duration::ZERO));
        let id = SessionId::generate();
        let mut inner = Duration::MAX;
        let mut wrapped = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            drop(store.inner().get(&id).await.unwrap());
            inner = inner.min(t.elapsed());
            let t = Instant::now();
            drop(store.get(&id).await.unwrap());
            wrapped = wrapped.min(t.elapsed());
        }
        assert!(
            wrapped < inner * 3 + Duration::from_millis(3),
            "with no recorder installed the wrapper's get took {wrapped:?}, the inner get \
             {inner:?}: a pass over the data nobody records"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Cancellation

/// "metrics equal the calls made": a call the caller gave up on (a request timeout dropping
/// its future) reached the inner store, yet leaves no trace in the duration histogram, so
/// the slowest calls vanish from the latency metrics and from the error count alike.
#[test]
fn a_cancelled_call_still_counts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let fake = metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let store = InstrumentedStore::builder(Fake::new(
                Record::new(in_an_hour()),
                Duration::from_secs(5),
            ))
            .system("fake")
            .build();
            let cancelled =
                tokio::time::timeout(Duration::from_millis(20), store.get(&SessionId::generate()))
                    .await;
            assert!(cancelled.is_err(), "the call was cancelled");
            store.inner().calls.load(Ordering::SeqCst)
        })
    });
    assert_eq!(fake, 1, "the call reached the inner store");
    let samples: usize = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == OPERATION_DURATION)
        .map(|(.., value)| match value {
            DebugValue::Histogram(values) => values.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(
        samples, 1,
        "1 call made (and cancelled after 20 ms), {samples} recorded in {OPERATION_DURATION}"
    );
}

/// Dropping a call's future never corrupts the wrapper: the calls after it are reported
/// as usual, each event once.
#[test]
fn calls_after_a_cancelled_one_are_reported_as_usual() {
    runtime().block_on(async {
        let store = InstrumentedStore::new(Fake::new(
            Record::new(in_an_hour()),
            Duration::from_millis(200),
        ));
        let mut events = store.subscribe();
        let id = SessionId::generate();
        assert!(
            tokio::time::timeout(Duration::from_millis(10), store.destroy(&id))
                .await
                .is_err()
        );
        store.destroy(&id).await.unwrap();
        drop(store);
        assert_eq!(
            events.next().await,
            Some(Delivery::Event(SessionEvent::Destroyed { id }))
        );
        assert_eq!(events.next().await, None);
    });
}

// ---------------------------------------------------------------------------------------
// Exact miss counts under concurrency

/// A lagging subscriber is told exactly how many it missed: under concurrent calls from
/// several threads, the events it got plus those it was told it missed are the calls made,
/// and every call reached the inner store once.
#[test]
fn missed_counts_are_exact_under_concurrency() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(
            InstrumentedStore::builder(Fake::new(Record::new(in_an_hour()), Duration::ZERO))
                .event_capacity(16)
                .build(),
        );
        let events = store.subscribe();
        let (tasks, per_task) = (8, 500);
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        store.destroy(&SessionId::generate()).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let calls = store.inner().calls.load(Ordering::SeqCst);
        drop(store);
        let got: Vec<Delivery> = events.collect().await;
        let (mut seen, mut missed) = (0u64, 0u64);
        for delivery in &got {
            match delivery {
                Delivery::Event(_) => seen += 1,
                Delivery::Missed(n) => missed += n,
            }
        }
        assert_eq!(calls, tasks * per_task);
        assert_eq!(seen + missed, (tasks * per_task) as u64, "{got:?}");
    });
}

//! Concurrent writers: no lost update, no resurrection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use serde_json::json;
use time::Duration;

use super::{CaseResult, created, fresh, stored};
use crate::conformance::Harness;
use crate::{SessionStore, modify, now};

/// N tasks each incrementing one counter with `update` + retry end at exactly N.
pub async fn concurrent_increments_are_never_lost<H: Harness>(h: &H) -> CaseResult {
    const TASKS: usize = 32;
    let store = Arc::new(fresh(h).await);
    let record = created(&*store, json!({"count": 0})).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = Arc::clone(&store);
            let id = record.id().clone();
            tokio::spawn(async move {
                modify(&*store, &id, TASKS, |r| {
                    let n = r.get::<u64>("count").unwrap().unwrap();
                    r.insert("count", n + 1).unwrap();
                })
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap().expect("the session exists");
    }
    let back = stored(&*store, record.id(), "the counter").await;
    assert_eq!(
        back.get::<u64>("count").unwrap(),
        Some(TASKS as u64),
        "increments were lost"
    );
    assert_eq!(back.version(), 1 + TASKS as u64);
    Ok(())
}

/// A `destroy` racing `update`s and `touch`es of the same session: once it returned, the
/// session stays destroyed (a write that read the session before the destroy must not put it
/// back). Round after round for two seconds: on an in-process store the gap such a bug
/// leaves open lasts microseconds.
pub async fn destroy_racing_writers_stays_destroyed<H: Harness>(h: &H) -> CaseResult {
    const WRITERS: usize = 3;
    let store = Arc::new(fresh(h).await);
    let started = Instant::now();
    let mut round = 0;
    while round < 8 || (started.elapsed() < StdDuration::from_secs(2) && round < 400) {
        let record = created(&*store, json!({"n": 0})).await;
        let writes = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (store, id, writes) =
                    (Arc::clone(&store), record.id().clone(), Arc::clone(&writes));
                tokio::spawn(async move {
                    for _ in 0..200 {
                        let changed = modify(&*store, &id, 4, |r| {
                            let n = r.get::<u64>("n").ok().flatten().unwrap_or(0);
                            r.insert("n", n + 1).ok();
                        })
                        .await;
                        let touched = store.touch(&id, now() + Duration::hours(2)).await;
                        writes.fetch_add(1, Ordering::Relaxed);
                        if matches!(changed, Ok(None)) && matches!(touched, Ok(false)) {
                            break;
                        }
                        tokio::task::consume_budget().await;
                    }
                })
            })
            .collect();
        // Destroy while the writers are at it.
        while writes.load(Ordering::Relaxed) < WRITERS as u64 {
            tokio::task::yield_now().await;
        }
        store.destroy(record.id()).await.unwrap();
        let destroyed_at = now();
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(
            store.get(record.id()).await.unwrap().is_none(),
            "round {round}: a destroyed session came back (destroyed at {destroyed_at})"
        );
        round += 1;
    }
    Ok(())
}

//! Data a write accepts must read back; what can't, a write refuses. And every call ends
//! within the store's timeout.

use std::time::{Duration as StdDuration, Instant};

use serde_json::Value;

use super::{CaseResult, fresh, in_an_hour, stored};
use crate::codec::MAX_DATA_DEPTH;
use crate::conformance::Harness;
use crate::{Error, Record, SessionId, SessionStore, StoreOptions};

/// Integers above `i64::MAX` either come back exactly or fail to encode; never altered.
pub async fn large_integers_round_trip_or_fail_loudly<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(in_an_hour());
    record.insert("big", u64::MAX).unwrap();
    match store.create(&mut record).await {
        Ok(()) => {
            let back = stored(&store, record.id(), "a large integer").await;
            assert_eq!(
                back.get::<u64>("big").unwrap(),
                Some(u64::MAX),
                "a large integer changed"
            );
        }
        Err(err) => {
            assert!(
                matches!(err, Error::Encode { .. }),
                "expected an encode error, got {err}"
            );
            assert!(store.get(record.id()).await.unwrap().is_none());
        }
    }
    Ok(())
}

/// Data `levels` deep: the data object, then objects inside it.
fn nested(levels: usize) -> Value {
    let mut value = Value::from(1);
    for _ in 1..levels {
        let mut object = serde_json::Map::new();
        object.insert("d".into(), value);
        value = Value::Object(object);
    }
    value
}

/// Arrays inside arrays come back exactly, or fail with [`Error::Encode`] and write nothing
/// (FerretDB 1.x can't store them).
pub async fn nested_arrays_round_trip_or_fail_loudly<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(in_an_hour());
    record
        .insert("matrix", serde_json::json!([[1, 2], [3, [4, []]], []]))
        .unwrap();
    match store.create(&mut record).await {
        Ok(()) => {
            let back = stored(&store, record.id(), "nested arrays").await;
            assert_eq!(back.data(), record.data(), "nested arrays changed");
        }
        Err(err) => {
            assert!(
                matches!(err, Error::Encode { .. }),
                "expected an encode error, got {err}"
            );
            assert!(store.get(record.id()).await.unwrap().is_none());
        }
    }
    Ok(())
}

/// Data nested up to [`MAX_DATA_DEPTH`] reads back exactly; deeper data either reads back
/// exactly too (a format with a higher bound, such as session-redis' express-session one,
/// see [`MAX_SHARED_DATA_DEPTH`](crate::codec::MAX_SHARED_DATA_DEPTH)) or is an
/// [`Error::Encode`] with nothing written: never a write that can't be read back.
pub async fn deep_data_reads_back_or_fails_to_encode<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    for levels in [
        2,
        50,
        MAX_DATA_DEPTH,
        MAX_DATA_DEPTH + 1,
        128,
        129,
        300,
        600,
    ] {
        let mut record = Record::new(in_an_hour());
        record.data_mut().insert("deep".into(), nested(levels));
        let result = store.create(&mut record).await;
        match result {
            Ok(()) => {
                let back = stored(&store, record.id(), &format!("data {levels} levels deep")).await;
                assert_eq!(
                    back.data(),
                    record.data(),
                    "data {levels} levels deep changed"
                );
            }
            Err(err) if levels > MAX_DATA_DEPTH => {
                assert!(
                    matches!(err, Error::Encode { .. }),
                    "data {levels} levels deep: expected an encode error, got {err}"
                );
                assert!(store.get(record.id()).await.unwrap().is_none());
            }
            Err(err) => panic!("data {levels} levels deep refused: {err}"),
        }
    }
    Ok(())
}

/// Every call on a store whose server answers late ends within the configured timeout (plus
/// scheduling slack) with [`Error::Timeout`] or another retryable error: no call hangs.
pub async fn calls_end_within_the_timeout<H: Harness>(h: &H) -> CaseResult {
    let timeout = StdDuration::from_millis(400);
    let options = StoreOptions {
        timeout,
        ..StoreOptions::default()
    };
    let store = h.slow_store(options).await?;
    let slack = StdDuration::from_millis(1500);
    let id = SessionId::generate();
    let mut record = Record::with_id(id.clone(), in_an_hour());
    let mut results: Vec<(&str, StdDuration, Result<(), Error>)> = Vec::new();
    macro_rules! timed {
        ($name:literal, $call:expr) => {{
            let started = Instant::now();
            let result = $call.await.map(drop);
            results.push(($name, started.elapsed(), result));
        }};
    }
    timed!("get", store.get(&id));
    timed!("insert", store.insert(&mut record));
    timed!("set", store.set(&mut record));
    timed!("update", store.update(&mut record));
    timed!("touch", store.touch(&id, in_an_hour()));
    timed!("destroy", store.destroy(&id));
    timed!("rename", store.rename(&id, &SessionId::generate()));
    timed!("cycle_id", store.cycle_id(&id));
    timed!("list_by_owner", store.list_by_owner("someone"));
    timed!("destroy_by_owner", store.destroy_by_owner("someone"));
    timed!("count", store.count());
    for (name, took, result) in results {
        assert!(
            took < timeout + slack,
            "{name} took {took:?} with a {timeout:?} timeout"
        );
        match result {
            Err(err) => assert!(err.is_retryable(), "{name}: {err} is not retryable"),
            Ok(()) => panic!("{name} succeeded although the server answers after the timeout"),
        }
    }
    Ok(())
}

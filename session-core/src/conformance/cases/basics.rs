//! What a write stores and a read returns; ids; counting; the payload limit.

use std::sync::Arc;

use serde_json::json;
use time::Duration;

use super::{CaseResult, created, data, fresh, in_an_hour, stored, wait_past};
use crate::conformance::Harness;
use crate::{Error, Record, SessionId, SessionStore, StoreOptions, now};

/// Nested, unicode, numeric and empty data, odd keys, and every record field come back
/// unchanged: floats stay floats (`1e18` is not the integer 10^18, `1.0` not `1`).
pub async fn round_trip_keeps_every_kind_of_data<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let value = json!({
        "user": {"id": 42, "name": "Zoë Ñandú 🦀 中文", "roles": ["admin", "ops"], "nested": {"deep": [1, {"x": null}]}},
        "numbers": [i64::MAX, i64::MIN, 9_007_199_254_740_993_i64, 0, -1, 3.25, -1.5e300, 1e-300, 5e-324],
        "big_float": 1e18, "float_one": 1.0, "float_max": f64::MAX,
        "flags": [true, false, null],
        "empty_object": {}, "empty_array": [], "empty_string": "",
        "quotes": "\"'\\\n\t</script>", "nul": "a\u{0}b",
        "": "empty key", "__proto__": {"polluted": true}, "ключ": 1, "😀": 2, "a.b": 3,
        "$where": 4, "%25": 5, "key\u{0}nul": 6, "constructor": "x",
    });
    let mut record = Record::new(in_an_hour());
    record.set_data(data(value));
    record.set_owner(Some("user-42".into()));
    record.set_deadline(Some(now() + Duration::hours(2)));
    store.create(&mut record).await.unwrap();
    assert_eq!(record.version(), 1, "a created record is at version 1");
    let back = stored(&store, record.id(), "the created session").await;
    assert_eq!(
        back, record,
        "the stored record differs from what was written"
    );
    assert!(
        back.data()["big_float"].is_f64(),
        "the float 1e18 came back as the integer 1000000000000000000"
    );
    assert!(back.data()["float_one"].is_f64(), "1.0 came back as 1");

    let empty = created(&store, json!({})).await;
    let back = stored(&store, empty.id(), "an empty session").await;
    assert!(back.data().is_empty());
    Ok(())
}

/// `insert` stores every field as given (creation time included) at the record's version + 1,
/// and advances the caller's record to it.
pub async fn insert_stores_every_field<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(in_an_hour());
    record.set_created_at(now() - Duration::days(3));
    record.set_deadline(Some(now() + Duration::hours(2)));
    record.set_owner(Some("owner-insert".into()));
    record.insert("cart", json!([1, 2])).unwrap();
    assert!(store.insert(&mut record).await.unwrap());
    assert_eq!(
        record.version(),
        1,
        "insert advances the record to version 1"
    );
    let back = stored(&store, record.id(), "the inserted session").await;
    assert_eq!(back, record, "insert did not store every field");

    // A record already stored elsewhere (a migration) keeps counting from its version.
    let mut copied = Record::new(in_an_hour());
    copied.set_version(41);
    assert!(store.insert(&mut copied).await.unwrap());
    assert_eq!(copied.version(), 42);
    assert_eq!(
        stored(&store, copied.id(), "a copied session")
            .await
            .version(),
        42
    );
    Ok(())
}

/// `create` on a taken id moves to a fresh id and leaves the other session alone.
pub async fn create_never_overwrites<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let first = created(&store, json!({"who": "first"})).await;
    let mut second = Record::with_id(first.id().clone(), in_an_hour());
    second.insert("who", "second").unwrap();
    assert!(
        !store.insert(&mut second).await.unwrap(),
        "insert on a taken id must fail"
    );
    assert_eq!(second.version(), 0, "a failed insert changed the record");
    store.create(&mut second).await.unwrap();
    assert_ne!(
        second.id(),
        first.id(),
        "create must pick a new id on collision"
    );
    let kept = stored(&store, first.id(), "the first session").await;
    assert_eq!(kept.get::<String>("who").unwrap().as_deref(), Some("first"));
    let moved = stored(&store, second.id(), "the second session").await;
    assert_eq!(
        moved.get::<String>("who").unwrap().as_deref(),
        Some("second")
    );
    Ok(())
}

/// Inserts of one id racing each other: exactly one wins, and its data is what's stored.
pub async fn concurrent_inserts_of_one_id_have_one_winner<H: Harness>(h: &H) -> CaseResult {
    let store = Arc::new(fresh(h).await);
    for _ in 0..4 {
        let id = SessionId::generate();
        let tasks: Vec<_> = (0..12)
            .map(|n| {
                let (store, id) = (Arc::clone(&store), id.clone());
                tokio::spawn(async move {
                    let mut record = Record::with_id(id, in_an_hour());
                    record.insert("n", n).unwrap();
                    store.insert(&mut record).await.unwrap().then_some(n)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await.unwrap());
        }
        assert_eq!(
            winners.len(),
            1,
            "concurrent inserts of one id: {winners:?} all won"
        );
        let back = stored(&*store, &id, "the winner").await;
        assert_eq!(back.get::<i64>("n").unwrap(), Some(winners[0]));
        assert_eq!(back.version(), 1);
    }
    Ok(())
}

/// `count` follows creates, destroys and expiry.
pub async fn count_follows_creates_destroys_and_expiry<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    assert_eq!(
        store.count().await.unwrap(),
        0,
        "a fresh store must be empty"
    );
    let mut records = Vec::new();
    for _ in 0..5 {
        records.push(created(&store, json!({})).await);
    }
    let mut short = Record::new(now() + super::SHORT);
    store.create(&mut short).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 6);
    store.destroy(records[0].id()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 5, "count after a destroy");
    wait_past(short.expires_at()).await;
    assert_eq!(store.count().await.unwrap(), 4, "count after an expiry");
    Ok(())
}

/// A payload over the limit is rejected by every write and nothing is written.
pub async fn oversized_payloads_write_nothing<H: Harness>(h: &H) -> CaseResult {
    let options = StoreOptions {
        max_payload_bytes: 4096,
        ..StoreOptions::default()
    };
    let store = h.store(options).await;
    let mut small = Record::new(in_an_hour());
    small.insert("v", "small").unwrap();
    store.create(&mut small).await.unwrap();

    let big = "x".repeat(8192);
    let mut fresh_big = Record::new(in_an_hour());
    fresh_big.insert("blob", &big).unwrap();
    let err = store.create(&mut fresh_big).await.unwrap_err();
    assert!(
        matches!(err, Error::PayloadTooLarge { max: 4096, .. }),
        "{err}"
    );
    assert!(
        store.get(fresh_big.id()).await.unwrap().is_none(),
        "an oversized create wrote"
    );

    let mut grown = small.clone();
    grown.insert("blob", &big).unwrap();
    assert!(matches!(
        store.set(&mut grown.clone()).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        store.update(&mut grown).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    assert_eq!(
        grown.version(),
        small.version(),
        "a refused write advanced the version"
    );
    assert_eq!(
        stored(&store, small.id(), "the small session").await,
        small,
        "an oversized write changed data"
    );
    assert_eq!(store.count().await.unwrap(), 1);
    Ok(())
}

/// `max_payload_bytes` limits the session data's JSON encoding
/// (`serde_json::to_vec(record.data())`), the same on every backend: data of exactly the
/// limit is stored by every write, one byte more by none.
pub async fn payload_limit_measures_the_data_json<H: Harness>(h: &H) -> CaseResult {
    const MAX: usize = 1000;
    let options = StoreOptions {
        max_payload_bytes: MAX,
        ..StoreOptions::default()
    };
    let store = h.store(options).await;
    let sized = |record: &mut Record, bytes: usize| {
        // `{"blob":"` + n + `"}` is n + 11 bytes.
        record.insert("blob", "x".repeat(bytes - 11)).unwrap();
        assert_eq!(serde_json::to_vec(record.data()).unwrap().len(), bytes);
    };
    let mut exact = Record::new(in_an_hour());
    exact.set_owner(Some("a-long-owner-name-that-is-not-data".into()));
    sized(&mut exact, MAX);
    assert!(
        store.insert(&mut exact).await.is_ok_and(|ok| ok),
        "insert refused data of exactly the limit (is the limit measured on the whole record?)"
    );
    let mut over = exact.clone();
    sized(&mut over, MAX + 1);
    let mut fresh_over = Record::new(in_an_hour());
    sized(&mut fresh_over, MAX + 1);
    for (what, result) in [
        ("insert", store.insert(&mut fresh_over).await.map(drop)),
        ("set", store.set(&mut over.clone()).await),
        ("update", store.update(&mut over.clone()).await),
    ] {
        assert!(
            matches!(result, Err(Error::PayloadTooLarge { size, max: MAX, .. }) if size == MAX + 1),
            "{what} of data one byte over the limit: {result:?}"
        );
    }
    let mut again = stored(&store, exact.id(), "the session at the limit").await;
    sized(&mut again, MAX);
    store.update(&mut again).await.unwrap();
    store.set(&mut again).await.unwrap();
    Ok(())
}

/// Destroying twice, or destroying a missing id, is fine.
pub async fn destroy_is_idempotent<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let record = created(&store, json!({"a": 1})).await;
    store.destroy(record.id()).await.unwrap();
    store.destroy(record.id()).await.unwrap();
    store.destroy(&SessionId::generate()).await.unwrap();
    assert!(store.get(record.id()).await.unwrap().is_none());
    assert!(store.get(&SessionId::generate()).await.unwrap().is_none());
    Ok(())
}

//! The cases; each takes a [`Harness`] and panics with a message when the store misbehaves.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{Harness, Skip};
use crate::{
    CorruptPolicy, Error, HashedIds, Record, Rename, SessionId, SessionStore, StoreOptions, modify,
    now,
};

type CaseResult = Result<(), Skip>;

/// Expiry windows used by the time-based cases: long enough for a slow CI machine to make
/// the calls before expiry, short enough to keep the suite fast.
const SHORT: Duration = Duration::milliseconds(1500);

async fn fresh<H: Harness>(h: &H) -> H::Store {
    h.store(StoreOptions::default()).await
}

fn in_an_hour() -> OffsetDateTime {
    now() + Duration::hours(1)
}

async fn created(store: &impl SessionStore, data: serde_json::Value) -> Record {
    let mut record = Record::new(in_an_hour());
    if let serde_json::Value::Object(map) = data {
        record.set_data(map);
    }
    store.create(&mut record).await.unwrap();
    record
}

async fn wait_past(at: OffsetDateTime) {
    let left = at - now() + Duration::milliseconds(150);
    if left.is_positive() {
        tokio::time::sleep(StdDuration::from_millis(left.whole_milliseconds() as u64)).await;
    }
}

/// Nested, unicode, numeric and empty data, and every record field, come back unchanged.
pub async fn round_trip_keeps_every_kind_of_data<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let data = json!({
        "user": {"id": 42, "name": "Zoë Ñandú 🦀 中文", "roles": ["admin", "ops"], "nested": {"deep": [1, {"x": null}]}},
        "numbers": [i64::MAX, i64::MIN, 9_007_199_254_740_993_i64, 0, -1, 3.25, -1.5e300, 1e-300],
        "flags": [true, false, null],
        "empty_object": {}, "empty_array": [], "empty_string": "",
        "quotes": "\"'\\\n\t</script>",
    });
    let mut record = Record::new(in_an_hour());
    record.set_data(data.as_object().unwrap().clone());
    record.set_owner(Some("user-42".into()));
    record.set_deadline(Some(now() + Duration::hours(2)));
    store.create(&mut record).await.unwrap();
    assert_eq!(record.version(), 1, "a created record is at version 1");
    let back = store
        .get(record.id())
        .await
        .unwrap()
        .expect("the created session is readable");
    assert_eq!(
        back, record,
        "the stored record differs from what was written"
    );

    let empty = created(&store, json!({})).await;
    let back = store
        .get(empty.id())
        .await
        .unwrap()
        .expect("an empty session is readable");
    assert!(back.data().is_empty());
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
    store.create(&mut second).await.unwrap();
    assert_ne!(
        second.id(),
        first.id(),
        "create must pick a new id on collision"
    );
    let kept = store.get(first.id()).await.unwrap().unwrap();
    assert_eq!(kept.get::<String>("who").unwrap().as_deref(), Some("first"));
    let moved = store.get(second.id()).await.unwrap().unwrap();
    assert_eq!(
        moved.get::<String>("who").unwrap().as_deref(),
        Some("second")
    );
    Ok(())
}

/// Expired records are gone for every method, even before any cleanup.
pub async fn expired_records_are_never_returned<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut past = Record::new(now() - Duration::seconds(5));
    store.set(&mut past).await.unwrap();
    assert!(
        store.get(past.id()).await.unwrap().is_none(),
        "a record set already expired was returned"
    );

    let mut short = Record::new(now() + SHORT);
    store.create(&mut short).await.unwrap();
    assert!(store.get(short.id()).await.unwrap().is_some());
    wait_past(short.expires_at()).await;
    assert!(
        store.get(short.id()).await.unwrap().is_none(),
        "an expired record was returned"
    );
    assert!(
        !store.touch(short.id(), in_an_hour()).await.unwrap(),
        "touch revived an expired session"
    );
    let mut stale = short.clone();
    stale.set_expires_at(in_an_hour());
    assert!(store.update(&mut stale).await.unwrap_err().is_conflict());
    assert!(
        store.get(short.id()).await.unwrap().is_none(),
        "update revived an expired session"
    );

    let mut reuse = Record::with_id(short.id().clone(), in_an_hour());
    assert!(
        store.insert(&mut reuse).await.unwrap(),
        "an expired record's id must be free"
    );
    Ok(())
}

/// `touch` moves the expiry, keeps the data and reports whether the session existed.
pub async fn touch_extends_and_reports_missing<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(now() + SHORT);
    record.insert("kept", "yes").unwrap();
    store.create(&mut record).await.unwrap();
    let later = in_an_hour();
    assert!(store.touch(record.id(), later).await.unwrap());
    wait_past(record.expires_at()).await;
    let back = store
        .get(record.id())
        .await
        .unwrap()
        .expect("a touched session outlives its old expiry");
    assert_eq!(back.expires_at(), crate::time_util::to_millis(later));
    assert_eq!(back.get::<String>("kept").unwrap().as_deref(), Some("yes"));
    assert!(
        !store.touch(&SessionId::generate(), later).await.unwrap(),
        "touch of a missing id"
    );
    assert!(store.get(&SessionId::generate()).await.unwrap().is_none());
    Ok(())
}

/// `touch` caps at the absolute deadline on the server.
pub async fn touch_never_passes_the_deadline<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(now() + Duration::seconds(30));
    let deadline = now() + Duration::minutes(1);
    record.set_deadline(Some(deadline));
    store.create(&mut record).await.unwrap();
    assert!(
        store
            .touch(record.id(), now() + Duration::days(30))
            .await
            .unwrap()
    );
    let back = store.get(record.id()).await.unwrap().unwrap();
    assert_eq!(
        back.expires_at(),
        crate::time_util::to_millis(deadline),
        "touch passed the deadline"
    );
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
    Ok(())
}

/// `cycle_id` moves data, expiry, version and owner to a new id; the old id is dead.
pub async fn cycle_id_keeps_data_and_kills_the_old_id<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(in_an_hour());
    record.insert("cart", json!([1, 2])).unwrap();
    record.set_owner(Some("owner-c".into()));
    store.create(&mut record).await.unwrap();
    let new_id = store
        .cycle_id(record.id())
        .await
        .unwrap()
        .expect("a live session cycles");
    assert_ne!(&new_id, record.id());
    assert!(
        store.get(record.id()).await.unwrap().is_none(),
        "the old id still works"
    );
    let moved = store.get(&new_id).await.unwrap().unwrap();
    assert_eq!(moved.data(), record.data());
    assert_eq!(moved.expires_at(), record.expires_at());
    assert_eq!(moved.owner(), Some("owner-c"));
    assert_eq!(
        store.cycle_id(record.id()).await.unwrap(),
        None,
        "cycling a dead id"
    );
    let owned = store.list_by_owner("owner-c").await.unwrap();
    assert_eq!(owned.len(), 1, "the owner index must follow the new id");
    assert_eq!(owned[0].id(), &new_id);
    Ok(())
}

/// `rename` onto a live id changes nothing.
pub async fn rename_never_overwrites<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let a = created(&store, json!({"who": "a"})).await;
    let b = created(&store, json!({"who": "b"})).await;
    assert_eq!(
        store.rename(a.id(), b.id()).await.unwrap(),
        Rename::TargetTaken
    );
    assert_eq!(store.get(a.id()).await.unwrap().unwrap().data(), a.data());
    assert_eq!(store.get(b.id()).await.unwrap().unwrap().data(), b.data());
    let missing = SessionId::generate();
    assert_eq!(
        store
            .rename(&missing, &SessionId::generate())
            .await
            .unwrap(),
        Rename::SourceMissing
    );
    Ok(())
}

/// `update` succeeds on the current version, bumps it by one, and conflicts on a stale one.
pub async fn update_is_compare_and_swap<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let record = created(&store, json!({"n": 0})).await;
    let mut first = record.clone();
    let mut second = record.clone();
    first.insert("n", 1).unwrap();
    store.update(&mut first).await.unwrap();
    assert_eq!(first.version(), record.version() + 1);
    second.insert("n", 2).unwrap();
    let err = store.update(&mut second).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { id } if id == record.id()),
        "{err}"
    );
    assert_eq!(
        second.version(),
        record.version(),
        "a failed update must not advance the version"
    );
    let back = store.get(record.id()).await.unwrap().unwrap();
    assert_eq!(
        back.get::<i64>("n").unwrap(),
        Some(1),
        "a conflicting update changed data"
    );
    assert_eq!(back.version(), first.version());
    Ok(())
}

/// A request still holding a destroyed session can't bring it back.
pub async fn stale_update_after_destroy_resurrects_nothing<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let record = created(&store, json!({"user": "x"})).await;
    store.destroy(record.id()).await.unwrap();
    let mut stale = record.clone();
    assert!(store.update(&mut stale).await.unwrap_err().is_conflict());
    assert!(!store.touch(record.id(), in_an_hour()).await.unwrap());
    assert!(
        store.get(record.id()).await.unwrap().is_none(),
        "a destroyed session came back"
    );
    Ok(())
}

/// A request still holding the old id after a rotation can't bring the old id back.
pub async fn stale_writes_after_cycle_id_resurrect_nothing<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let record = created(&store, json!({"user": "x"})).await;
    let new_id = store.cycle_id(record.id()).await.unwrap().unwrap();
    let mut stale = record.clone();
    assert!(store.update(&mut stale).await.unwrap_err().is_conflict());
    assert!(!store.touch(record.id(), in_an_hour()).await.unwrap());
    assert!(
        store.get(record.id()).await.unwrap().is_none(),
        "the cycled-away id came back"
    );
    assert!(store.get(&new_id).await.unwrap().is_some());
    Ok(())
}

/// `set` writes whatever is there (or nothing), and stores one more than the larger of the
/// stored and the caller's version.
pub async fn set_is_last_writer_wins<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(in_an_hour());
    record.insert("v", "one").unwrap();
    store.set(&mut record).await.unwrap();
    assert_eq!(record.version(), 1);
    let mut other = record.clone();
    other.insert("v", "two").unwrap();
    store.set(&mut other).await.unwrap();
    record.insert("v", "three").unwrap();
    store.set(&mut record).await.unwrap();
    let back = store.get(record.id()).await.unwrap().unwrap();
    assert_eq!(back.get::<String>("v").unwrap().as_deref(), Some("three"));
    assert_eq!(
        back.version(),
        3,
        "set stores above the stored version (2), not the caller's (1)"
    );
    assert_eq!(
        record.version(),
        3,
        "set advances the caller's record to the stored version"
    );
    Ok(())
}

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
    let back = store.get(record.id()).await.unwrap().unwrap();
    assert_eq!(
        back.get::<u64>("count").unwrap(),
        Some(TASKS as u64),
        "increments were lost"
    );
    assert_eq!(back.version(), 1 + TASKS as u64);
    Ok(())
}

/// Sessions can be listed and revoked by owner, and only the owner's.
pub async fn owner_listing_and_revocation<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut mine = Vec::new();
    for device in 0..3 {
        let mut record = Record::new(in_an_hour());
        record.insert("device", device).unwrap();
        record.set_owner(Some("alice".into()));
        store.create(&mut record).await.unwrap();
        mine.push(record);
    }
    let mut bobs = Record::new(in_an_hour());
    bobs.set_owner(Some("bob".into()));
    store.create(&mut bobs).await.unwrap();
    let mut gone = Record::new(now() + SHORT);
    gone.set_owner(Some("alice".into()));
    store.create(&mut gone).await.unwrap();
    store.destroy(mine[2].id()).await.unwrap();
    wait_past(gone.expires_at()).await;

    let mut listed: Vec<_> = store.list_by_owner("alice").await.unwrap();
    listed.sort_by_key(|r| r.get::<u32>("device").unwrap());
    assert_eq!(
        listed,
        mine[..2].to_vec(),
        "listing must hold exactly the live sessions"
    );
    assert!(store.list_by_owner("nobody").await.unwrap().is_empty());

    let revoked = store.destroy_by_owner("alice").await.unwrap();
    assert!(
        (2..=3).contains(&revoked),
        "revoked {revoked}, expected the 2 live ones"
    );
    for record in &mine {
        assert!(
            store.get(record.id()).await.unwrap().is_none(),
            "a revoked session lives"
        );
    }
    assert!(
        store.get(bobs.id()).await.unwrap().is_some(),
        "another owner's session was revoked"
    );
    assert!(store.list_by_owner("alice").await.unwrap().is_empty());
    Ok(())
}

/// `delete_expired` leaves live sessions and afterwards `count` is exact.
pub async fn delete_expired_purges_only_expired<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let live = created(&store, json!({})).await;
    let mut doomed = Vec::new();
    for _ in 0..3 {
        let mut record = Record::new(now() + SHORT);
        store.create(&mut record).await.unwrap();
        doomed.push(record);
    }
    // The last one written expires last; on a loaded machine writing them takes a while.
    wait_past(doomed.iter().map(Record::expires_at).max().unwrap()).await;
    let removed = store.delete_expired().await.unwrap();
    assert!(removed <= 3, "removed {removed} but only 3 had expired");
    assert_eq!(store.count().await.unwrap(), 1, "count after purge");
    assert!(store.get(live.id()).await.unwrap().is_some());
    assert_eq!(
        store.delete_expired().await.unwrap(),
        0,
        "a second purge finds nothing"
    );
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
        store.get(small.id()).await.unwrap().unwrap(),
        small,
        "an oversized write changed data"
    );
    assert_eq!(store.count().await.unwrap(), 1);
    Ok(())
}

/// `count` follows creates and destroys.
pub async fn count_follows_creates_and_destroys<H: Harness>(h: &H) -> CaseResult {
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
    assert_eq!(store.count().await.unwrap(), 5);
    store.destroy(records[0].id()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 4);
    Ok(())
}

/// A corrupt record is a decode error naming its id; other sessions stay readable.
pub async fn corrupt_records_are_decode_errors<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let healthy = created(&store, json!({"ok": true})).await;
    let id = SessionId::generate();
    h.write_corrupt(&store, &id).await?;
    let err = store.get(&id).await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { .. }),
        "expected a decode error, got {err}"
    );
    assert_eq!(
        err.session_id(),
        Some(&id),
        "the decode error must name the session"
    );
    assert!(!err.is_retryable());
    assert!(
        store.get(healthy.id()).await.unwrap().is_some(),
        "a healthy session became unreadable"
    );
    Ok(())
}

/// With [`CorruptPolicy::TreatAsMissing`] a corrupt record reads as absent.
pub async fn corrupt_records_can_be_treated_as_missing<H: Harness>(h: &H) -> CaseResult {
    let options = StoreOptions {
        corrupt: CorruptPolicy::TreatAsMissing,
        ..StoreOptions::default()
    };
    let store = h.store(options).await;
    let id = SessionId::generate();
    h.write_corrupt(&store, &id).await?;
    assert!(store.get(&id).await.unwrap().is_none());
    Ok(())
}

/// [`HashedIds`] over the store: the plain id works through the wrapper and is nowhere
/// in the store.
pub async fn hashed_ids_work_through_the_trait<H: Harness>(h: &H) -> CaseResult {
    let hashed = HashedIds::new(fresh(h).await);
    let mut record = Record::new(in_an_hour());
    record.insert("secret", "s").unwrap();
    record.set_owner(Some("carol".into()));
    hashed.create(&mut record).await.unwrap();
    assert_eq!(hashed.get(record.id()).await.unwrap().unwrap(), record);
    assert!(
        hashed.inner().get(record.id()).await.unwrap().is_none(),
        "the plain id is stored"
    );
    assert!(
        hashed
            .inner()
            .get(&record.id().hashed())
            .await
            .unwrap()
            .is_some()
    );
    let new_id = hashed.cycle_id(record.id()).await.unwrap().unwrap();
    assert!(hashed.get(&new_id).await.unwrap().is_some());
    let listed = hashed.list_by_owner("carol").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id(), &new_id.hashed(), "listing shows stored ids");
    Ok(())
}

/// Integers above `i64::MAX` either come back exactly or fail to encode; never altered.
pub async fn large_integers_round_trip_or_fail_loudly<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(in_an_hour());
    record.insert("big", u64::MAX).unwrap();
    match store.create(&mut record).await {
        Ok(()) => {
            let back = store.get(record.id()).await.unwrap().unwrap();
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

/// `limit_owner` keeps the newest sessions of one owner and ends the rest, also through
/// [`HashedIds`].
pub async fn owner_limit_ends_the_oldest_sessions<H: Harness>(h: &H) -> CaseResult {
    let store = HashedIds::new(fresh(h).await);
    let mut logins = Vec::new();
    for n in 0..4 {
        let mut record = Record::new(in_an_hour());
        record.insert("login", n).unwrap();
        record.set_owner(Some("dave".into()));
        store.create(&mut record).await.unwrap();
        logins.push(record);
        // Distinct creation times, so "oldest" is well defined at millisecond precision.
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    let mut other = Record::new(in_an_hour());
    other.set_owner(Some("erin".into()));
    store.create(&mut other).await.unwrap();

    assert_eq!(store.limit_owner("dave", 2).await.unwrap(), 2);
    for (n, record) in logins.iter().enumerate() {
        let alive = store.get(record.id()).await.unwrap().is_some();
        assert_eq!(
            alive,
            n >= 2,
            "login {n}: the two newest must survive, the rest end"
        );
    }
    assert!(
        store.get(other.id()).await.unwrap().is_some(),
        "another owner's session ended"
    );
    assert_eq!(store.limit_owner("dave", 2).await.unwrap(), 0);
    Ok(())
}

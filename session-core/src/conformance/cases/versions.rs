//! Versions: compare-and-swap, `set` never reusing one, the maximum, every field a write
//! stores.

use serde_json::json;
use time::Duration;

use super::{CaseResult, as_listed, created, fresh, in_an_hour, stored};
use crate::conformance::Harness;
use crate::{Error, Record, SessionId, SessionStore, now};

/// `update` succeeds on the current version, bumps it by one, and conflicts on a stale one
/// without changing anything (the caller's record included).
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
    let back = stored(&store, record.id(), "the session").await;
    assert_eq!(
        back.get::<i64>("n").unwrap(),
        Some(1),
        "a conflicting update changed data"
    );
    assert_eq!(back.version(), first.version());
    let mut missing = Record::with_id(SessionId::generate(), in_an_hour());
    assert!(
        store.update(&mut missing).await.unwrap_err().is_conflict(),
        "update of a missing session (version 0)"
    );
    assert!(
        store.get(missing.id()).await.unwrap().is_none(),
        "update created a session"
    );
    Ok(())
}

/// `update` stores every field it is given: data, owner (the listings follow), expiry and
/// deadline; the creation time the record carries.
pub async fn update_stores_every_field<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(in_an_hour());
    record.set_owner(Some("owner-before".into()));
    record.set_deadline(Some(now() + Duration::hours(3)));
    record.insert("step", 1).unwrap();
    store.create(&mut record).await.unwrap();
    let mut read = stored(&store, record.id(), "the session").await;
    read.insert("step", 2).unwrap();
    read.set_owner(Some("owner-after".into()));
    read.set_deadline(Some(now() + Duration::hours(2)));
    read.set_expires_at(now() + Duration::minutes(30));
    store.update(&mut read).await.unwrap();
    let back = stored(&store, record.id(), "the updated session").await;
    assert_eq!(back, read, "update did not store every field");
    assert_eq!(
        back.created_at(),
        record.created_at(),
        "update moved created_at"
    );
    let after = store.list_by_owner("owner-after").await.unwrap();
    assert_eq!(after.len(), 1, "the new owner does not list the session");
    assert_eq!(after[0], as_listed(h, &read));
    assert!(
        store
            .list_by_owner("owner-before")
            .await
            .unwrap()
            .is_empty(),
        "the old owner still lists the session"
    );
    assert_eq!(store.destroy_by_owner("owner-before").await.unwrap(), 0);
    assert!(store.get(record.id()).await.unwrap().is_some());
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
    assert_eq!(other.version(), 2);
    record.insert("v", "three").unwrap();
    store.set(&mut record).await.unwrap();
    let back = stored(&store, record.id(), "the session").await;
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

/// A `set` of a freshly built record (version 0, as tower-sessions' `save` makes one) over a
/// session must not hand out a version a reader already holds: that reader's compare-and-swap
/// then fails instead of silently reverting the set.
pub async fn set_never_reuses_a_version<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let original = created(&store, json!({"who": "original"})).await;
    let mut reader = stored(&store, original.id(), "the session").await;
    let mut save = Record::with_id(original.id().clone(), in_an_hour());
    save.insert("who", "saved").unwrap();
    store.set(&mut save).await.unwrap();
    assert!(
        save.version() > reader.version(),
        "set stored version {} over version {}",
        save.version(),
        reader.version()
    );
    reader.insert("who", "stale reader").unwrap();
    let err = store.update(&mut reader).await.unwrap_err();
    assert!(
        err.is_conflict(),
        "an update at a version read before a set succeeded: {err}"
    );
    let back = stored(&store, original.id(), "the session").await;
    assert_eq!(back.get::<String>("who").unwrap().as_deref(), Some("saved"));
    assert_eq!(back.version(), save.version());
    Ok(())
}

/// `set` stores every field as given (over a live session of another owner, expiry, deadline
/// and creation time too).
pub async fn set_stores_every_field<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut first = Record::new(in_an_hour());
    first.set_owner(Some("owner-set-1".into()));
    store.set(&mut first).await.unwrap();
    let mut second = Record::with_id(first.id().clone(), now() + Duration::minutes(20));
    second.set_owner(Some("owner-set-2".into()));
    second.set_created_at(now() - Duration::days(1));
    second.set_deadline(Some(now() + Duration::minutes(40)));
    second.insert("cart", json!([3])).unwrap();
    store.set(&mut second).await.unwrap();
    assert_eq!(second.version(), 2);
    assert_eq!(
        stored(&store, first.id(), "the set session").await,
        second,
        "set did not store every field"
    );
    assert!(store.list_by_owner("owner-set-1").await.unwrap().is_empty());
    assert_eq!(
        store.list_by_owner("owner-set-2").await.unwrap(),
        vec![as_listed(h, &second)]
    );
    Ok(())
}

/// Versions stop at [`Record::MAX_VERSION`]: a write past it is an [`Error::Encode`] that
/// changes nothing.
pub async fn versions_stop_at_the_maximum<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(in_an_hour());
    record.set_version(Record::MAX_VERSION - 1);
    record.insert("n", 1).unwrap();
    store.set(&mut record).await.unwrap();
    assert_eq!(record.version(), Record::MAX_VERSION);
    let mut read = stored(&store, record.id(), "a session at the last version").await;
    assert_eq!(read.version(), Record::MAX_VERSION);
    read.insert("n", 2).unwrap();
    let err = store.update(&mut read).await.unwrap_err();
    assert!(
        matches!(err, Error::Encode { .. }),
        "update past the maximum: {err}"
    );
    let mut again = Record::with_id(record.id().clone(), in_an_hour());
    let err = store.set(&mut again).await.unwrap_err();
    assert!(
        matches!(err, Error::Encode { .. }),
        "set past the maximum: {err}"
    );
    let back = stored(&store, record.id(), "a session at the last version").await;
    assert_eq!(
        back.get::<i64>("n").unwrap(),
        Some(1),
        "a refused write changed data"
    );
    let mut beyond = Record::new(in_an_hour());
    beyond.set_version(Record::MAX_VERSION);
    assert!(matches!(
        store.insert(&mut beyond).await,
        Err(Error::Encode { .. })
    ));
    assert!(store.get(beyond.id()).await.unwrap().is_none());
    Ok(())
}

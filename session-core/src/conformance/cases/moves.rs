//! `rename` and `cycle_id`: every field moves, the old id dies, nothing is overwritten or
//! resurrected.

use std::sync::Arc;

use serde_json::json;
use time::Duration;

use super::{CaseResult, as_listed, created, fresh, in_an_hour, stored};
use crate::conformance::Harness;
use crate::{Record, Rename, SessionId, SessionStore, now};

/// `cycle_id` moves every field (data, expiry, deadline, creation time, version, owner) to a
/// new id; the old id is dead for every method.
pub async fn cycle_id_keeps_data_and_kills_the_old_id<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(in_an_hour());
    record.insert("cart", json!([1, 2])).unwrap();
    record.set_owner(Some("owner-c".into()));
    record.set_created_at(now() - Duration::hours(5));
    record.set_deadline(Some(now() + Duration::hours(2)));
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
    let moved = stored(&store, &new_id, "the moved session").await;
    let mut expected = record.clone();
    expected.set_id(new_id.clone());
    assert_eq!(moved, expected, "cycle_id did not keep every field");
    assert_eq!(
        store.cycle_id(record.id()).await.unwrap(),
        None,
        "cycling a dead id"
    );
    assert!(!store.touch(record.id(), in_an_hour()).await.unwrap());
    let owned = store.list_by_owner("owner-c").await.unwrap();
    assert_eq!(owned.len(), 1, "the owner index must follow the new id");
    assert_eq!(owned[0].id(), &h.listed_id(&new_id));
    assert_eq!(store.count().await.unwrap(), 1);
    Ok(())
}

/// `rename` onto a live id changes nothing; from a missing id it reports so.
pub async fn rename_never_overwrites<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let a = created(&store, json!({"who": "a"})).await;
    let b = created(&store, json!({"who": "b"})).await;
    assert_eq!(
        store.rename(a.id(), b.id()).await.unwrap(),
        Rename::TargetTaken
    );
    assert_eq!(stored(&store, a.id(), "a").await, a);
    assert_eq!(stored(&store, b.id(), "b").await, b);
    let missing = SessionId::generate();
    let target = SessionId::generate();
    assert_eq!(
        store.rename(&missing, &target).await.unwrap(),
        Rename::SourceMissing
    );
    assert!(store.get(&target).await.unwrap().is_none());
    Ok(())
}

/// `rename` keeps every field and version, and the owner listing follows the new id.
pub async fn rename_keeps_every_field<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(now() + Duration::minutes(50));
    record.set_owner(Some("owner-rename".into()));
    record.set_created_at(now() - Duration::days(2));
    record.set_deadline(Some(now() + Duration::hours(1)));
    record.insert("k", "v").unwrap();
    store.create(&mut record).await.unwrap();
    let mut read = stored(&store, record.id(), "the session").await;
    read.insert("k", "changed").unwrap();
    store.update(&mut read).await.unwrap();
    let to = SessionId::generate();
    assert_eq!(store.rename(record.id(), &to).await.unwrap(), Rename::Moved);
    let mut expected = read.clone();
    expected.set_id(to.clone());
    assert_eq!(
        stored(&store, &to, "the renamed session").await,
        expected,
        "rename did not keep every field"
    );
    assert!(store.get(record.id()).await.unwrap().is_none());
    assert_eq!(
        store.list_by_owner("owner-rename").await.unwrap(),
        vec![as_listed(h, &expected)]
    );
    // The version moved with it: a compare-and-swap at it succeeds under the new id.
    let mut next = expected;
    next.insert("k", "after").unwrap();
    store.update(&mut next).await.unwrap();
    Ok(())
}

/// `rename(id, id)`: `TargetTaken` for a live session (nothing changes), `SourceMissing`
/// otherwise, on every backend.
pub async fn rename_onto_itself<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let record = created(&store, json!({"self": true})).await;
    assert_eq!(
        store.rename(record.id(), record.id()).await.unwrap(),
        Rename::TargetTaken
    );
    assert_eq!(stored(&store, record.id(), "the session").await, record);
    let missing = SessionId::generate();
    assert_eq!(
        store.rename(&missing, &missing).await.unwrap(),
        Rename::SourceMissing
    );
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
    assert_eq!(
        store
            .rename(record.id(), &SessionId::generate())
            .await
            .unwrap(),
        Rename::SourceMissing
    );
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

/// `cycle_id`s of one session racing each other: exactly one moves it; it exists once.
pub async fn concurrent_cycle_ids_move_once<H: Harness>(h: &H) -> CaseResult {
    let store = Arc::new(fresh(h).await);
    for _ in 0..3 {
        let mut record = Record::new(in_an_hour());
        record.insert("n", 7).unwrap();
        record.set_owner(Some("owner-cycles".into()));
        store.create(&mut record).await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, id) = (Arc::clone(&store), record.id().clone());
                tokio::spawn(async move { store.cycle_id(&id).await.unwrap() })
            })
            .collect();
        let mut moved = Vec::new();
        for task in tasks {
            moved.extend(task.await.unwrap());
        }
        assert_eq!(moved.len(), 1, "one session moved {} times", moved.len());
        let back = stored(&*store, &moved[0], "the moved session").await;
        assert_eq!(back.get::<i64>("n").unwrap(), Some(7));
        assert_eq!(
            store.list_by_owner("owner-cycles").await.unwrap().len(),
            1,
            "the session exists under more than one id"
        );
        store.destroy(&moved[0]).await.unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 0);
    Ok(())
}

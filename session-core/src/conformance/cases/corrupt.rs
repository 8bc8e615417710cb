//! Records that no longer decode: a typed error naming them, the policy, and left alone by
//! every method but `set` and `destroy`.

use std::time::Duration as StdDuration;

use serde_json::json;
use time::Duration;

use super::{CaseResult, created, fresh, in_an_hour, stored};
use crate::conformance::{Harness, NotApplicable, Unrun};
use crate::{CorruptPolicy, Error, Record, Rename, SessionId, SessionStore, StoreOptions, now};

/// The corrupt-record cases' way out for a store that can't hold one.
fn applicable<H: Harness>(h: &H) -> Result<(), Unrun> {
    match h.corrupt_records_impossible() {
        Some(reason) => Err(Unrun::NotApplicable(NotApplicable(reason.into()))),
        None => Ok(()),
    }
}

/// `get` of a corrupt record under `id` must still be a decode error naming it.
async fn still_corrupt(store: &impl SessionStore, id: &SessionId, after: &str) {
    match store.get(id).await {
        Err(Error::Decode { id: named, .. }) => {
            assert_eq!(
                &named, id,
                "after {after}: the decode error names another session"
            )
        }
        other => panic!("after {after}: the corrupt record was changed: get gives {other:?}"),
    }
}

/// A corrupt record is a decode error naming its id; other sessions stay readable.
pub async fn corrupt_records_are_decode_errors<H: Harness>(h: &H) -> CaseResult {
    applicable(h)?;
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
        !err.to_string().contains(id.expose()),
        "the error message shows the session id: {err}"
    );
    assert!(
        store.get(healthy.id()).await.unwrap().is_some(),
        "a healthy session became unreadable"
    );
    Ok(())
}

/// With [`CorruptPolicy::TreatAsMissing`] a corrupt record reads as absent (and stays).
pub async fn corrupt_records_can_be_treated_as_missing<H: Harness>(h: &H) -> CaseResult {
    applicable(h)?;
    let options = StoreOptions {
        corrupt: CorruptPolicy::TreatAsMissing,
        ..StoreOptions::default()
    };
    let store = h.store(options).await;
    let id = SessionId::generate();
    h.write_corrupt(&store, &id).await?;
    assert!(store.get(&id).await.unwrap().is_none());
    let mut stale = Record::with_id(id.clone(), in_an_hour());
    stale.set_version(1);
    assert!(
        store.update(&mut stale).await.unwrap_err().is_conflict(),
        "an update of a record treated as missing must conflict"
    );
    assert!(!store.touch(&id, in_an_hour()).await.unwrap());
    Ok(())
}

/// Every method but `set` and `destroy` leaves a corrupt record as it is: `insert` reports
/// the id taken, `update`, `touch`, `rename` and `cycle_id` fail with a decode error or
/// answer as for a missing session, and none of them moves, rewrites or re-times it. `set`
/// replaces it; `destroy` removes it.
pub async fn corrupt_records_are_left_alone<H: Harness>(h: &H) -> CaseResult {
    applicable(h)?;
    let store = fresh(h).await;
    let id = SessionId::generate();
    h.write_corrupt(&store, &id).await?;
    still_corrupt(&store, &id, "writing it").await;

    let mut taker = Record::with_id(id.clone(), in_an_hour());
    assert!(
        !store.insert(&mut taker).await.unwrap(),
        "insert took the id of a corrupt record"
    );
    still_corrupt(&store, &id, "insert").await;

    for version in [0, 1, 2] {
        let mut guess = Record::with_id(id.clone(), in_an_hour());
        guess.set_version(version);
        match store.update(&mut guess).await {
            Err(Error::Decode { .. }) => {}
            Err(err) if err.is_conflict() => {}
            other => panic!("update at version {version} of a corrupt record: {other:?}"),
        }
        still_corrupt(&store, &id, &format!("update at version {version}")).await;
    }

    match store.touch(&id, now() + Duration::milliseconds(200)).await {
        Err(Error::Decode { .. }) | Ok(false) => {}
        other => panic!("touch of a corrupt record: {other:?}"),
    }
    tokio::time::sleep(StdDuration::from_millis(350)).await;
    still_corrupt(
        &store,
        &id,
        "touch (a touch that re-timed it would have ended it)",
    )
    .await;

    let target = SessionId::generate();
    match store.rename(&id, &target).await {
        Err(Error::Decode { .. }) | Ok(Rename::SourceMissing) => {}
        other => panic!("rename of a corrupt record: {other:?}"),
    }
    assert!(
        store.get(&target).await.unwrap().is_none(),
        "rename moved a corrupt record"
    );
    still_corrupt(&store, &id, "rename").await;
    match store.cycle_id(&id).await {
        Err(Error::Decode { .. }) | Ok(None) => {}
        other => panic!("cycle_id of a corrupt record: {other:?}"),
    }
    still_corrupt(&store, &id, "cycle_id").await;

    let mut repair = Record::with_id(id.clone(), in_an_hour());
    repair.insert("repaired", true).unwrap();
    store.set(&mut repair).await.unwrap();
    let back = stored(&store, &id, "a corrupt record replaced by set").await;
    assert_eq!(back.get::<bool>("repaired").unwrap(), Some(true));

    let other = SessionId::generate();
    h.write_corrupt(&store, &other).await?;
    store.destroy(&other).await.unwrap();
    assert!(
        store.get(&other).await.unwrap().is_none(),
        "destroy left a corrupt record"
    );
    Ok(())
}

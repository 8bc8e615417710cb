//! Expiry, touch, deadlines and purges: checked by waiting, in storage.

use std::sync::Arc;

use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{
    CaseResult, SHORT, Window, created, fresh, gone_everywhere, in_an_hour, in_time, stored,
    wait_past,
};
use crate::conformance::Harness;
use crate::time_util::to_millis;
use crate::{Record, Rename, SessionId, SessionStore, now};

/// Expired records are gone for every method, even before any cleanup; a record is expired
/// at its `expires_at` exactly.
pub async fn expired_records_are_never_returned<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut past = Record::new(now() - Duration::seconds(5));
    store.set(&mut past).await.unwrap();
    assert!(
        store.get(past.id()).await.unwrap().is_none(),
        "a record set already expired was returned"
    );
    // Expiring the instant it was made: expired at once. A store that is wrong at the
    // boundary (live while `expires_at == now`) shows it only when its `get` lands in the
    // same millisecond as the record's creation, so the check runs several times: one run
    // a busy machine preempted at a millisecond's end once let that bug through.
    for _ in 0..20 {
        let mut instant = Record::new(now());
        store.insert(&mut instant).await.unwrap();
        assert!(
            store.get(instant.id()).await.unwrap().is_none(),
            "a record is still live at its expires_at"
        );
    }

    let mut short = Record::new(now() + SHORT);
    short.set_owner(Some("owner-expiring".into()));
    store.create(&mut short).await.unwrap();
    assert!(store.get(short.id()).await.unwrap().is_some());
    wait_past(short.expires_at()).await;
    assert!(
        store.get(short.id()).await.unwrap().is_none(),
        "an expired record was returned"
    );
    assert!(
        store
            .list_by_owner("owner-expiring")
            .await
            .unwrap()
            .is_empty(),
        "an expired record was listed"
    );
    assert_eq!(
        store.destroy_by_owner("owner-expiring").await.unwrap(),
        0,
        "an expired record counted as revoked"
    );
    let mut stale = short.clone();
    stale.set_expires_at(in_an_hour());
    assert!(store.update(&mut stale).await.unwrap_err().is_conflict());
    assert_eq!(
        store
            .rename(short.id(), &SessionId::generate())
            .await
            .unwrap(),
        Rename::SourceMissing,
        "rename moved an expired record"
    );
    assert_eq!(store.cycle_id(short.id()).await.unwrap(), None);
    gone_everywhere(&store, short.id(), "an expired session").await;
    Ok(())
}

/// `touch` moves the expiry (and nothing else: data, owner, deadline, creation time and
/// version stay) and reports whether the session existed.
pub async fn touch_extends_and_changes_nothing_else<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut record = Record::new(now() + SHORT);
    record.insert("kept", "yes").unwrap();
    record.set_owner(Some("owner-touch".into()));
    record.set_created_at(now() - Duration::hours(1));
    record.set_deadline(Some(now() + Duration::hours(2)));
    store.create(&mut record).await.unwrap();
    let before = stored(&store, record.id(), "the session").await;
    let later = in_an_hour();
    assert!(store.touch(record.id(), later).await.unwrap());
    wait_past(record.expires_at()).await;
    let back = stored(&store, record.id(), "a touched session past its old expiry").await;
    let mut expected = before.clone();
    expected.set_expires_at(later);
    assert_eq!(back, expected, "touch changed more than the expiry");
    assert_eq!(back.expires_at(), to_millis(later));
    // Its owner still reaches it: an owner index that kept the old expiry would have let it
    // go, and "log out everywhere" would miss a session kept alive by touches.
    let listed = store.list_by_owner("owner-touch").await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id().clone()).collect::<Vec<_>>(),
        vec![h.listed_id(record.id())],
        "a touched session past its old expiry is missing from its owner's listing"
    );
    assert!(
        !store.touch(&SessionId::generate(), later).await.unwrap(),
        "touch of a missing id"
    );
    // The touch does not conflict with a compare-and-swap of the version read before it.
    let mut updated = before;
    updated.insert("kept", "still").unwrap();
    store.update(&mut updated).await.unwrap();
    Ok(())
}

/// `touch` may shorten the expiry, and a time not after now ends the session.
pub async fn touch_may_shorten_and_a_past_time_ends_the_session<H: Harness>(h: &H) -> CaseResult {
    in_time("touch_may_shorten", |window| async move {
        let store = fresh(h).await;
        let shortened = created(&store, json!({"n": 1})).await;
        let soon = now() + window;
        assert!(store.touch(shortened.id(), soon).await.unwrap());
        let Some(back) = store.get(shortened.id()).await.unwrap() else {
            assert!(
                now() >= soon,
                "a shortened session is missing before its new expiry"
            );
            return Window::Outran;
        };
        assert_eq!(back.expires_at(), to_millis(soon));
        let ended = created(&store, json!({"n": 2})).await;
        assert!(
            store
                .touch(ended.id(), now() - Duration::seconds(1))
                .await
                .unwrap(),
            "touch to a past time of a live session reports it was there"
        );
        gone_everywhere(&store, ended.id(), "a session touched to a past time").await;
        wait_past(soon).await;
        gone_everywhere(
            &store,
            shortened.id(),
            "a shortened session past its new expiry",
        )
        .await;
        Window::Kept
    })
    .await
}

/// `touch` caps at the absolute deadline in storage: past the deadline the session is gone,
/// however far it was touched.
pub async fn touch_never_passes_the_deadline<H: Harness>(h: &H) -> CaseResult {
    in_time("touch_never_passes_the_deadline", |window| async move {
        let store = fresh(h).await;
        let deadline = now() + window;
        let mut record = Record::new(now() + window / 2);
        record.set_deadline(Some(deadline));
        store.create(&mut record).await.unwrap();
        let touched = store
            .touch(record.id(), now() + Duration::days(30))
            .await
            .unwrap();
        if !touched {
            assert!(
                now() >= record.expires_at(),
                "touch reported a live session with a deadline missing"
            );
            return Window::Outran;
        }
        let Some(back) = store.get(record.id()).await.unwrap() else {
            assert!(
                now() >= deadline,
                "a touched session is missing before its deadline"
            );
            return Window::Outran;
        };
        assert_eq!(
            back.expires_at(),
            to_millis(deadline),
            "touch passed the deadline"
        );
        assert_eq!(back.deadline(), Some(to_millis(deadline)));
        wait_past(deadline).await;
        gone_everywhere(&store, record.id(), "a session past its deadline").await;
        Window::Kept
    })
    .await
}

/// The deadline survives every write path (`insert`, `set`, `update`, `rename`,
/// `cycle_id`): a touch after it still caps there, and past it the session is gone.
pub async fn every_write_keeps_the_deadline<H: Harness>(h: &H) -> CaseResult {
    in_time("every_write_keeps_the_deadline", |window| async move {
        let store = Arc::new(fresh(h).await);
        let deadline = now() + window + Duration::milliseconds(500);
        let paths = ["insert", "set", "update", "rename", "cycle_id"];
        let tasks: Vec<_> = paths
            .into_iter()
            .map(|path| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { write_with_deadline(&*store, path, deadline).await })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Some(written) => ids.push(written),
                None => return Window::Outran,
            }
        }
        wait_past(deadline).await;
        for (path, id) in ids {
            gone_everywhere(&*store, &id, &format!("past the deadline after {path}")).await;
        }
        Window::Kept
    })
    .await
}

/// Writes a session with `deadline` through `path`, checks it kept the deadline and touches
/// it a day on: the id it ends under, or `None` when the calls outran the deadline (a
/// session missing before it panics).
async fn write_with_deadline(
    store: &impl SessionStore,
    path: &'static str,
    deadline: OffsetDateTime,
) -> Option<(&'static str, SessionId)> {
    let outran = |what: &str| {
        assert!(
            now() >= deadline,
            "{path}: {what} before the session's deadline"
        );
        None
    };
    let mut record = Record::new(in_an_hour());
    record.set_deadline(Some(deadline));
    record.insert("path", path).unwrap();
    if path == "set" {
        store.set(&mut record).await.unwrap();
    } else {
        store.create(&mut record).await.unwrap();
    }
    let mut id = record.id().clone();
    match path {
        "update" => {
            let Some(mut read) = store.get(&id).await.unwrap() else {
                return outran("the session is missing");
            };
            read.insert("updated", true).unwrap();
            match store.update(&mut read).await {
                Err(err) if err.is_conflict() => return outran("update conflicts"),
                other => other.unwrap(),
            }
        }
        "rename" => {
            let to = SessionId::generate();
            match store.rename(&id, &to).await.unwrap() {
                Rename::Moved => id = to,
                Rename::SourceMissing => return outran("rename finds no session"),
                Rename::TargetTaken => panic!("rename: a fresh id is taken"),
            }
        }
        "cycle_id" => match store.cycle_id(&id).await.unwrap() {
            Some(to) => id = to,
            None => return outran("cycle_id finds no session"),
        },
        _ => {}
    }
    let Some(back) = store.get(&id).await.unwrap() else {
        return outran("the session is missing");
    };
    assert_eq!(
        back.deadline(),
        Some(to_millis(deadline)),
        "{path} did not keep the deadline"
    );
    if !store.touch(&id, now() + Duration::days(1)).await.unwrap() {
        return outran("touch finds no session");
    }
    Some((path, id))
}

/// `delete_expired` removes only expired records, not those about to expire; afterwards
/// `count` is exact and a second purge finds nothing.
pub async fn delete_expired_purges_only_expired<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let live = created(&store, json!({})).await;
    let mut doomed = Vec::new();
    for _ in 0..3 {
        let mut record = Record::new(now() + SHORT);
        store.create(&mut record).await.unwrap();
        doomed.push(record);
    }
    let last = doomed.iter().map(Record::expires_at).max().unwrap();
    let mut soon = Record::new(last + Duration::seconds(3));
    store.create(&mut soon).await.unwrap();
    // The last one written expires last; on a loaded machine writing them takes a while.
    wait_past(last).await;
    let removed = store.delete_expired().await.unwrap();
    assert!(removed <= 3, "removed {removed} but only 3 had expired");
    assert!(
        store.get(soon.id()).await.unwrap().is_some(),
        "a session expiring in a few seconds was purged"
    );
    assert!(store.get(live.id()).await.unwrap().is_some());
    assert_eq!(store.count().await.unwrap(), 2, "count after purge");
    assert_eq!(
        store.delete_expired().await.unwrap(),
        0,
        "a second purge finds nothing"
    );
    Ok(())
}

/// An expired record's id is free: `insert` takes it, `rename` moves onto it, and `set`
/// counts versions from the record's own (the expired one's is gone).
pub async fn expired_ids_are_free<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let mut expired = Record::new(now() + SHORT);
    expired.set_version(6);
    store.set(&mut expired).await.unwrap();
    let mut target = Record::new(now() + SHORT);
    store.create(&mut target).await.unwrap();
    let mut taken = Record::new(now() + SHORT);
    store.create(&mut taken).await.unwrap();
    wait_past(
        expired
            .expires_at()
            .max(target.expires_at())
            .max(taken.expires_at()),
    )
    .await;

    let mut reuse = Record::with_id(taken.id().clone(), in_an_hour());
    assert!(
        store.insert(&mut reuse).await.unwrap(),
        "an expired record's id must be free for insert"
    );
    let source = created(&store, json!({"moving": true})).await;
    assert_eq!(
        store.rename(source.id(), target.id()).await.unwrap(),
        Rename::Moved,
        "rename onto an expired record's id"
    );
    let mut again = Record::with_id(expired.id().clone(), in_an_hour());
    store.set(&mut again).await.unwrap();
    assert_eq!(
        again.version(),
        1,
        "set counted from an expired record's version"
    );
    Ok(())
}

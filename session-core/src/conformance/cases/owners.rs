//! Owners: listing, "log out everywhere" (also of busy and moving sessions), the device
//! limit, exact matching, and `HashedIds` over the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use super::{CaseResult, SHORT, as_listed, fresh, in_an_hour, stored, wait_past};
use crate::conformance::{Harness, NotApplicable, Unrun};
use crate::{HashedIds, Record, SessionStore, modify, now};

async fn owned_by(store: &impl SessionStore, owner: &str) -> Record {
    let mut record = Record::new(in_an_hour());
    record.set_owner(Some(owner.to_owned()));
    record.insert("owner_was", owner).unwrap();
    store.create(&mut record).await.unwrap();
    record
}

/// Sessions can be listed and revoked by owner, and only the owner's; the revocation counts
/// exactly the live sessions it removed.
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
    let bobs = owned_by(&store, "bob").await;
    let mut gone = Record::new(now() + SHORT);
    gone.set_owner(Some("alice".into()));
    store.create(&mut gone).await.unwrap();
    store.destroy(mine[2].id()).await.unwrap();
    wait_past(gone.expires_at()).await;

    let mut listed: Vec<_> = store.list_by_owner("alice").await.unwrap();
    listed.sort_by_key(|r| r.get::<u32>("device").unwrap());
    assert_eq!(
        listed,
        mine[..2]
            .iter()
            .map(|r| as_listed(h, r))
            .collect::<Vec<_>>(),
        "listing must hold exactly the live sessions"
    );
    assert!(store.list_by_owner("nobody").await.unwrap().is_empty());

    let revoked = store.destroy_by_owner("alice").await.unwrap();
    assert_eq!(revoked, 2, "revoked {revoked}, expected the 2 live ones");
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
    assert_eq!(store.destroy_by_owner("alice").await.unwrap(), 0);
    Ok(())
}

/// Owners match byte for byte: no prefix, suffix, case, whitespace or Unicode folding, for
/// listing, revocation and the device limit.
pub async fn owners_match_exactly<H: Harness>(h: &H) -> CaseResult {
    let store = fresh(h).await;
    let owners = [
        "4", "42", "14", "4 ", " 4", "A", "a", "user:4", "4:user", "\u{e9}", "e\u{301}", "Ⅳ", "ǅ",
        "*", "4%", "4_",
    ];
    let mut sessions = Vec::new();
    for owner in owners {
        sessions.push(owned_by(&store, owner).await);
    }
    for (owner, session) in owners.iter().zip(&sessions) {
        let listed = store.list_by_owner(owner).await.unwrap();
        assert_eq!(
            listed.iter().map(|r| r.id().clone()).collect::<Vec<_>>(),
            vec![h.listed_id(session.id())],
            "listing owner {owner:?} returned other owners' sessions"
        );
    }
    assert_eq!(store.destroy_by_owner("4").await.unwrap(), 1);
    assert_eq!(store.limit_owner("a", 0).await.unwrap(), 1);
    assert_eq!(store.destroy_by_owner("e\u{301}").await.unwrap(), 1);
    for (owner, session) in owners.iter().zip(&sessions) {
        let ended = ["4", "a", "e\u{301}"].contains(owner);
        assert_eq!(
            store.get(session.id()).await.unwrap().is_none(),
            ended,
            "owner {owner:?}: revoking \"4\", \"a\" and \"e\\u{{301}}\" reached the wrong sessions"
        );
    }
    Ok(())
}

/// "Log out everywhere" ends sessions that concurrent requests keep rewriting: a revocation
/// removes a session whatever its version.
pub async fn destroy_by_owner_ends_busy_sessions<H: Harness>(h: &H) -> CaseResult {
    let store = Arc::new(fresh(h).await);
    let owner = "owner-busy";
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut record = owned_by(&*store, owner).await;
        record.insert("n", 0).unwrap();
        ids.push(record.id().clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id, stop) = (Arc::clone(&store), id.clone(), Arc::clone(&stop));
            let writes = Arc::clone(&writes);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let changed = modify(&*store, &id, 64, |r| {
                        let n = r.get::<u64>("n").ok().flatten().unwrap_or(0);
                        r.insert("n", n + 1).ok();
                    })
                    .await
                    .unwrap();
                    if changed.is_none() {
                        break;
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                    // A store that never waits (memory) would otherwise starve the revocation
                    // on a single-threaded runtime; this yields only once the task has used
                    // its scheduling budget, so the writers stay busy.
                    tokio::task::consume_budget().await;
                }
            })
        })
        .collect();
    // Revoke only once the writers are demonstrably busy (a loaded runtime can leave
    // freshly spawned tasks unpolled for a while).
    let started = std::time::Instant::now();
    while writes.load(Ordering::Relaxed) < 30 {
        assert!(
            started.elapsed() < StdDuration::from_secs(20),
            "the writers made no progress in 20 s"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    let revoked = store.destroy_by_owner(owner).await.unwrap();
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    for id in &ids {
        assert!(
            store.get(id).await.unwrap().is_none(),
            "a session kept busy survived \"log out everywhere\""
        );
    }
    assert_eq!(revoked, 3, "revoked {revoked} of 3 busy sessions");
    Ok(())
}

/// "Log out everywhere" racing `cycle_id`s of the owner's session: whatever id the session
/// moved to, it is gone afterwards (a revocation that listed the old id and missed the new
/// one leaves a live session behind).
pub async fn destroy_by_owner_catches_sessions_being_moved<H: Harness>(h: &H) -> CaseResult {
    if let Err(reason) = h.spans_sessions_atomically() {
        return Err(Unrun::NotApplicable(NotApplicable(reason.into())));
    }
    let store = Arc::new(fresh(h).await);
    for round in 0..12 {
        let owner = format!("owner-moving-{round}");
        let record = owned_by(&*store, &owner).await;
        let mover = {
            let (store, id) = (Arc::clone(&store), record.id().clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut current = id;
                for _ in 0..4 {
                    match store.cycle_id(&current).await.unwrap() {
                        Some(next) => {
                            ids.push(next.clone());
                            current = next;
                        }
                        None => break,
                    }
                }
                ids
            })
        };
        if round % 2 == 1 {
            tokio::task::yield_now().await;
        }
        store.destroy_by_owner(&owner).await.unwrap();
        let moved = mover.await.unwrap();
        assert!(
            store.get(record.id()).await.unwrap().is_none(),
            "round {round}: the original id survived"
        );
        for id in &moved {
            assert!(
                store.get(id).await.unwrap().is_none(),
                "round {round}: a session moved while its owner was logged out everywhere \
                 survived under its new id"
            );
        }
        assert!(store.list_by_owner(&owner).await.unwrap().is_empty());
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
    let other = owned_by(&store, "erin").await;

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

/// `limit_owner(owner, keep)` racing a `cycle_id` of the owner's newest session keeps that
/// session (under one id or the other) and the next newest, and ends the rest: a store
/// whose rename is two steps lists the moving session twice, and must not count the twins
/// as two (whether they fall among the kept or the surplus).
pub async fn owner_limit_racing_cycle_id_keeps_the_newest<H: Harness>(h: &H) -> CaseResult {
    let store = Arc::new(fresh(h).await);
    for round in 0..20_u64 {
        let owner = format!("frank{round}");
        let keep = 1 + (round % 2) as usize;
        // `keep` older sessions (one of them to keep) at distinct, earlier creation times.
        for age in 1..=keep {
            let mut older = Record::new(in_an_hour());
            older.set_owner(Some(owner.clone()));
            older.insert("device", format!("older{age}")).unwrap();
            older.set_created_at(now() - time::Duration::minutes(age as i64));
            store.create(&mut older).await.unwrap();
        }
        let mut newest = Record::new(in_an_hour());
        newest.set_owner(Some(owner.clone()));
        newest.insert("device", "newest").unwrap();
        store.create(&mut newest).await.unwrap();

        let mover = {
            let (store, id) = (Arc::clone(&store), newest.id().clone());
            tokio::spawn(async move { store.cycle_id(&id).await })
        };
        // A head start of 0 to 3 ms: the limit lands before, during or after the move.
        tokio::time::sleep(StdDuration::from_millis(round % 4)).await;
        let ended = store.limit_owner(&owner, keep).await.unwrap();
        let moved = mover.await.unwrap().unwrap();
        let mut left: Vec<String> = store
            .list_by_owner(&owner)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String>("device").unwrap().unwrap_or_default())
            .collect();
        left.sort();
        let wanted: Vec<String> = match keep {
            1 => vec!["newest".into()],
            _ => vec!["newest".into(), "older1".into()],
        };
        assert_eq!(
            left, wanted,
            "round {round}: limit_owner({keep}) ended {ended} while cycle_id of the newest \
             session returned {moved:?}"
        );
    }
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
    assert_eq!(
        stored(&hashed, record.id(), "through HashedIds").await,
        record
    );
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
    assert_eq!(
        listed[0].id(),
        &h.listed_id(&new_id.hashed()),
        "listing shows stored ids"
    );
    assert_eq!(hashed.destroy_by_owner("carol").await.unwrap(), 1);
    assert!(hashed.get(&new_id).await.unwrap().is_none());
    Ok(())
}

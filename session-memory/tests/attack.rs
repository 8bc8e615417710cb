//! Attacks on `MemoryStore`'s striped locks (cb3e5ec): many tasks on a multi-thread runtime
//! racing the calls on one session (one stripe) against the calls spanning sessions (every
//! stripe, and a count that lock-free reads look around), checking what each call answered
//! against what the store must hold afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use session_core::{Record, Rename, SessionId, SessionStore, modify, now};
use session_memory::MemoryStore;
use time::Duration;

/// A live session for `owner`, created in `store`.
async fn session(store: &MemoryStore, owner: &str) -> SessionId {
    let mut record = Record::new(now() + Duration::hours(1));
    record.set_owner(Some(owner.to_owned()));
    record.insert("n", 0u64).unwrap();
    store.create(&mut record).await.unwrap();
    record.id().clone()
}

/// Updates and touches the session under `id`, moving it to a fresh id every few rounds,
/// until a call finds it gone or a round after `stop` is raised; returns every id it had and
/// whether it found the session gone.
async fn keep_busy(
    store: Arc<MemoryStore>,
    mut id: SessionId,
    stop: Arc<AtomicBool>,
) -> (Vec<SessionId>, bool) {
    let mut ids = vec![id.clone()];
    for round in 0.. {
        let last = stop.load(Ordering::Acquire);
        if round % 8 == 7 {
            let to = SessionId::generate();
            match store.rename(&id, &to).await.unwrap() {
                Rename::Moved => {
                    id = to;
                    ids.push(id.clone());
                }
                Rename::SourceMissing => return (ids, true),
                Rename::TargetTaken => unreachable!("a fresh id is free"),
            }
        }
        let bumped = modify(&*store, &id, 1, |r| {
            let n = r.get::<u64>("n").ok().flatten().unwrap_or(0);
            r.insert("n", n + 1).ok();
        })
        .await;
        if matches!(bumped, Ok(None))
            || !store.touch(&id, now() + Duration::hours(2)).await.unwrap()
        {
            return (ids, true);
        }
        if last {
            break;
        }
        if round % 16 == 15 {
            tokio::task::yield_now().await;
        }
    }
    (ids, false)
}

/// "Log out everywhere" racing sessions of that owner being updated, touched and moved
/// (`rename`), and sessions being created for it: every session that existed before the
/// call is gone under every id it ever had, the count is exactly the sessions it ended, and
/// another owner's busy sessions all survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_out_everywhere_ends_sessions_being_moved_and_counts_them() {
    for round in 0..500 {
        let store = Arc::new(MemoryStore::new());
        let stop = Arc::new(AtomicBool::new(false));
        let mut before = Vec::new();
        for _ in 0..64 {
            before.push(session(&store, "u").await);
        }
        let mut others = Vec::new();
        for _ in 0..8 {
            others.push(session(&store, "v").await);
        }
        let busy = |ids: &[SessionId]| -> Vec<_> {
            ids.iter()
                .map(|id| {
                    tokio::spawn(keep_busy(Arc::clone(&store), id.clone(), Arc::clone(&stop)))
                })
                .collect()
        };
        let (busy, other_busy) = (busy(&before), busy(&others));
        let creator = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut created = Vec::new();
                for _ in 0..40 {
                    created.push(session(&store, "u").await);
                    tokio::task::yield_now().await;
                }
                created
            })
        };
        // Lets the busy tasks get going on the other workers first.
        std::thread::sleep(std::time::Duration::from_micros(200 + 100 * (round % 5)));
        let ended = store.destroy_by_owner("u").await.unwrap();
        stop.store(true, Ordering::Release);
        for task in busy {
            let (ids, gone) = task.await.unwrap();
            assert!(
                gone,
                "round {round}: a session of u outlived log out everywhere"
            );
            for id in ids {
                assert!(
                    store.get(&id).await.unwrap().is_none(),
                    "round {round}: a logged-out session is back under {id:?}"
                );
            }
        }
        let mut created_and_ended = 0;
        for id in creator.await.unwrap() {
            if store.get(&id).await.unwrap().is_none() {
                created_and_ended += 1;
            }
        }
        assert_eq!(
            ended,
            (before.len() + created_and_ended) as u64,
            "round {round}: log out everywhere miscounted what it ended"
        );
        for task in other_busy {
            let (ids, gone) = task.await.unwrap();
            assert!(!gone, "round {round}: another owner's session was ended");
            let last = ids.last().unwrap();
            assert!(
                store.get(last).await.unwrap().is_some(),
                "round {round}: v lost a session"
            );
        }
    }
}

/// Compare-and-swap from many tasks at once on a few sessions, with touches and lock-free
/// reads beside them: each version is written by one update only, and the counter each
/// session holds is exactly the number of updates that succeeded on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_swap_never_lets_two_writers_win() {
    let store = Arc::new(MemoryStore::new());
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(session(&store, "u").await);
    }
    let ids = Arc::new(ids);
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (store, ids) = (Arc::clone(&store), Arc::clone(&ids));
            tokio::spawn(async move {
                let mut won = Vec::new();
                for i in 0..400 {
                    let id = &ids[(w + i) % ids.len()];
                    let mut record = store.get(id).await.unwrap().expect("never destroyed");
                    let n = record.get::<u64>("n").unwrap().unwrap();
                    record.insert("n", n + 1).unwrap();
                    if i % 7 == 0 {
                        store.touch(id, now() + Duration::hours(2)).await.unwrap();
                    }
                    if store.update(&mut record).await.is_ok() {
                        won.push((id.clone(), record.version(), n + 1));
                    }
                }
                won
            })
        })
        .collect();
    let mut won = Vec::new();
    for writer in writers {
        won.extend(writer.await.unwrap());
    }
    let mut versions: Vec<_> = won.iter().map(|(id, v, _)| (id.clone(), *v)).collect();
    versions.sort();
    let before = versions.len();
    versions.dedup();
    assert_eq!(versions.len(), before, "two updates won the same version");
    for id in ids.iter() {
        let wins = won.iter().filter(|(won_id, _, _)| won_id == id).count() as u64;
        let stored = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            stored.get::<u64>("n").unwrap(),
            Some(wins),
            "a successful update was lost"
        );
        assert_eq!(stored.version(), wins + 1, "versions skipped or repeated");
    }
}

/// A session moved along a chain of ids while many tasks read its current and next id,
/// next first: once a reader has seen it under an id, it never sees it under an earlier
/// one (a read between `rename`'s insert of the target and its removal of the source, if
/// it took no notice of the count, would).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_never_sees_half_a_rename() {
    const MOVES: usize = 3_000;
    let store = Arc::new(MemoryStore::new());
    let chain: Arc<Vec<SessionId>> = Arc::new((0..=MOVES).map(|_| SessionId::generate()).collect());
    let mut first = Record::with_id(chain[0].clone(), now() + Duration::hours(1));
    assert!(store.insert(&mut first).await.unwrap());
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (store, chain) = (Arc::clone(&store), Arc::clone(&chain));
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < MOVES {
                    // Lets the mover run: a get never waits, so a reader never yields else.
                    tokio::task::yield_now().await;
                    if store.get(&chain[seen + 1]).await.unwrap().is_some() {
                        if store.get(&chain[seen]).await.unwrap().is_some() {
                            return Err(format!(
                                "seen under id {}, then under id {seen}",
                                seen + 1
                            ));
                        }
                        seen += 1;
                        continue;
                    }
                    if store.get(&chain[seen]).await.unwrap().is_none() {
                        // Moved on past the next id: find where it is now.
                        for at in seen + 1..=MOVES {
                            if store.get(&chain[at]).await.unwrap().is_some() {
                                seen = at;
                                break;
                            }
                        }
                        continue;
                    }
                    if seen > 0 && store.get(&chain[seen - 1]).await.unwrap().is_some() {
                        return Err(format!("seen under id {seen}, then under id {}", seen - 1));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let mover = {
        let (store, chain) = (Arc::clone(&store), Arc::clone(&chain));
        tokio::spawn(async move {
            for i in 0..MOVES {
                assert_eq!(
                    store.rename(&chain[i], &chain[i + 1]).await.unwrap(),
                    Rename::Moved
                );
                if i % 4 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    mover.await.unwrap();
    for reader in readers {
        if let Err(seen) = reader.await.unwrap() {
            panic!("a get saw half a rename: {seen}");
        }
    }
}

/// Every call at once on a store too small for its sessions (moka evicts for space, and runs
/// the listener inside the insert of a write holding its stripe) whose sessions expire while
/// they are touched, updated, moved, listed and logged out: the whole run ends (no lock
/// waits on another forever), and once the feed reports a session, nothing brings it back
/// (no call here writes an id that was ever stored before).
#[test]
fn all_calls_at_once_under_eviction_and_expiry_never_hang_nor_revive_a_reported_session() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        done.send(runtime.block_on(churn())).unwrap();
    });
    match finished.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(revived) => assert_eq!(revived, Vec::<String>::new(), "reported sessions came back"),
        Err(_) => panic!("the calls hung: a lock waits on another"),
    }
}

/// See [`all_calls_at_once_under_eviction_and_expiry_never_hang_nor_revive_a_reported_session`]:
/// the reported sessions that a later `get` found.
async fn churn() -> Vec<String> {
    use session_core::{ExpiryFeed, WatchOptions};
    // About 40 sessions of a kilobyte.
    let store = Arc::new(MemoryStore::builder().max_bytes(48 * 1024).build());
    let mut feed = store
        .watch_expired(WatchOptions::default().interval(std::time::Duration::from_millis(10)))
        .await
        .unwrap();
    let revived = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reports = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let checker = {
        let (store, revived, reports) = (
            Arc::clone(&store),
            Arc::clone(&revived),
            Arc::clone(&reports),
        );
        tokio::spawn(async move {
            while let Some(expired) = feed.recv().await {
                reports.fetch_add(1, Ordering::Relaxed);
                if store.get(&expired.id).await.unwrap().is_some() {
                    revived.lock().unwrap().push(format!("{:?}", expired.id));
                }
            }
        })
    };
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let owner = ["a", "b"][w % 2];
                let mut ids: Vec<SessionId> = Vec::new();
                for i in 0..1_500usize {
                    match i % 10 {
                        0..=2 => {
                            // Lives 0 to 20 ms: expires while the others work on it.
                            let mut record =
                                Record::new(now() + Duration::milliseconds((i % 21) as i64));
                            record.set_owner(Some(owner.to_owned()));
                            record.insert("blob", "x".repeat(1_000)).unwrap();
                            store.create(&mut record).await.unwrap();
                            ids.push(record.id().clone());
                        }
                        3 | 4 => {
                            if let Some(id) = ids.last() {
                                let later = now() + Duration::milliseconds((i % 13) as i64);
                                let _ = store.touch(id, later).await.unwrap();
                            }
                        }
                        5 => {
                            if let Some(id) = ids.last() {
                                let _ = modify(&*store, id, 1, |r| {
                                    r.insert("i", i).ok();
                                })
                                .await;
                            }
                        }
                        6 => {
                            if let Some(id) = ids.pop() {
                                let to = SessionId::generate();
                                store.rename(&id, &to).await.unwrap();
                                ids.push(to);
                            }
                        }
                        7 => {
                            let _ = store.list_by_owner(owner).await.unwrap();
                        }
                        8 if i % 100 == 8 => {
                            store.destroy_by_owner(owner).await.unwrap();
                        }
                        _ => {
                            if let Some(id) = ids.first() {
                                let _ = store.get(id).await.unwrap();
                            }
                            tokio::task::yield_now().await;
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    // The last sessions expire and are reported meanwhile (moka's wheel turns each second).
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    checker.abort();
    // Else the run tested nothing: most sessions end by expiry or eviction.
    assert!(
        reports.load(Ordering::Relaxed) > 1_000,
        "the feed reported {reports:?}"
    );
    revived.lock().unwrap().clone()
}

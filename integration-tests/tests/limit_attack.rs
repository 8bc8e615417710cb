//! Attacks on the provided `limit_owner` on every backend: at most `keep` remain when it
//! returns Ok, the newest are kept (also while the newest is being rotated), the count is
//! exact, two concurrent calls end no more than needed, and it keeps to the timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use integration_tests::Skip;
use integration_tests::backends::ALL;
use session_core::{Record, SessionId, SessionStore, now};

/// `count` sessions of `owner` with distinct creation times, each marked with its rank
/// (0 the oldest) in the value "n", which a rename carries along.
async fn sessions(store: &Arc<dyn SessionStore>, owner: &str, count: u32) -> Vec<SessionId> {
    let mut ids = Vec::new();
    for n in 0..count {
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.set_owner(Some(owner.to_owned()));
        record.insert("n", n).unwrap();
        store.create(&mut record).await.unwrap();
        ids.push(record.id().clone());
        // Distinct creation times on every backend's clock precision.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    ids
}

/// The ranks of `owner`'s live sessions, sorted.
async fn ranks(store: &Arc<dyn SessionStore>, owner: &str) -> Vec<u32> {
    let mut ranks: Vec<u32> = store
        .list_by_owner(owner)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<u32>("n").unwrap().unwrap())
        .collect();
    ranks.sort_unstable();
    ranks
}

/// Cycles `id` until `stop`, as a logged-in client's id rotation would.
fn rotate(
    store: &Arc<dyn SessionStore>,
    id: SessionId,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (store, stop) = (Arc::clone(store), Arc::clone(stop));
    tokio::spawn(async move {
        let mut id = id;
        while !stop.load(Ordering::Relaxed) {
            match store.cycle_id(&id).await.unwrap() {
                Some(fresh) => id = fresh,
                None => panic!("the rotated session was ended"),
            }
            // A moment between rotations (an in-process store never makes a call wait, and
            // Redis's owner listing gives up on an index that changes at every attempt).
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

/// Two `limit_owner(2)` racing while the two newest sessions are rotated: exactly the two
/// newest remain, and together the calls report exactly the three they ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_limits_keep_the_rotated_newest_and_count_exactly() {
    for (name, make) in ALL {
        let store = match make().await {
            Ok(store) => store,
            Err(Skip(reason)) => {
                session_core::conformance::skip(&format!("limit_attack on {name}"), &reason);
                continue;
            }
        };
        let start = tokio::time::Instant::now();
        for round in 0..6 {
            let owner = format!("racing-{round}");
            let ids = sessions(&store, &owner, 5).await;
            let stop = Arc::new(AtomicBool::new(false));
            let movers = [
                rotate(&store, ids[4].clone(), &stop),
                rotate(&store, ids[3].clone(), &stop),
            ];
            tokio::time::sleep(Duration::from_millis(2)).await;
            let limit = |store: &Arc<dyn SessionStore>| {
                let (store, owner) = (Arc::clone(store), owner.clone());
                tokio::spawn(async move { store.limit_owner(&owner, 2).await })
            };
            let (one, two) = (limit(&store), limit(&store));
            let (one, two) = (one.await.unwrap(), two.await.unwrap());
            stop.store(true, Ordering::Relaxed);
            for mover in movers {
                mover.await.unwrap();
            }
            let (one, two) = (
                one.unwrap_or_else(|e| panic!("{name} round {round}: {e}")),
                two.unwrap_or_else(|e| panic!("{name} round {round}: {e}")),
            );
            assert_eq!(
                ranks(&store, &owner).await,
                [3, 4],
                "{name} round {round}: not the two newest remain (reported {one} + {two})"
            );
            assert_eq!(
                one + two,
                3,
                "{name} round {round}: reported {one} + {two} ended, not 3"
            );
        }
        eprintln!("{name}: {:?}", start.elapsed());
    }
}

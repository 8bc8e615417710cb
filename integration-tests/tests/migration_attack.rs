//! Attacks on the promises of the migration feature (`MigratingStore` and
//! `session_admin::migrate`) on the real servers: sessions that an expiry, a destroy or a
//! move ended coming back, writes lost while sessions move, and a migration whose
//! verification passes while the target lacks sessions.
//!
//! Sessions start in Redis and move to PostgreSQL (the pair of `migration.rs`), but for the
//! resumed migration, which copies between two PostgreSQL tables (keyset pages of a known
//! size; Redis' SCAN pages over the shared keyspace hold any number of sessions).
//!
//! Each test names the bug it caught (fixed since) or the promise it checks.
//! Run them with `-- --include-ignored`.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use integration_tests::{Backend, server_url};
use session_admin::migrate::{MigrateOptions, migrate};
use session_core::conformance::skip;
use session_core::{
    MigratingStore, Record, ScanCursor, ScanSessions, SessionId, SessionStore, is_tombstone, now,
};
use session_postgres::PostgresStore;
use session_redis::RedisStore;

fn namespace() -> String {
    integration_tests::unique_name("miga")
}

/// Both servers, or the reason to skip.
fn urls() -> Option<(String, String)> {
    match (server_url(Backend::Redis), server_url(Backend::Postgres)) {
        (Ok(redis), Ok(postgres)) => Some((redis, postgres)),
        (Err(reason), _) | (_, Err(reason)) => {
            skip("migration attacks (Redis -> PostgreSQL)", &reason.0);
            None
        }
    }
}

/// A fresh prefix of the Redis server at `url`, in database 7 when the URL names none: the
/// other tests fill database 0 with hundreds of thousands of keys, which a scan (`count`,
/// `migrate`) would walk.
async fn redis(url: &str, ns: &str) -> Arc<RedisStore> {
    let bare = url.trim_end_matches('/');
    let url = match bare.split_once("://") {
        Some((_, rest)) if !rest.contains(['/', '?']) => format!("{bare}/7"),
        _ => url.to_owned(),
    };
    Arc::new(
        RedisStore::builder()
            .url(url)
            .prefix(format!("{ns}:"))
            .connect()
            .await
            .unwrap(),
    )
}

/// The table `ns` of the PostgreSQL server at `url` (created when missing).
async fn postgres(url: &str, ns: &str, connections: u32) -> Arc<PostgresStore> {
    let store = PostgresStore::builder()
        .schema("migration")
        .table(ns)
        .max_connections(connections)
        .connect(url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

type Wrapper = MigratingStore<Arc<RedisStore>, Arc<PostgresStore>>;

/// A fresh pair of stores and the wrapper over them.
async fn pair() -> Option<(Wrapper, Arc<RedisStore>, Arc<PostgresStore>, String)> {
    let (redis_url, postgres_url) = urls()?;
    let ns = namespace();
    let old = redis(&redis_url, &ns).await;
    let new = postgres(&postgres_url, &ns, 8).await;
    Some((
        MigratingStore::new(Arc::clone(&old), Arc::clone(&new)),
        old,
        new,
        ns,
    ))
}

/// `n` sessions in `store`, each live for an hour, owned by `owner`.
async fn seed(store: &dyn SessionStore, n: usize, owner: &str) -> Vec<Record> {
    stream::iter(0..n)
        .map(|i| async move {
            let mut record = Record::new(now() + time::Duration::hours(1));
            record.insert("n", i).unwrap();
            record.insert("secret", "pre-logout data").unwrap();
            record.set_owner(Some(owner.to_owned()));
            store.create(&mut record).await.unwrap();
            record
        })
        .buffered(16)
        .collect()
        .await
}

/// Every record a full scan of `store` returns.
async fn scan_all(store: &dyn ScanSessions) -> Vec<Record> {
    let mut cursor = ScanCursor::start();
    let mut all = Vec::new();
    loop {
        let page = store.scan(&cursor, 1000).await.unwrap();
        all.extend(page.records);
        match page.next {
            Some(next) => cursor = next,
            None => return all,
        }
    }
}

/// A session whose expiry a `touch` through the wrapper shortened (logged out in 30 ms)
/// while `session-admin migrate` was copying it: it was read once through the wrapper
/// (copied to the new store, its old copy left until a write), the migration read its page
/// from the old store just before the touch (which then removed the old copy), and copies
/// it 100 ms later. Its insert-if-free would find the id free (the session ended) and
/// bring the session back, with the hour it had before the touch and its data, if it copied
/// the page's record (it did, within 200 ms of the page's read, until this test).
///
/// The copy is `copy_one`'s, step by step (it is private): the session read again from the
/// source right before its copy (gone: the touch removed the old copy), its version less one,
/// inserted into the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touch_shortened_session_stays_ended_while_migrate_copies_it() {
    let Some((wrapper, old, new, _)) = pair().await else {
        return;
    };
    let sessions = seed(&*old, 3, "alice").await;
    let mut back = Vec::new();
    for session in &sessions {
        let id = session.id();
        // Read once already: copied to the new store, the old copy stays until a write.
        assert!(wrapper.get(id).await.unwrap().is_some());
        // The migration's page read.
        assert!(old.get(id).await.unwrap().is_some());
        assert!(
            wrapper
                .touch(id, now() + time::Duration::milliseconds(30))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        // copy_one: the session read again right before its copy.
        if let Some(mut copy) = old.get(id).await.unwrap() {
            copy.set_version(copy.version() - 1);
            new.insert(&mut copy).await.unwrap();
        }
        if let Some(record) = wrapper.get(id).await.unwrap() {
            back.push(record.expires_at() - now());
        }
    }
    assert!(
        back.is_empty(),
        "{} of {} sessions a touch ended came back through the migration's copy, live for \
         {back:?}",
        back.len(),
        sessions.len(),
    );
}

/// `touch` racing `destroy` through the wrapper, on sessions not moved yet: the touch's
/// claim copies the session to the new store, the destroy writes its tombstone, then the
/// touch's `touch` of the new store lands on the tombstone and shortens it to the touch's
/// expiry (40 ms), so the tombstone stops guarding the id long before `tombstone_ttl`. A
/// copy of the session taken from the old store just before the destroy (a migration's
/// page copied 120 ms after its read, older than `migrate` now copies) then lands: the
/// destroyed session is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_racing_a_touch_stays_destroyed() {
    let Some((wrapper, old, new, _)) = pair().await else {
        return;
    };
    let wrapper = Arc::new(wrapper);
    // Rounds of 200 races until one shows it (one round in three shows none here).
    for round in 1..=5 {
        let (short, back, raced) = destroys_racing_touches(&wrapper, &old, &new, 200).await;
        assert_eq!(
            (short, back),
            (0, 0),
            "(ids left without a tombstone by a racing touch, destroyed sessions back) in \
             round {round}; {raced} of 200 touches saw the session live"
        );
    }
}

/// `n` sessions in the old store, each read by a migration, then touched (to 40 ms from
/// now) and destroyed at once, and the migration's copy landed 120 ms after its read:
/// (destroyed ids without a tombstone, destroyed sessions back, touches that saw the
/// session live).
async fn destroys_racing_touches(
    wrapper: &Arc<Wrapper>,
    old: &Arc<RedisStore>,
    new: &Arc<PostgresStore>,
    n: usize,
) -> (usize, usize, usize) {
    let sessions = seed(&**old, n, "bob").await;
    // Per session: (the touch saw it live, its tombstone was shortened, it came back).
    let outcomes: Vec<(bool, bool, bool)> = stream::iter(&sessions)
        .map(|session| {
            let (wrapper, old, new) = (Arc::clone(wrapper), Arc::clone(old), Arc::clone(new));
            let id = session.id().clone();
            async move {
                // A migration's page read, just before the destroy.
                let page = old.get(&id).await.unwrap().unwrap();
                let read_at = std::time::Instant::now();
                let touch = {
                    let (wrapper, id) = (Arc::clone(&wrapper), id.clone());
                    tokio::spawn(async move {
                        wrapper
                            .touch(&id, now() + time::Duration::milliseconds(40))
                            .await
                            .unwrap()
                    })
                };
                let destroy = {
                    let (wrapper, id) = (Arc::clone(&wrapper), id.clone());
                    tokio::spawn(async move { wrapper.destroy(&id).await.unwrap() })
                };
                let touched = touch.await.unwrap();
                destroy.await.unwrap();
                // A destroy leaves a tombstone for `tombstone_ttl` (60 s).
                let short = !new.get(&id).await.unwrap().is_some_and(|stored| {
                    is_tombstone(&stored)
                        && stored.expires_at() > now() + time::Duration::seconds(30)
                });
                // A copy of the page's record lands 120 ms after the read.
                tokio::time::sleep(Duration::from_millis(120).saturating_sub(read_at.elapsed()))
                    .await;
                let mut copy = page;
                copy.set_version(copy.version() - 1);
                if read_at.elapsed() < Duration::from_millis(190) {
                    new.insert(&mut copy).await.unwrap();
                }
                let back = wrapper.get(&id).await.unwrap().is_some();
                (touched, short, back)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let count = |pick: fn(&(bool, bool, bool)) -> bool| outcomes.iter().filter(|o| pick(o)).count();
    (count(|o| o.1), count(|o| o.2), count(|o| o.0))
}

/// `touch` racing `cycle_id` (a login rotating the session) through the wrapper: the
/// rename copies the record to the fresh id, and a touch acknowledged on the old id in
/// between is lost: the session lives on under the new id with the expiry from before the
/// touch. Either the touch happened before the move (the new id carries its expiry) or
/// after (it finds no session and says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touch_racing_a_rotation_is_never_lost() {
    let Some((wrapper, _, new, _)) = pair().await else {
        return;
    };
    let wrapper = Arc::new(wrapper);
    // Moved sessions (the new store's), five minutes left; the touch extends to two hours.
    let sessions = seed(&*new, 200, "carol").await;
    let extended = now() + time::Duration::hours(2);
    let outcomes: Vec<(SessionId, bool, Option<SessionId>)> = stream::iter(&sessions)
        .map(|session| {
            let wrapper = Arc::clone(&wrapper);
            let id = session.id().clone();
            async move {
                let mut record = wrapper.get(&id).await.unwrap().unwrap();
                record.set_expires_at(now() + time::Duration::minutes(5));
                wrapper.update(&mut record).await.unwrap();
                let touch = {
                    let (wrapper, id) = (Arc::clone(&wrapper), id.clone());
                    tokio::spawn(async move { wrapper.touch(&id, extended).await.unwrap() })
                };
                let cycle = {
                    let (wrapper, id) = (Arc::clone(&wrapper), id.clone());
                    tokio::spawn(async move { wrapper.cycle_id(&id).await.unwrap() })
                };
                (id, touch.await.unwrap(), cycle.await.unwrap())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut lost = 0;
    let mut both = 0;
    for (from, touched, to) in outcomes {
        let to = to.expect("the session was live when rotated");
        assert!(
            wrapper.get(&from).await.unwrap().is_none(),
            "the old id still serves"
        );
        let moved = wrapper.get(&to).await.unwrap().expect("the moved session");
        if touched {
            both += 1;
            if (moved.expires_at() - extended).abs() > time::Duration::seconds(1) {
                if lost == 0 {
                    eprintln!(
                        "lost: expires in {:?}, the touch asked {:?}",
                        moved.expires_at() - now(),
                        extended - now()
                    );
                }
                lost += 1;
            }
        }
    }
    assert_eq!(
        lost, 0,
        "acknowledged touches lost by a concurrent rotation ({both} touches acknowledged)"
    );
}

/// The tombstone's life cycle on the real servers: a destroyed session stays destroyed
/// through every call, its id takes a new session only once the tombstone settled (a second),
/// at version 1 as any new session, and owner-wide calls and `count` neither see the
/// tombstone nor miss sessions in either store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_guards_its_id_and_counts_nowhere() {
    let Some((wrapper, old, new, _)) = pair().await else {
        return;
    };
    // Three in the old store, two of them read once (copied, still in the old store too),
    // two in the new store.
    let in_old = seed(&*old, 3, "dave").await;
    let in_new = seed(&*new, 2, "dave").await;
    for record in &in_old[..2] {
        assert!(wrapper.get(record.id()).await.unwrap().is_some());
    }
    assert_eq!(wrapper.count().await.unwrap(), 5);
    assert_eq!(wrapper.list_by_owner("dave").await.unwrap().len(), 5);

    // Destroy one copied, one not moved, one moved.
    let gone = [&in_old[0], &in_old[2], &in_new[0]];
    for record in gone {
        wrapper.destroy(record.id()).await.unwrap();
    }
    assert_eq!(
        wrapper.count().await.unwrap(),
        2,
        "count after the destroys"
    );
    let listed = wrapper.list_by_owner("dave").await.unwrap();
    assert_eq!(listed.len(), 2, "listed after the destroys");
    assert!(listed.iter().all(|r| !is_tombstone(r)));
    for record in gone {
        let id = record.id();
        assert!(wrapper.get(id).await.unwrap().is_none(), "get");
        let mut stale = record.clone();
        assert!(wrapper.update(&mut stale).await.is_err(), "update");
        assert!(
            !wrapper
                .touch(id, now() + time::Duration::hours(1))
                .await
                .unwrap(),
            "touch"
        );
        assert!(wrapper.cycle_id(id).await.unwrap().is_none(), "cycle_id");
        // What `migrate` does with its copy from before the destroy: kept out.
        let mut copy = record.clone();
        copy.set_version(copy.version() - 1);
        assert!(!new.insert(&mut copy).await.unwrap(), "a stale copy landed");
    }

    // A new session under an id destroyed just now: the call waits for the tombstone to
    // settle.
    let id = in_old[2].id().clone();
    let started = std::time::Instant::now();
    wrapper.destroy(&id).await.unwrap();
    let mut reborn = Record::with_id(id, now() + time::Duration::hours(1));
    reborn.set_owner(Some("dave".into()));
    assert!(wrapper.insert(&mut reborn).await.unwrap());
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "took the id {:?} after its destroy",
        started.elapsed()
    );
    assert_eq!(reborn.version(), 1, "a new session starts at version 1");
    let found = wrapper.get(reborn.id()).await.unwrap().unwrap();
    assert_eq!(found, reborn);
    assert!(found.get::<String>("secret").unwrap().is_none());
    assert_eq!(wrapper.count().await.unwrap(), 3);

    // Revoke: every live session of the owner, counted once, wherever it is.
    assert_eq!(wrapper.destroy_by_owner("dave").await.unwrap(), 3);
    assert_eq!(wrapper.count().await.unwrap(), 0);
    assert!(wrapper.list_by_owner("dave").await.unwrap().is_empty());
    for record in in_old.iter().chain(&in_new) {
        assert!(wrapper.get(record.id()).await.unwrap().is_none());
    }
}

/// A migration killed after two pages and resumed, while the target lost what the first
/// run copied (restored from an earlier backup, or a resumed run pointed at another
/// target): nothing changes between the two runs in the source, no traffic runs, yet the
/// target ends with fewer sessions than the source and the verification passes, because
/// it samples only the pages this run read and does not count the difference against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_migration_is_not_verified_while_sessions_are_missing() {
    let Some((_, postgres_url)) = urls() else {
        return;
    };
    // Both PostgreSQL: keyset pages of ten sessions each (Redis' SCAN pages hold any number).
    let ns = namespace();
    let old = postgres(&postgres_url, &namespace(), 4).await;
    let new = postgres(&postgres_url, &ns, 4).await;
    seed(&*old, 60, "erin").await;
    let checkpoint = std::env::temp_dir().join(format!("{ns}.checkpoint"));
    let options = MigrateOptions {
        batch: 10,
        checkpoint: Some(checkpoint.clone()),
        ..MigrateOptions::default()
    };
    let (pages_tx, mut pages_rx) = tokio::sync::watch::channel(0);
    tokio::select! {
        finished = migrate(&*old, &*new, &options, |r| { pages_tx.send_replace(r.pages); }) => {
            panic!("the migration finished before it was killed: {finished:?}");
        }
        _ = pages_rx.wait_for(|pages| *pages >= 2) => {}
    }
    // The target loses what the first run copied.
    for record in scan_all(&*new).await {
        new.destroy(record.id()).await.unwrap();
    }
    let report = migrate(&*old, &*new, &options, |_| {}).await.unwrap();
    std::fs::remove_file(&checkpoint).ok();
    let verification = report.verification.clone().unwrap();
    let missing = scan_all(&*old).await.len() - scan_all(&*new).await.len();
    assert!(missing > 0, "the scenario lost nothing: {report:?}");
    assert!(
        !verification.passed(),
        "{missing} sessions missing from the target, and the verification passed: {report:?}"
    );
}

/// The verification's `target_count` ("the target's count of live sessions") counts the
/// tombstones a `MigratingStore` left in the target: sessions destroyed through the wrapper
/// during the cut-over count as live ones, so a target short of sessions can show the
/// source's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_does_not_count_tombstones_as_sessions() {
    let Some((wrapper, old, new, _)) = pair().await else {
        return;
    };
    let sessions = seed(&*old, 10, "frank").await;
    for session in &sessions[..4] {
        wrapper.destroy(session.id()).await.unwrap();
    }
    let report = migrate(&*old, &*new, &MigrateOptions::default(), |_| {})
        .await
        .unwrap();
    let verification = report.verification.clone().unwrap();
    assert_eq!(wrapper.count().await.unwrap(), 6);
    assert_eq!(
        (verification.source_count, verification.target_count),
        (6, 6),
        "{report:?}"
    );
}

/// Two processes (two wrappers, each with its own connections to both servers) and a
/// migration: per session not moved yet, one process reads it (copying it over) while the
/// other destroys it and starts a new session under the same id (a second later, once the
/// tombstone settled), the migration copying meanwhile. Only the new session may ever be
/// seen under the id afterwards, and it must be whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_and_a_migration_never_bring_a_destroyed_session_back() {
    let Some((redis_url, postgres_url)) = urls() else {
        return;
    };
    let ns = namespace();
    let (old_a, new_a) = (
        redis(&redis_url, &ns).await,
        postgres(&postgres_url, &ns, 8).await,
    );
    let (old_b, new_b) = (
        redis(&redis_url, &ns).await,
        postgres(&postgres_url, &ns, 8).await,
    );
    let a = Arc::new(MigratingStore::new(Arc::clone(&old_a), Arc::clone(&new_a)));
    let b = Arc::new(MigratingStore::new(old_b, new_b));
    let sessions = seed(&*old_a, 100, "gina").await;
    let options = MigrateOptions {
        batch: 20,
        rate: Some(200),
        verify_sample: 0,
        ..MigrateOptions::default()
    };
    let migration = migrate(&*old_a, &*new_a, &options, |_| {});
    let races = stream::iter(&sessions)
        .map(|session| {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            let id = session.id().clone();
            async move {
                let read = {
                    let (a, id) = (Arc::clone(&a), id.clone());
                    tokio::spawn(async move { a.get(&id).await.unwrap() })
                };
                b.destroy(&id).await.unwrap();
                read.await.unwrap();
                let mut reborn = Record::with_id(id.clone(), now() + time::Duration::hours(1));
                reborn.insert("reborn", true).unwrap();
                if !b.insert(&mut reborn).await.unwrap() {
                    return Some("the id was taken after its destroy".to_owned());
                }
                for store in [&a, &b] {
                    match store.get(&id).await.unwrap() {
                        Some(found) if found == reborn => {}
                        other => {
                            return Some(format!(
                                "found {:?} (secret {:?})",
                                other.as_ref().map(Record::version),
                                other.map(|r| r.get::<String>("secret").unwrap())
                            ));
                        }
                    }
                }
                None
            }
        })
        .buffer_unordered(100)
        .collect::<Vec<Option<String>>>();
    let (migrated, outcomes) = tokio::join!(migration, races);
    migrated.unwrap();
    let failures: Vec<String> = outcomes.into_iter().flatten().collect();
    assert!(failures.is_empty(), "{failures:?}");
    for session in &sessions {
        let found = a.get(session.id()).await.unwrap().unwrap();
        assert_eq!(found.get::<bool>("reborn").unwrap(), Some(true));
    }
}

/// A revocation racing logouts of the same owner's sessions (each a `touch` to a past
/// time, which says whether it ended a live session): every session ends once, so the
/// revocation's count ("how many live sessions it removed") and the logouts that ended one
/// add up to at most the sessions there were. The sessions are in the old store, which
/// the revocation lists first.
///
/// Since 29a9f80 the revocation counts every session the old store listed, whether or not
/// a concurrent call ended it first (88 of 50 here); before, it counted one twice now and
/// then (its `end` and the logout's both read the session live in the new store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_racing_logouts_counts_each_session_once() {
    let Some((wrapper, old, _, _)) = pair().await else {
        return;
    };
    let wrapper = Arc::new(wrapper);
    for round in 1..=3 {
        let sessions = seed(&*old, 50, "hana").await;
        let logouts = stream::iter(&sessions)
            .map(|session| {
                let wrapper = Arc::clone(&wrapper);
                async move {
                    wrapper
                        .touch(session.id(), now() - time::Duration::seconds(1))
                        .await
                        .unwrap()
                }
            })
            .buffer_unordered(50)
            .collect::<Vec<bool>>();
        let (revoked, logouts) = tokio::join!(wrapper.destroy_by_owner("hana"), logouts);
        let revoked = revoked.unwrap();
        let logged_out = logouts.into_iter().filter(|ended| *ended).count() as u64;
        assert!(
            revoked + logged_out <= 50,
            "round {round}: the revocation counted {revoked} and the logouts {logged_out} of \
             50 sessions"
        );
        assert!(wrapper.list_by_owner("hana").await.unwrap().is_empty());
    }
}

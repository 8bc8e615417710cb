//! The promises of [`ScanSessions`], checked on a real store.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use time::Duration;

use super::cases::wait_past;
use crate::record::Record;
use crate::scan::{ScanCursor, ScanSessions};
use crate::time_util::now;

/// Checks a **fresh, empty** store's [`ScanSessions::scan`]: a scan of an empty store ends;
/// with pages of 1, 7 and 1,000 sessions it returns every live session (whole, as `get`
/// returns it, owner and deadline included) and no expired, destroyed or moved-away one;
/// a cursor written down after a page and parsed back continues the scan. Panics naming
/// the broken promise.
///
/// Call it from a test of the store (it is not part of
/// [`conformance_suite!`](crate::conformance_suite), whose harness needs only
/// [`SessionStore`](crate::SessionStore)).
pub async fn check_scan<S: ScanSessions + ?Sized>(store: &S) {
    let (empty, _) = scan_all(store, 10).await;
    assert!(
        empty.is_empty(),
        "a fresh store's scan returned {} sessions",
        empty.len()
    );

    let mut live = HashMap::new();
    for n in 0..23 {
        let mut record = Record::new(now() + Duration::hours(1));
        record.insert("n", n).unwrap();
        record.insert("nested", json!({"cart": [n, "x"]})).unwrap();
        if n % 3 == 0 {
            record.set_owner(Some(format!("scan-owner-{n}")));
        }
        if n % 4 == 0 {
            record.set_deadline(Some(now() + Duration::hours(2)));
        }
        store.create(&mut record).await.unwrap();
        live.insert(record.id().clone(), record);
    }
    let mut ended = HashSet::new();
    let soon = now() + Duration::milliseconds(800);
    for _ in 0..3 {
        let mut record = Record::new(soon);
        store.create(&mut record).await.unwrap();
        ended.insert(record.id().clone());
    }
    for _ in 0..2 {
        let mut record = Record::new(now() + Duration::hours(1));
        store.create(&mut record).await.unwrap();
        store.destroy(record.id()).await.unwrap();
        ended.insert(record.id().clone());
    }
    let mut moving = Record::new(now() + Duration::hours(1));
    store.create(&mut moving).await.unwrap();
    let moved_to = store.cycle_id(moving.id()).await.unwrap().unwrap();
    ended.insert(moving.id().clone());
    moving.set_id(moved_to.clone());
    live.insert(moved_to, moving);
    wait_past(soon).await;

    for limit in [1, 7, 1000] {
        let (found, pages) = scan_all(store, limit).await;
        let ids: HashSet<_> = found.iter().map(|r| r.id().clone()).collect();
        for id in &ended {
            assert!(
                !ids.contains(id),
                "scan (pages of {limit}) returned an expired, destroyed or moved-away session"
            );
        }
        for (id, record) in &live {
            let got = found.iter().find(|r| r.id() == id).unwrap_or_else(|| {
                panic!(
                    "scan (pages of {limit}) missed a live session ({} of {} found)",
                    ids.len(),
                    live.len()
                )
            });
            assert_eq!(
                got, record,
                "scan (pages of {limit}) returned a session unlike the stored one"
            );
        }
        assert_eq!(
            ids.len(),
            live.len(),
            "scan (pages of {limit}) returned sessions nobody stored"
        );
        if limit == 1 {
            assert!(pages > 1, "pages of 1 session came as one page");
        }
    }

    // A saved cursor continues the scan: take one page, print the cursor, parse it back.
    let first = store.scan(&ScanCursor::start(), 5).await.unwrap();
    let mut seen: HashSet<_> = first.records.iter().map(|r| r.id().clone()).collect();
    let mut cursor = first.next;
    while let Some(saved) = cursor {
        let resumed: ScanCursor = saved.to_string().parse().unwrap();
        let page = store.scan(&resumed, 5).await.unwrap();
        seen.extend(page.records.iter().map(|r| r.id().clone()));
        cursor = page.next;
    }
    assert_eq!(
        seen.len(),
        live.len(),
        "a scan continued from saved cursors missed sessions"
    );
}

/// Every record of a full scan in pages of `limit`, and how many pages it took.
async fn scan_all<S: ScanSessions + ?Sized>(store: &S, limit: usize) -> (Vec<Record>, usize) {
    let mut cursor = ScanCursor::start();
    let mut records = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.scan(&cursor, limit).await.unwrap();
        pages += 1;
        assert!(pages < 100_000, "the scan never ends");
        records.extend(page.records);
        match page.next {
            Some(next) => cursor = next,
            None => return (records, pages),
        }
    }
}

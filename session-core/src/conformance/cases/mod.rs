//! The cases; each takes a [`Harness`] and panics with a message when the store misbehaves.
//!
//! They check what the store holds, not what [`Record`] recomputes: a deadline is checked by
//! waiting past it and finding the session gone for every method, not by reading the
//! (re-capped) expiry back.

mod basics;
mod corrupt;
mod data;
mod expiry;
mod moves;
mod owners;
mod races;
mod versions;

pub use basics::*;
pub use corrupt::*;
pub use data::*;
pub use expiry::*;
pub use moves::*;
pub use owners::*;
pub use races::*;
pub use versions::*;

use std::time::Duration as StdDuration;

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::{Case, Harness, Unrun};
use crate::{Data, Record, SessionId, SessionStore, StoreOptions, now};

/// Every case of the suite, with its name, in the order the tests run them.
pub fn all<H: Harness>() -> Vec<Case<H>> {
    crate::__with_conformance_cases!(__conformance_case_list!(H))
}

type CaseResult = Result<(), Unrun>;

/// Expiry windows used by the time-based cases: long enough for a slow CI machine to make
/// the calls before expiry, short enough to keep the suite fast.
const SHORT: Duration = Duration::milliseconds(1500);

async fn fresh<H: Harness>(h: &H) -> H::Store {
    h.store(StoreOptions::default()).await
}

fn in_an_hour() -> OffsetDateTime {
    now() + Duration::hours(1)
}

/// `value` (a JSON object) as session data.
fn data(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => panic!("test data must be an object, not {other}"),
    }
}

/// `record` as [`SessionStore::list_by_owner`] shows it (see [`Harness::listed_id`]).
fn as_listed<H: Harness>(h: &H, record: &Record) -> Record {
    let mut record = record.clone();
    record.set_id(h.listed_id(record.id()));
    record
}

async fn created(store: &impl SessionStore, value: Value) -> Record {
    let mut record = Record::new(in_an_hour());
    record.set_data(data(value));
    store.create(&mut record).await.unwrap();
    record
}

/// How an attempt of a timed case went: its calls fitted in the window they had, or they
/// outran it (the server was slower than the window allows), which proves nothing either way.
enum Window {
    Kept,
    Outran,
}

/// Runs `attempt` again (three attempts in all) while it reports its calls outran their
/// window: under load a slow server (FerretDB on SQLite in CI) can take longer to set a
/// case up than a short expiry allows. Each attempt gets a window twice as long as the one
/// before ([`SHORT`], then 2x, then 4x), so a machine that stays slow still gets a verdict.
/// A store that breaks the promise does so inside the window, where the attempt panics; it
/// is never retried into a pass.
async fn in_time<F, Fut>(case: &str, mut attempt: F) -> CaseResult
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Window>,
{
    let windows = [SHORT, SHORT * 2, SHORT * 4];
    for window in windows {
        if let Window::Kept = attempt(window).await {
            return Ok(());
        }
    }
    panic!(
        "{case}: the store's calls outran the case's time window in three attempts in a row \
         (windows of {windows:?})"
    )
}

/// Sleeps until 150 ms past `at`.
pub(crate) async fn wait_past(at: OffsetDateTime) {
    let left = at - now() + Duration::milliseconds(150);
    if left.is_positive() {
        tokio::time::sleep(StdDuration::from_millis(left.whole_milliseconds() as u64)).await;
    }
}

/// The stored record under `id`, which must be there.
async fn stored(store: &impl SessionStore, id: &SessionId, what: &str) -> Record {
    match store.get(id).await {
        Ok(Some(record)) => record,
        Ok(None) => panic!("{what}: the session is missing"),
        Err(err) => panic!("{what}: reading it failed: {err}"),
    }
}

/// Checks the session under `id` is gone for every method that judges liveness in storage:
/// `get` finds nothing, `touch` reports nothing, the id is free for `insert`, and `count`
/// is `expected_count`. (A store that kept the record live past its end shows it to one of
/// these, though `Record` would cap the expiry it reports.)
async fn gone_everywhere(store: &impl SessionStore, id: &SessionId, what: &str) {
    assert!(
        store.get(id).await.unwrap().is_none(),
        "{what}: get still returns the session"
    );
    assert!(
        !store.touch(id, in_an_hour()).await.unwrap(),
        "{what}: touch found the session live"
    );
    let mut reuse = Record::with_id(id.clone(), in_an_hour());
    assert!(
        store.insert(&mut reuse).await.unwrap(),
        "{what}: the id is not free for insert"
    );
    store.destroy(id).await.unwrap();
}

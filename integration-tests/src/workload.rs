//! A concurrent workload that proves a store loses nothing while its server misbehaves:
//! the fault tests (toxiproxy) and the soak run (real server restarts) both drive it.
//!
//! Workers, all on one store, until the caller's schedule of faults ends:
//! - *updaters* increment shared counters with `update` (compare-and-swap) and retry;
//! - *churners* create sessions, read acknowledged ones back, and destroy old ones.
//!
//! A call whose reply is lost (a timeout, a reset connection) is ambiguous: the write may
//! or may not have happened. Updaters resolve it the way an application with idempotency
//! keys would: each increment also records, per worker, the sequence number of that
//! worker's latest increment; a retry first reads the session, and if its increment is
//! already there it counts as acknowledged instead of being applied twice. Compare-and-swap
//! makes a late copy of an earlier attempt fail rather than apply on top.
//!
//! Afterwards, with the server healthy again, [`Report`] says what was lost: every
//! acknowledged session must read back with its exact data, every acknowledged destroy
//! must stay destroyed, and each counter must equal its acknowledged increments.

use crate::in_an_hour;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use session_core::{Error, Record, SessionId, SessionStore};

use crate::history::{self, History, Verdict};
use crate::linearizable::{self, Partitions};

/// The per-call timeout the fault tests and the soak run give their stores: short, so a
/// fault shows up as timed-out calls within a run of a few seconds.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// How much work, and how long calls may take.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Workers incrementing counters with `update`.
    pub updaters: usize,
    /// Counter sessions the updaters share (worker `i` increments counter `i % counters`).
    pub counters: usize,
    /// Workers creating, reading and destroying sessions.
    pub churners: usize,
    /// Slack over the store's own timeout ([`SessionStore::timeout`]) before a call counts
    /// as overrunning it (scheduling on a busy 2-core machine).
    pub margin: Duration,
    /// How long after the schedule ends an unresolved operation may keep retrying.
    pub recovery: Duration,
    /// Workers whose calls are recorded for the linearizability checker (`None`: none).
    pub recorded: Option<Partitions>,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            updaters: 6,
            counters: 2,
            churners: 2,
            margin: Duration::from_secs(1),
            recovery: Duration::from_secs(30),
            recorded: Some(Partitions::default()),
        }
    }
}

/// What a run did and what it lost.
#[derive(Debug, Default)]
pub struct Report {
    /// Store calls made.
    pub ops: u64,
    /// Failed calls by kind (`timeout`, `backend`, …); conflicts are not errors.
    pub errors: BTreeMap<&'static str, u64>,
    /// `update`s that lost a compare-and-swap race and were retried.
    pub conflicts: u64,
    /// Increments acknowledged (directly, or found applied after an ambiguous reply).
    pub acked_updates: u64,
    /// Sessions whose `create` was acknowledged.
    pub acked_creates: u64,
    /// Sessions whose `destroy` was acknowledged.
    pub acked_destroys: u64,
    /// Acknowledged writes missing or changed afterwards: must be empty.
    pub lost: Vec<String>,
    /// Calls that took longer than the store's timeout plus the margin: must be empty.
    pub overran: Vec<String>,
    /// Errors that should have been retryable but were not: must be empty.
    pub fatal: Vec<String>,
    /// Operations still unresolved when the recovery time ran out: must be 0.
    pub unresolved: u64,
    /// The recorded workers' history, for [`Report::check_linearizability`].
    pub history: Option<Arc<History>>,
    /// Failed calls by message (digits collapsed to `#`, cut at 200 characters), so a
    /// failure says what the errors were, not only their kind.
    pub error_messages: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
    /// Calls per [`TIMELINE_SLOT`] since the workers started: (succeeded, failed). Shows
    /// when a store stalled and when it came back.
    timeline: Vec<(u32, u32)>,
}

/// The width of one slot of a report's timeline.
const TIMELINE_SLOT: Duration = Duration::from_millis(500);

impl Report {
    /// The 99th percentile of call latency.
    pub fn p99(&self) -> Duration {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let at = (sorted.len() * 99 / 100).min(sorted.len().saturating_sub(1));
        Duration::from_micros(sorted.get(at).copied().unwrap_or(0))
    }

    /// Whether nothing was lost, nothing overran, nothing was left unresolved.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.overran.is_empty()
            && self.fatal.is_empty()
            && self.unresolved == 0
    }

    /// Writes the recorded history to `<history dir>/<name>.json` and has the checker judge
    /// it (see [`crate::history`]).
    pub fn check_linearizability(&self, name: &str, scenario: &str) -> Result<Verdict, String> {
        let history = self
            .history
            .as_ref()
            .ok_or("this run recorded no history (Workload::recorded is None)")?;
        let file = history::history_dir().join(format!("{name}.json"));
        history
            .write(&file, name, scenario)
            .map_err(|err| format!("writing {}: {err}", file.display()))?;
        history::check(&file).map_err(|err| format!("{}: {err}", file.display()))
    }

    /// Asserts what every workload test asserts: a clean run ([`Self::is_clean`]) and a
    /// linearizable history (`name`/`scenario` name its file; a missing checker is a loud
    /// skip). Returns how many operations the checker found of unknown outcome.
    pub fn assert_clean_and_linearizable(&self, test: &str, name: &str, scenario: &str) -> u64 {
        assert!(self.is_clean(), "{test}:\n{}\n{self}", self.problems());
        match self.check_linearizability(name, scenario) {
            Ok(verdict) => {
                eprintln!("{test}: linearizability: {verdict:?}");
                assert!(
                    verdict.anomalies == 0 && verdict.timed_out == 0 && verdict.ops > 0,
                    "{test}: the history is not linearizable: {verdict:?} (see target/histories)"
                );
                verdict.unknown
            }
            Err(reason) => {
                session_core::conformance::skip(
                    &format!("the linearizability check of {test}"),
                    &reason,
                );
                0
            }
        }
    }

    /// What the calls met, for a failure message: the most frequent error messages, and
    /// the calls that succeeded/failed in each half second since the workers started.
    pub fn diagnosis(&self) -> String {
        let mut messages: Vec<(&String, &u64)> = self.error_messages.iter().collect();
        messages.sort_by(|a, b| b.1.cmp(a.1));
        let mut text = String::from("errors by message:");
        for (message, n) in messages.iter().take(8) {
            text.push_str(&format!("\n  {n} x {message}"));
        }
        let slots: Vec<String> = self
            .timeline
            .iter()
            .map(|(ok, failed)| format!("{ok}/{failed}"))
            .collect();
        text.push_str(&format!(
            "\ncalls per {TIMELINE_SLOT:?} (succeeded/failed): {}",
            slots.join(" ")
        ));
        text
    }

    /// Every problem, one per line, for an assertion message.
    pub fn problems(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        lines.extend(self.lost.iter().map(|l| format!("lost: {l}")));
        lines.extend(self.overran.iter().map(|l| format!("overran: {l}")));
        lines.extend(self.fatal.iter().map(|l| format!("not retryable: {l}")));
        if self.unresolved > 0 {
            lines.push(format!(
                "{} operations unresolved after recovery",
                self.unresolved
            ));
        }
        lines.join("\n")
    }
}

impl fmt::Display for Report {
    /// One line: operations, errors by kind, lost acknowledged writes, p99.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        write!(
            f,
            "ops={} errors={{{}}} conflicts={} acked(updates={} creates={} destroys={}) \
             lost_acked_writes={} overran={} unresolved={} p99={:.1}ms",
            self.ops,
            errors.join(" "),
            self.conflicts,
            self.acked_updates,
            self.acked_creates,
            self.acked_destroys,
            self.lost.len(),
            self.overran.len(),
            self.unresolved,
            self.p99().as_secs_f64() * 1e3
        )
    }
}

/// Watches a running workload from the fault schedule.
#[derive(Debug, Clone)]
pub struct Progress {
    successes: Arc<AtomicU64>,
    report: Arc<Mutex<Report>>,
}

impl Progress {
    /// [`Report::diagnosis`] of the calls so far, for a failure in the middle of a run.
    pub fn diagnosis(&self) -> String {
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .diagnosis()
    }

    /// Waits until `n` more calls than now have succeeded; how long that took, or `None`
    /// after `within`.
    pub async fn resumed(&self, n: u64, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        let target = self.successes.load(Ordering::Relaxed) + n;
        while self.successes.load(Ordering::Relaxed) < target {
            if start.elapsed() > within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(start.elapsed())
    }
}

/// Shared state of one run.
struct Run {
    store: Arc<dyn SessionStore>,
    workload: Workload,
    stop: AtomicBool,
    /// Set when the schedule ends: retries give up after it.
    give_up_at: OnceLock<Instant>,
    successes: Arc<AtomicU64>,
    report: Arc<Mutex<Report>>,
    /// When the workers started, for the report's timeline.
    started: Instant,
}

/// The outcome of an operation retried until it resolves.
enum Resolved<T> {
    Done(T),
    GaveUp,
}

impl Workload {
    /// A handle to watch progress, and the run itself: call [`Runner::run`].
    pub fn start(&self, store: Arc<dyn SessionStore>) -> Runner {
        let successes = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(Report::default()));
        Runner {
            run: Arc::new(Run {
                store,
                workload: self.clone(),
                stop: AtomicBool::new(false),
                give_up_at: OnceLock::new(),
                successes: successes.clone(),
                report: report.clone(),
                started: Instant::now(),
            }),
            progress: Progress { successes, report },
        }
    }
}

/// A workload ready to run; see [`Workload::start`].
pub struct Runner {
    run: Arc<Run>,
    progress: Progress,
}

impl Runner {
    /// Watches this run's progress.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Runs the workers until `schedule` ends, lets unresolved operations finish, then
    /// checks every acknowledged write. Panics if the counters can't even be created
    /// (the server must be healthy when a run starts).
    pub async fn run(self, schedule: impl Future<Output = ()>) -> Report {
        let run = self.run;
        let mut counters = Vec::new();
        for i in 0..run.workload.counters {
            let mut record = Record::new(in_an_hour());
            record.set_owner(Some(COUNTER_OWNER.into()));
            record.insert("counter", 0u64).unwrap();
            record.insert("last", json!({})).unwrap();
            run.store
                .create(&mut record)
                .await
                .unwrap_or_else(|err| panic!("creating counter {i} before any fault: {err}"));
            counters.push(record.id().clone());
        }
        let mut updaters = Vec::new();
        for worker in 0..run.workload.updaters {
            let counter = counters[worker % counters.len()].clone();
            updaters.push(tokio::spawn(run.clone().updater(worker, counter)));
        }
        let churners: Vec<_> = (0..run.workload.churners)
            .map(|worker| tokio::spawn(run.clone().churner(worker)))
            .collect();
        let recording = Arc::new(AtomicBool::new(false));
        let history = Arc::new(History::default());
        let recorded = run.workload.recorded.map(|partitions| {
            tokio::spawn(linearizable::run(
                run.store.clone(),
                history.clone(),
                partitions,
                recording.clone(),
            ))
        });

        schedule.await;
        run.stop.store(true, Ordering::Relaxed);
        recording.store(true, Ordering::Relaxed);
        let _ = run.give_up_at.set(Instant::now() + run.workload.recovery);

        let mut acked: Vec<HashMap<SessionId, u64>> = Vec::new();
        for task in updaters {
            acked.push(task.await.expect("an updater panicked"));
        }
        let mut live = Vec::new();
        let mut destroyed = Vec::new();
        for task in churners {
            let (l, d) = task.await.expect("a churner panicked");
            live.extend(l);
            destroyed.extend(d);
        }
        if let Some(recorded) = recorded {
            recorded.await.expect("a recorded worker panicked");
            run.report().history = Some(history);
        }
        run.verify(&counters, &acked, &live, &destroyed).await;
        std::mem::take(&mut *run.report())
    }
}

/// Owners of the workload's sessions, so a test can find them through the store.
const COUNTER_OWNER: &str = "workload-counter";
const CHURN_OWNER: &str = "workload-churn";

/// `err`'s message with its digits collapsed (ports, counts, durations), so that errors of
/// one cause count together.
fn message(err: &Error) -> String {
    let mut text = String::new();
    for c in err.to_string().chars() {
        if !c.is_ascii_digit() {
            text.push(c);
        } else if !text.ends_with('#') {
            text.push('#');
        }
        if text.len() >= 200 {
            break;
        }
    }
    text
}

fn kind(err: &Error) -> &'static str {
    match err {
        Error::Timeout { .. } => "timeout",
        Error::Backend { .. } => "backend",
        Error::Decode { .. } => "decode",
        Error::Encode { .. } => "encode",
        Error::Conflict { .. } => "conflict",
        _ => "other",
    }
}

impl Run {
    fn report(&self) -> std::sync::MutexGuard<'_, Report> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One store call, timed and classified. A call that outlives the timeout plus the
    /// margin is cut off here (and reported), so a hang can't stall the run.
    async fn call<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let limit = self.store.timeout() + self.workload.margin;
        let started = Instant::now();
        let outcome = tokio::time::timeout(limit * 3, call).await;
        let took = started.elapsed();
        let mut report = self.report();
        report.ops += 1;
        report.latencies_us.push(took.as_micros() as u64);
        if took > limit {
            report
                .overran
                .push(format!("{what} took {took:?} (limit {limit:?})"));
        }
        let result = outcome.unwrap_or_else(|_| {
            Err(Error::Timeout {
                backend: "workload",
                operation: what,
                after: limit * 3,
            })
        });
        let slot = (self.started.elapsed().as_millis() / TIMELINE_SLOT.as_millis()) as usize;
        if report.timeline.len() <= slot {
            report.timeline.resize(slot + 1, (0, 0));
        }
        match &result {
            Ok(_) => {
                self.successes.fetch_add(1, Ordering::Relaxed);
                report.timeline[slot].0 += 1;
            }
            Err(err) if err.is_conflict() => report.conflicts += 1,
            Err(err) => {
                report.timeline[slot].1 += 1;
                *report.errors.entry(kind(err)).or_default() += 1;
                *report.error_messages.entry(message(err)).or_default() += 1;
                if !err.is_retryable() {
                    report.fatal.push(format!("{what}: {err}"));
                }
            }
        }
        result
    }

    /// Retries `attempt` until it returns `Some`, or gives up once the run has stopped and
    /// the recovery time is over.
    async fn resolve<T, F, Fut>(&self, mut attempt: F) -> Resolved<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        loop {
            if let Some(done) = attempt().await {
                return Resolved::Done(done);
            }
            if self.give_up_at.get().is_some_and(|at| Instant::now() > *at) {
                self.report().unresolved += 1;
                return Resolved::GaveUp;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Increments `counter` until stopped; returns how many increments were acknowledged.
    async fn updater(
        self: Arc<Self>,
        worker: usize,
        counter: SessionId,
    ) -> HashMap<SessionId, u64> {
        let mut acked = 0u64;
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            seq += 1;
            match self.resolve(|| self.increment(worker, seq, &counter)).await {
                Resolved::Done(true) => acked += 1,
                Resolved::Done(false) => break, // the counter is gone: reported as lost
                Resolved::GaveUp => break,
            }
            // A store that never waits (in memory) would otherwise starve the schedule.
            tokio::task::yield_now().await;
        }
        HashMap::from([(counter, acked)])
    }

    /// One attempt at increment `seq` of `worker`: `Some(true)` once it is applied (now or
    /// by an earlier attempt whose reply was lost), `None` to retry.
    async fn increment(&self, worker: usize, seq: u64, id: &SessionId) -> Option<bool> {
        let mut record = match self.call("get", self.store.get(id)).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.report().lost.push(format!("counter {id:?} vanished"));
                return Some(false);
            }
            Err(_) => return None,
        };
        let key = worker.to_string();
        let mut last: HashMap<String, u64> = record.get("last").ok()??;
        if last.get(&key).copied().unwrap_or(0) >= seq {
            return Some(true);
        }
        let counter: u64 = record.get("counter").ok()??;
        last.insert(key, seq);
        record.insert("counter", counter + 1).ok()?;
        record.insert("last", &last).ok()?;
        self.call("update", self.store.update(&mut record))
            .await
            .ok()
            .map(|()| true)
    }

    /// Creates, reads back and destroys sessions until stopped; returns the acknowledged
    /// live sessions with their data, and the acknowledged destroyed ones.
    async fn churner(self: Arc<Self>, worker: usize) -> (Vec<(SessionId, Value)>, Vec<SessionId>) {
        let mut live: Vec<(SessionId, Value)> = Vec::new();
        let mut destroyed = Vec::new();
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            seq += 1;
            let payload = json!({"worker": worker, "seq": seq, "cart": [seq, "x".repeat(64)]});
            let mut record = Record::new(in_an_hour());
            record.set_owner(Some(CHURN_OWNER.into()));
            record.insert("payload", &payload).unwrap();
            if self
                .call("create", self.store.create(&mut record))
                .await
                .is_ok()
            {
                self.report().acked_creates += 1;
                live.push((record.id().clone(), payload));
            }
            if let Some((id, payload)) = live.get(seq as usize % live.len().max(1))
                && let Ok(found) = self.call("get", self.store.get(id)).await
            {
                self.check(id, payload, found);
            }
            if live.len() > 8 && seq.is_multiple_of(3) {
                let (id, _) = live.remove(0);
                let store = &self.store;
                let outcome = self
                    .resolve(|| async { self.call("destroy", store.destroy(&id)).await.ok() })
                    .await;
                match outcome {
                    Resolved::Done(()) => {
                        self.report().acked_destroys += 1;
                        destroyed.push(id);
                    }
                    Resolved::GaveUp => break,
                }
            }
            tokio::task::yield_now().await;
        }
        (live, destroyed)
    }

    fn check(&self, id: &SessionId, payload: &Value, found: Option<Record>) {
        let problem = match found {
            None => format!("acknowledged session {id:?} is missing"),
            Some(record) => match record.get::<Value>("payload") {
                Ok(Some(stored)) if stored == *payload => return,
                other => format!("acknowledged session {id:?} changed: {other:?}"),
            },
        };
        self.report().lost.push(problem);
    }

    /// With the server healthy again: every acknowledged write is there, exactly.
    async fn verify(
        &self,
        counters: &[SessionId],
        acked: &[HashMap<SessionId, u64>],
        live: &[(SessionId, Value)],
        destroyed: &[SessionId],
    ) {
        let read = |id: SessionId| async move {
            let store = &self.store;
            match self
                .resolve(|| async { self.call("verify", store.get(&id)).await.ok() })
                .await
            {
                Resolved::Done(found) => Some(found),
                Resolved::GaveUp => None,
            }
        };
        for (id, payload) in live {
            if let Some(found) = read(id.clone()).await {
                self.check(id, payload, found);
            }
        }
        for id in destroyed {
            if let Some(Some(_)) = read(id.clone()).await {
                self.report()
                    .lost
                    .push(format!("destroyed session {id:?} came back"));
            }
        }
        let mut total = 0;
        for id in counters {
            let expected: u64 = acked.iter().filter_map(|a| a.get(id)).sum();
            total += expected;
            let Some(found) = read(id.clone()).await else {
                continue;
            };
            let value = found.and_then(|r| r.get::<u64>("counter").ok().flatten());
            if value != Some(expected) {
                self.report().lost.push(format!(
                    "counter {id:?} is {value:?} after {expected} acknowledged increments"
                ));
            }
        }
        self.report().acked_updates = total;
    }
}

#[cfg(test)]
mod tests {
    use session_memory::MemoryStore;

    use super::*;

    async fn run_for(store: Arc<dyn SessionStore>, tamper: bool) -> Report {
        let runner = Workload::default().start(store.clone());
        runner
            .run(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if tamper {
                    tamper_with(&*store).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            })
            .await
    }

    /// What a lossy store would do: one acknowledged session vanishes, one counter goes
    /// back by one (by a plain `set`, so no acknowledged increment accounts for it).
    async fn tamper_with(store: &dyn SessionStore) {
        // The newest: churners destroy the oldest first, and must not get to it.
        let churned = store.list_by_owner(CHURN_OWNER).await.unwrap();
        let newest = churned.iter().max_by_key(|r| r.created_at()).unwrap();
        store.destroy(newest.id()).await.unwrap();
        let mut counter = store.list_by_owner(COUNTER_OWNER).await.unwrap().remove(0);
        let value: u64 = counter.get("counter").unwrap().unwrap();
        counter.insert("counter", value - 1).unwrap();
        store.set(&mut counter).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_healthy_store_is_clean() {
        let report = run_for(Arc::new(MemoryStore::new()), false).await;
        assert!(report.is_clean(), "{}", report.problems());
        assert!(
            report.acked_updates > 0 && report.acked_creates > 0,
            "{report}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_acknowledged_writes_are_reported() {
        let report = run_for(Arc::new(MemoryStore::new()), true).await;
        assert!(!report.is_clean(), "{report}");
        assert!(
            report
                .lost
                .iter()
                .any(|l| l.contains("acknowledged increments")),
            "a lost increment went unnoticed:\n{}",
            report.problems()
        );
        assert!(
            report.lost.iter().any(|l| l.contains("is missing")),
            "a lost session went unnoticed:\n{}",
            report.problems()
        );
    }
}

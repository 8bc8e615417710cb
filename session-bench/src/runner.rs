//! Runs the phases against one target: concurrent workers, each with its own random stream
//! and latency tally, merged into one row per phase.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration as StdDuration, Instant};

use anyhow::Result;
use async_trait::async_trait;
use session_core::Expiry;
use time::Duration;

use crate::server::{CommandTotals, ServerMeter};
use crate::stats::{Row, Tally};
use crate::stored::StoredBytes;
use crate::target::{Info, Target};
use crate::workload::{Change, Phase, Rng, payload};

/// The expiry of the sessions `create` stores.
pub(crate) const CREATE_TTL: Duration = Duration::hours(1);
/// The idle window of the `touch` phase's policy (and of the sessions it reads).
const TOUCH_IDLE: Duration = Duration::minutes(30);
/// The most sessions the `touch` phase creates for itself.
const TOUCH_SESSIONS: usize = 1_000;

/// The `touch` phase's policy: a 30-minute idle window, touched once half of it is gone.
pub fn touch_expiry() -> Expiry {
    Expiry::idle(TOUCH_IDLE).lazy_touch(0.5)
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sessions created (and then read and written at random).
    pub sessions: usize,
    /// How long each timed phase runs.
    pub duration: StdDuration,
    /// The concurrency levels of `rmw`; the others run at the highest.
    pub levels: Vec<usize>,
    /// Which phases run (`create` always runs: the others need its sessions).
    pub phases: BTreeSet<Phase>,
}

impl Plan {
    /// The highest concurrency level.
    pub fn top(&self) -> usize {
        self.levels.iter().copied().max().unwrap_or(1)
    }
}

/// A target, type-erased, ready to run.
#[async_trait]
pub trait Job: Send {
    /// The target's info.
    fn info(&self) -> Info;
    /// Runs the plan, cleans up, and returns one row per phase and concurrency; with the
    /// `probes`' meter, each timed phase's row carries what it cost the server, and with
    /// their stored-bytes reader, the create row the storage per session.
    async fn run(self: Box<Self>, plan: &Plan, probes: &Probes) -> Vec<Row>;
}

/// Boxes `target` as a [`Job`] that deletes its sessions one by one when done.
pub fn job<T: Target>(target: T) -> Box<dyn Job> {
    Box::new(Bench {
        target: Arc::new(target),
        cleanup: true,
    })
}

/// Boxes `target` as a [`Job`] that leaves its sessions for the backend's teardown to
/// drop at once (where deleting them one by one would take longer than the benchmark).
pub fn job_dropped_at_teardown<T: Target>(target: T) -> Box<dyn Job> {
    Box::new(Bench {
        target: Arc::new(target),
        cleanup: false,
    })
}

struct Bench<T> {
    target: Arc<T>,
    /// Whether to delete the sessions when done.
    cleanup: bool,
}

#[async_trait]
impl<T: Target> Job for Bench<T> {
    fn info(&self) -> Info {
        self.target.info()
    }

    async fn run(self: Box<Self>, plan: &Plan, probes: &Probes) -> Vec<Row> {
        let info = self.target.info();
        let top = plan.top();
        let mut rows = Vec::new();
        let mut emit = |mut row: Row| {
            row.sessions = plan.sessions;
            progress(&row);
            rows.push(row);
        };
        let held_before = stored_now(probes).await;
        let started = Instant::now();
        let (ids, tally) = create(&self.target, plan.sessions, top, CREATE_TTL).await;
        let mut row = Row::new(&info, Phase::Create, top, &tally, started.elapsed());
        if let (Some(before), Some(after)) = (held_before, stored_now(probes).await) {
            row.bytes_per_session =
                (!ids.is_empty()).then(|| after.saturating_sub(before) as f64 / ids.len() as f64);
        }
        emit(row);
        let ids = Arc::new(ids);
        if ids.is_empty() {
            return rows;
        }
        let mut timed_phases = Vec::new();
        if plan.phases.contains(&Phase::Rmw) {
            timed_phases.extend(plan.levels.iter().map(|&level| (Phase::Rmw, level)));
        }
        if info.cas_and_touch && plan.phases.contains(&Phase::RmwCas) {
            timed_phases.push((Phase::RmwCas, top));
        }
        if plan.phases.contains(&Phase::Get) {
            timed_phases.push((Phase::Get, top));
        }
        for (phase, level) in timed_phases {
            let before = metered(probes).await;
            let started = Instant::now();
            let tally = timed(&self.target, &ids, phase, level, plan.duration).await;
            let mut row = Row::new(&info, phase, level, &tally, started.elapsed());
            if let (Some(before), Some(after)) = (before, metered(probes).await) {
                row.set_server_cost(before.cost_until(after, tally.ops()));
            }
            emit(row);
        }
        if info.cas_and_touch && plan.phases.contains(&Phase::Touch) {
            let count = plan.sessions.min(TOUCH_SESSIONS);
            let (touch_ids, _) = create(&self.target, count, top, TOUCH_IDLE).await;
            let touch_ids = Arc::new(touch_ids);
            let started = Instant::now();
            let tally = timed(&self.target, &touch_ids, Phase::Touch, top, plan.duration).await;
            emit(Row::new(
                &info,
                Phase::Touch,
                top,
                &tally,
                started.elapsed(),
            ));
            if self.cleanup {
                delete_all(&self.target, &touch_ids, top).await;
            }
        }
        if self.cleanup {
            delete_all(&self.target, &ids, top).await;
        }
        rows
    }
}

/// What the runner reads from the backend around its phases.
#[derive(Default)]
pub struct Probes {
    /// The Redis server's CPU and commands (`INFO`).
    pub meter: Option<ServerMeter>,
    /// The bytes the backend holds.
    pub stored: Option<StoredBytes>,
}

/// The server's command totals, when there is a meter and it answers.
async fn metered(probes: &Probes) -> Option<CommandTotals> {
    logged("server meter", probes.meter.as_ref()?.totals().await)
}

/// The bytes the backend holds now, when there is a reader and it answers.
async fn stored_now(probes: &Probes) -> Option<u64> {
    logged("stored bytes", probes.stored.as_ref()?.now().await)
}

/// A probe's reading; a failed one leaves its figure out of the row, and says why.
fn logged<T>(what: &str, reading: Result<T>) -> Option<T> {
    reading.map_err(|err| eprintln!("    {what}: {err:#}")).ok()
}

pub(crate) fn progress(row: &Row) {
    eprintln!(
        "  {:<40} {:<7} @{:<3} {:>10.0} ops/s  p50 {:>8.1} µs  p99 {:>9.1} µs  errors {}",
        row.store, row.phase, row.concurrency, row.ops_per_s, row.p50_us, row.p99_us, row.errors
    );
}

/// Runs `count` workers (given their index) on the runtime and waits for all.
async fn spawn_workers<F, Fut>(count: usize, worker: F) -> Vec<Fut::Output>
where
    F: Fn(usize) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let handles: Vec<_> = (0..count).map(|n| tokio::spawn(worker(n))).collect();
    let mut outputs = Vec::with_capacity(count);
    for handle in handles {
        outputs.push(handle.await.expect("a benchmark worker panicked"));
    }
    outputs
}

fn merged(tallies: impl IntoIterator<Item = Tally>) -> Tally {
    tallies.into_iter().fold(Tally::new(), |mut all, one| {
        all.merge(&one);
        all
    })
}

fn report_first_error(tally: &Tally, what: &str) {
    if let Some(err) = &tally.first_error {
        eprintln!("    {what}: {} errors, first: {err}", tally.errors);
    }
}

/// Creates `count` sessions with `concurrency` workers; returns their ids and the tally.
pub(crate) async fn create<T: Target>(
    target: &Arc<T>,
    count: usize,
    concurrency: usize,
    ttl: Duration,
) -> (Vec<T::Id>, Tally) {
    let next = Arc::new(AtomicUsize::new(0));
    let outputs = spawn_workers(concurrency, |worker| {
        let (target, next) = (target.clone(), next.clone());
        async move {
            let mut rng = Rng::new(worker as u64 + 1);
            let (mut ids, mut tally) = (Vec::new(), Tally::new());
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                let data = payload(n as u64, &mut rng);
                let started = Instant::now();
                let outcome = target.create(data, ttl).await;
                tally.record(&outcome, started.elapsed());
                ids.extend(outcome.ok());
            }
            (ids, tally)
        }
    })
    .await;
    let (ids, tallies): (Vec<Vec<T::Id>>, Vec<Tally>) = outputs.into_iter().unzip();
    let tally = merged(tallies);
    report_first_error(&tally, "create");
    (ids.into_iter().flatten().collect(), tally)
}

/// One request of a timed phase on session `id`; returns whether it wrote a touch.
async fn request<T: Target>(target: &T, phase: Phase, id: &T::Id, change: &Change) -> Result<bool> {
    match phase {
        Phase::Rmw => target.rmw(id, change).await.map(|()| false),
        Phase::RmwCas => target.rmw_cas(id, change).await.map(|()| false),
        Phase::Get => target.get(id).await.map(|()| false),
        Phase::Touch => target.read_lazy_touch(id, &touch_expiry()).await,
        Phase::Create => anyhow::bail!("create is not a timed phase"),
    }
}

/// Runs `phase` on random sessions of `ids` with `concurrency` workers for `duration`.
pub(crate) async fn timed<T: Target>(
    target: &Arc<T>,
    ids: &Arc<Vec<T::Id>>,
    phase: Phase,
    concurrency: usize,
    duration: StdDuration,
) -> Tally {
    let deadline = Instant::now() + duration;
    timed_while(target, ids, phase, concurrency, move || {
        Instant::now() < deadline
    })
    .await
}

/// Runs `phase` like [`timed`], each worker starting requests while `go_on` says so (the
/// purge mode runs traffic for as long as a purge takes).
pub(crate) async fn timed_while<T: Target>(
    target: &Arc<T>,
    ids: &Arc<Vec<T::Id>>,
    phase: Phase,
    concurrency: usize,
    go_on: impl Fn() -> bool + Clone + Send + 'static,
) -> Tally {
    let tallies = spawn_workers(concurrency, |worker| {
        let (target, ids, go_on) = (target.clone(), ids.clone(), go_on.clone());
        async move {
            let mut rng = Rng::new(0x5EED_0000 + worker as u64);
            let mut tally = Tally::new();
            while go_on() {
                let id = &ids[rng.below(ids.len())];
                let change = Change::random(&mut rng);
                let started = Instant::now();
                let outcome = request(&*target, phase, id, &change).await;
                tally.record(&outcome, started.elapsed());
                tally.writes += u64::from(matches!(outcome, Ok(true)));
            }
            tally
        }
    })
    .await;
    let tally = merged(tallies);
    report_first_error(&tally, phase.name());
    tally
}

/// Deletes every session of `ids` (untimed cleanup).
pub(crate) async fn delete_all<T: Target>(
    target: &Arc<T>,
    ids: &Arc<Vec<T::Id>>,
    concurrency: usize,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let tallies = spawn_workers(concurrency, |_| {
        let (target, ids, next) = (target.clone(), ids.clone(), next.clone());
        async move {
            let mut tally = Tally::new();
            while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                let started = Instant::now();
                tally.record(&target.delete(id).await, started.elapsed());
            }
            tally
        }
    })
    .await;
    report_first_error(&merged(tallies), "cleanup");
}

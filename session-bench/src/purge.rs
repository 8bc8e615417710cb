//! `--purge N`: what session-postgres' purge of expired rows costs the requests running
//! beside it. A table of live sessions plus N expired rows (filled with one bulk
//! `INSERT … SELECT generate_series`, copying a live row's data and format, since writing a
//! million rows through the store would take longer than the measurement), then rmw at the
//! top concurrency: before the purge, during `PostgresStore::purge_expired` (what the
//! background pruner runs: batches of 1,000 along the `expires_at` index, `SKIP LOCKED`),
//! and after it. The figure asked: rmw p99 during the purge against before.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use session_postgres::PostgresStore;

use crate::runner::{self, CREATE_TTL};
use crate::stats::Row;
use crate::target::{Info, Ours, Target as _};
use crate::workload::Phase;

/// The table the purge mode fills and drops.
const TABLE: &str = "bench_purge";

/// Expired rows inserted per statement: each statement is its own transaction, so WAL and
/// locks stay bounded whatever N is.
const FILL_CHUNK: usize = 100_000;

/// What the purge mode measured.
#[derive(Debug)]
pub struct PurgeReport {
    /// Expired rows filled.
    pub expired: usize,
    /// Live sessions the traffic reads and writes.
    pub live: usize,
    /// How long filling took.
    pub fill: Duration,
    /// rmw before, during and after the purge.
    pub rows: [Row; 3],
    /// How long the purge took.
    pub purge: Duration,
    /// Rows it removed.
    pub removed: u64,
    /// `DELETE` batches it ran.
    pub batches: u64,
}

/// Runs the measurement on the PostgreSQL at `url`: `expired` rows to purge, `live`
/// sessions of traffic at `concurrency`, `duration` before and after.
pub async fn run(
    url: &str,
    expired: usize,
    live: usize,
    concurrency: usize,
    duration: Duration,
) -> Result<PurgeReport> {
    let store = PostgresStore::builder().table(TABLE).connect(url).await?;
    sqlx::query(&format!("DROP TABLE IF EXISTS {TABLE}"))
        .execute(store.pool())
        .await?;
    store.migrate().await?;
    let target = Arc::new(Ours::new(store.clone(), "session-postgres", "postgres"));
    let info = target.info();
    eprintln!("purge: creating {live} live sessions");
    let (ids, tally) = runner::create(&target, live, concurrency, CREATE_TTL).await;
    ensure!(
        tally.errors == 0 && !ids.is_empty(),
        "creating the live sessions failed ({} errors)",
        tally.errors
    );
    let ids = Arc::new(ids);

    eprintln!("purge: filling {expired} expired rows (bulk INSERT … SELECT)");
    let started = Instant::now();
    fill(&store, expired).await?;
    let fill_took = started.elapsed();
    eprintln!("purge: filled in {:.1} s", fill_took.as_secs_f64());

    let deadline = Instant::now() + duration;
    let before = phase(&target, &info, &ids, concurrency, move || {
        Instant::now() < deadline
    })
    .await;

    // The purge in its own task; the traffic goes on until it is done.
    let done = Arc::new(AtomicBool::new(false));
    let purge = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let stats = store.purge_expired().await;
            done.store(true, Ordering::Release);
            stats.map(|stats| (stats, started.elapsed()))
        })
    };
    let going = done.clone();
    let during = phase(&target, &info, &ids, concurrency, move || {
        !going.load(Ordering::Acquire)
    })
    .await;
    let (stats, purge_took) = purge.await.context("the purge task panicked")??;

    let deadline = Instant::now() + duration;
    let after = phase(&target, &info, &ids, concurrency, move || {
        Instant::now() < deadline
    })
    .await;
    runner::delete_all(&target, &ids, concurrency).await;
    sqlx::query(&format!("DROP TABLE IF EXISTS {TABLE}"))
        .execute(store.pool())
        .await?;
    Ok(PurgeReport {
        expired,
        live: ids.len(),
        fill: fill_took,
        rows: [before, during, after],
        purge: purge_took,
        removed: stats.removed,
        batches: stats.batches,
    })
}

/// One rmw phase at `concurrency` while `go_on` says so.
async fn phase(
    target: &Arc<Ours<PostgresStore>>,
    info: &Info,
    ids: &Arc<Vec<session_core::SessionId>>,
    concurrency: usize,
    go_on: impl Fn() -> bool + Clone + Send + 'static,
) -> Row {
    let started = Instant::now();
    let tally = runner::timed_while(target, ids, Phase::Rmw, concurrency, go_on).await;
    let mut row = Row::new(info, Phase::Rmw, concurrency, &tally, started.elapsed());
    row.sessions = ids.len();
    runner::progress(&row);
    row
}

/// Inserts `count` expired rows, each a copy of a live row's data and format under a new
/// id, expired between 1 and 2 hours ago, then `ANALYZE`s the table as autovacuum would.
async fn fill(store: &PostgresStore, count: usize) -> Result<()> {
    let mut next = 0;
    while next < count {
        let chunk = FILL_CHUNK.min(count - next);
        sqlx::query(&format!(
            "INSERT INTO {TABLE} (id, data, expires_at, deadline, created_at, version, owner, format) \
             SELECT 'expired-' || lpad(g::text, 12, '0'), model.data, \
                    now() - interval '1 hour' - (g % 3600000) * interval '1 millisecond', \
                    NULL, now() - interval '3 hours', 1, NULL, model.format \
             FROM generate_series($1::bigint, $2::bigint) AS g, \
                  (SELECT data, format FROM {TABLE} LIMIT 1) AS model"
        ))
        .bind(next as i64)
        .bind((next + chunk - 1) as i64)
        .execute(store.pool())
        .await
        .context("filling expired rows")?;
        next += chunk;
    }
    sqlx::query(&format!("ANALYZE {TABLE}"))
        .execute(store.pool())
        .await?;
    Ok(())
}

/// The purge mode's table, and the figure asked: p99 during against before.
pub fn table(report: &PurgeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "PostgreSQL purge under load: {} expired rows (filled in {:.1} s by bulk INSERT), \
         {} live sessions, rmw@{}",
        report.expired,
        report.fill.as_secs_f64(),
        report.live,
        report.rows[0].concurrency,
    );
    let _ = writeln!(
        out,
        "purge_expired: {} rows in {} batches, {:.2} s ({:.0} rows/s)\n",
        report.removed,
        report.batches,
        report.purge.as_secs_f64(),
        report.removed as f64 / report.purge.as_secs_f64().max(1e-9)
    );
    let _ = writeln!(
        out,
        "{:<8} {:>10} {:>10} {:>10} {:>7} {:>8} {:>8}",
        "rmw", "ops/s", "p50 µs", "p99 µs", "errors", "x ops/s", "x p99"
    );
    let base = &report.rows[0];
    for (name, row) in ["before", "during", "after"].iter().zip(&report.rows) {
        let _ = writeln!(
            out,
            "{:<8} {:>10.0} {:>10.1} {:>10.1} {:>7} {:>7.2}x {:>7.2}x",
            name,
            row.ops_per_s,
            row.p50_us,
            row.p99_us,
            row.errors,
            row.ops_per_s / base.ops_per_s.max(1e-9),
            row.p99_us / base.p99_us.max(1e-9),
        );
    }
    let _ = writeln!(
        out,
        "\nrmw p99 during the purge / before: {:.2}x (throughput {:.2}x)",
        report.rows[1].p99_us / base.p99_us.max(1e-9),
        report.rows[1].ops_per_s / base.ops_per_s.max(1e-9)
    );
    out
}

//! `session-bench`: the benchmark of issue 8. Runs the same workload against our stores, a
//! raw client baseline and the peer stores from crates.io on every backend, in one run, and
//! reports throughput, latency and each store's ratio to its baseline and best peer.
//!
//! ```sh
//! eval "$(scripts/services env)"
//! cargo run --release -p session-bench -- --duration 3 --sessions 20000
//! cargo run -p session-bench -- --smoke            # tiny, for CI
//! cargo run --release -p session-bench -- --memory-footprint
//! cargo run --release -p session-bench -- --owner-sweep 100000
//! cargo run --release -p session-bench -- --scale 10000,100000,1000000 --backends redis
//! cargo run --release -p session-bench -- --charts docs/bench     # SVG charts of the run
//! cargo run --release -p session-bench -- --purge 1000000         # PostgreSQL purge under load
//! cargo run --release -p session-bench -- --cluster-scale         # Redis Cluster, 1 vs 3 primaries
//! ```
//!
//! Modules: [`workload`] (payload, change, phases), [`target`] (the `Target` trait and our
//! stores), [`raw`] (baselines), [`peers`] (crates.io stores), [`backends`] (which targets
//! run where), [`runner`] (workers and phases), [`stats`] (histograms, rows, ratios),
//! [`report`] (JSON lines, table, targets), [`footprint`] (`--memory-footprint`), [`server`]
//! (Redis' CPU and commands per operation), [`stored`] (bytes per session, for `--scale`),
//! [`charts`] (`--charts`), [`purge`] (`--purge`), [`cluster`] (`--cluster-scale`).

mod backends;
mod charts;
mod cluster;
mod footprint;
mod peers;
mod purge;
mod raw;
mod raw_sql;
mod report;
mod runner;
mod server;
mod stats;
mod stored;
mod sweep;
mod target;
mod workload;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;

use crate::backends::{Backend, EXCLUDED, Urls};
use crate::footprint::FootprintStore;
use crate::runner::Plan;
use crate::stats::Row;
use crate::workload::Phase;

/// Benchmarks session stores against a raw client baseline and peer stores.
///
/// For every backend (memory, Redis, PostgreSQL, MongoDB) it runs our stores, a raw baseline
/// doing the minimum equivalent work with the same client library, and the peer stores from
/// crates.io, through the same workload: create N sessions of a ~1 KiB payload (expiry 1 h);
/// `rmw` (get, change one field, set) at each concurrency level; `rmw-cas` (the same through
/// compare-and-swap with retry), `get`, and `touch` (reads under a lazy-touch policy, counting
/// touch writes per 1,000 requests) at the highest level. Each phase runs for --duration.
///
/// Output: one JSON object per line (to --json FILE, or stdout), then a readable table with
/// each store's ratio to its backend's raw baseline and best peer, and the issue's targets
/// (to stdout with --json FILE, else stderr). Progress goes to stderr. Exits with status 1
/// when any operation failed or a requested backend could not be set up.
#[derive(Debug, Parser)]
#[command(name = "session-bench", version)]
struct Args {
    /// Backends to run, comma-separated [default: all; one without a server URL is skipped].
    #[arg(long, value_enum, value_delimiter = ',')]
    backends: Vec<Backend>,

    /// Run only targets whose name contains one of these words (case-insensitive),
    /// comma-separated, e.g. `raw,fred`.
    #[arg(long, value_delimiter = ',')]
    stores: Vec<String>,

    /// Seconds each timed phase runs.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,

    /// Sessions created per target.
    #[arg(long, default_value_t = 20_000)]
    sessions: usize,

    /// Concurrency levels of `rmw`, comma-separated; the other phases run at the highest.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64])]
    concurrency: Vec<usize>,

    /// Phases to run, comma-separated [default: all]; `create` always runs.
    #[arg(long, value_enum, value_delimiter = ',')]
    phases: Vec<Phase>,

    /// Session counts to run the benchmark at, comma-separated (e.g.
    /// `10000,100000,1000000`), instead of --sessions: one run per count, then a table of
    /// throughput, p99 and storage per session by count. Use --stores to keep it to a few
    /// targets.
    #[arg(long, value_delimiter = ',')]
    scale: Vec<usize>,

    /// Tiny run for CI: 200 sessions, 0.3 s phases, concurrency 1 and 8.
    #[arg(long)]
    smoke: bool,

    /// Install the Prometheus exporter's recorder first (as an app serving `/metrics`
    /// would), so the `InstrumentedStore` rows pay for real metrics; without it they
    /// measure the wrapper with no recorder.
    #[arg(long)]
    prometheus: bool,

    /// Write the JSON lines to this file instead of stdout (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Instead of the benchmark: fill session-memory's MemoryStore and tower-sessions'
    /// MemoryStore with --footprint-sessions sessions each (in child processes) and report
    /// the resident memory they take against the JSON bytes they hold.
    #[arg(long)]
    memory_footprint: bool,

    /// Sessions the memory-footprint mode stores.
    #[arg(long, default_value_t = 100_000)]
    footprint_sessions: usize,

    /// Instead of the benchmark: write this many express-session sessions to Redis as
    /// connect-redis does, owners at `passport.user`, and time session-redis'
    /// `list_by_owner` / `destroy_by_owner` with `owner_path` against a SCAN + GET walk.
    #[arg(long)]
    owner_sweep: Option<usize>,

    /// Write SVG charts of the run into this directory: per backend, ops/s of each
    /// operation for every target at the top concurrency (`bars-<backend>.svg`); with
    /// --scale, throughput and bytes per session by session count (`scale.svg`).
    #[arg(long, value_name = "DIR")]
    charts: Option<PathBuf>,

    /// Instead of the benchmark: fill session-postgres' table with this many expired rows
    /// (bulk SQL) beside --sessions live ones, and measure rmw at the top concurrency
    /// before, during and after the store's purge of the expired rows.
    #[arg(long, value_name = "N")]
    purge: Option<usize>,

    /// Instead of the benchmark: session-redis on a Redis Cluster of one primary (a
    /// `redis-server` from PATH this run starts) against the three-primary Cluster at
    /// --redis-cluster-url: create, rmw and get at the top concurrency.
    #[arg(long)]
    cluster_scale: bool,

    /// Redis Cluster seed URLs, comma-separated (three primaries).
    #[arg(long, env = "SESSION_STORES_REDIS_CLUSTER_URL")]
    redis_cluster_url: Option<String>,

    /// Internal: the child process of --memory-footprint.
    #[arg(long, value_enum, hide = true)]
    footprint_child: Option<FootprintStore>,

    /// Redis (standalone) URL.
    #[arg(long, env = "SESSION_STORES_REDIS_URL")]
    redis_url: Option<String>,

    /// Redis Sentinel URL (`redis+sentinel://host:port?sentinelServiceName=..`).
    #[arg(long, env = "SESSION_STORES_REDIS_SENTINEL_URL")]
    redis_sentinel_url: Option<String>,

    /// PostgreSQL URL.
    #[arg(long, env = "SESSION_STORES_POSTGRES_URL")]
    postgres_url: Option<String>,

    /// MongoDB URL.
    #[arg(long, env = "SESSION_STORES_MONGO_URL")]
    mongo_url: Option<String>,

    /// SQLite URL (default: `session-bench.db` in the temp dir; its tables are dropped
    /// before and after a run).
    #[arg(long)]
    sqlite_url: Option<String>,

    /// MySQL/MariaDB URL.
    #[arg(long, env = "SESSION_STORES_MYSQL_URL")]
    mysql_url: Option<String>,
}

impl Args {
    fn plan(&self) -> Plan {
        let (sessions, duration, mut levels) = if self.smoke {
            (200, 0.3, vec![1, 8])
        } else {
            (self.sessions, self.duration, self.concurrency.clone())
        };
        levels.retain(|&level| level > 0);
        levels.dedup();
        let phases = if self.phases.is_empty() {
            [Phase::Rmw, Phase::RmwCas, Phase::Get, Phase::Touch].into()
        } else {
            self.phases.iter().copied().collect()
        };
        Plan {
            sessions: sessions.max(1),
            duration: Duration::from_secs_f64(duration.max(0.01)),
            levels: if levels.is_empty() { vec![1] } else { levels },
            phases,
        }
    }

    fn backends(&self) -> Vec<Backend> {
        if self.backends.is_empty() {
            vec![
                Backend::Memory,
                Backend::Redis,
                Backend::RedisSentinel,
                Backend::Postgres,
                Backend::Mongo,
                Backend::Sqlite,
                Backend::Mysql,
            ]
        } else {
            self.backends.clone()
        }
    }

    fn urls(&self) -> Urls {
        Urls {
            redis: self.redis_url.clone(),
            redis_sentinel: self.redis_sentinel_url.clone(),
            postgres: self.postgres_url.clone(),
            mongo: self.mongo_url.clone(),
            sqlite: Some(self.sqlite_url.clone().unwrap_or_else(|| {
                let file = std::env::temp_dir().join("session-bench.db");
                format!("sqlite://{}", file.display())
            })),
            mysql: self.mysql_url.clone(),
        }
    }

    fn selected(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        self.stores.is_empty()
            || self
                .stores
                .iter()
                .any(|word| name.contains(&word.to_lowercase()))
    }

    /// Where the JSON lines and the table go.
    fn outputs(&self) -> Result<(Box<dyn Write>, Box<dyn Write>)> {
        match &self.json {
            Some(path) if path.as_os_str() != "-" => {
                let file = File::create(path).with_context(|| format!("creating {path:?}"))?;
                Ok((Box::new(BufWriter::new(file)), Box::new(std::io::stdout())))
            }
            _ => Ok((Box::new(std::io::stdout()), Box::new(std::io::stderr()))),
        }
    }
}

/// What a run produced besides its rows: why a backend or peer is missing, and failures.
#[derive(Debug, Default)]
struct Outcome {
    rows: Vec<Row>,
    notes: Vec<String>,
    failed: bool,
}

/// Runs every selected target of `backend`, then drops what they left.
async fn run_backend(args: &Args, plan: &Plan, backend: Backend, outcome: &mut Outcome) {
    let urls = args.urls();
    let url = match urls.of(backend) {
        Ok(url) => url,
        Err(why) => {
            eprintln!("{backend}: skipped ({why})");
            outcome.notes.push(format!("{backend}: skipped ({why})"));
            outcome.failed |= !args.backends.is_empty();
            return;
        }
    };
    eprintln!("{backend}:");
    let jobs = match backends::jobs(backend, url, plan.sessions, args.prometheus).await {
        Ok(jobs) => jobs,
        Err(err) => {
            eprintln!("{backend}: setup failed: {err:#}");
            outcome
                .notes
                .push(format!("{backend}: setup failed: {err:#}"));
            outcome.failed = true;
            return;
        }
    };
    let meter = match (backend, url) {
        // One server thread runs every command: what each operation costs it is a figure
        // of its own (the compare-and-swap target).
        (Backend::Redis, Some(url)) => match server::ServerMeter::connect(url).await {
            Ok(meter) => Some(meter),
            Err(err) => {
                outcome
                    .notes
                    .push(format!("{backend}: no server costs ({err:#})"));
                None
            }
        },
        _ => None,
    };
    let stored = match stored::StoredBytes::connect(backend, url).await {
        Ok(stored) => stored,
        Err(err) => {
            outcome
                .notes
                .push(format!("{backend}: no storage figures ({err:#})"));
            None
        }
    };
    let probes = runner::Probes { meter, stored };
    for job in jobs {
        if args.selected(&job.info().name) {
            outcome.rows.extend(job.run(plan, &probes).await);
        }
    }
    if let Err(err) = backends::teardown(backend, url).await {
        eprintln!("{backend}: teardown failed: {err:#}");
    }
}

fn print_report(args: &Args, plan: &Plan, outcome: &Outcome, took: Duration) -> Result<()> {
    let (mut json, mut text) = args.outputs()?;
    report::write_json_lines(&mut json, &outcome.rows)?;
    json.flush()?;
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    writeln!(
        text,
        "\nsession-bench ({profile} build, {cores} cores, load average {}): {} sessions, \
         {:.1} s phases, concurrency {:?}, {:.0} s in all\n",
        load.join(" "),
        plan.sessions,
        plan.duration.as_secs_f64(),
        plan.levels,
        took.as_secs_f64()
    )?;
    write!(text, "{}", report::table(&outcome.rows))?;
    writeln!(
        text,
        "\nxraw: ops/s over the backend's raw baseline; xpeer: over the best peer"
    )?;
    writeln!(
        text,
        "\nTargets:\n{}",
        report::targets(&outcome.rows, plan.top(), args.prometheus)
    )?;
    for (peer, why) in EXCLUDED {
        writeln!(text, "excluded: {peer}: {why}")?;
    }
    for note in &outcome.notes {
        writeln!(text, "note: {note}")?;
    }
    Ok(())
}

fn print_footprint(args: &Args) -> Result<()> {
    let footprints = footprint::measure(args.footprint_sessions)?;
    let (mut json, mut text) = args.outputs()?;
    for footprint in &footprints {
        writeln!(json, "{}", serde_json::to_string(footprint)?)?;
    }
    json.flush()?;
    write!(text, "\n{}", footprint::table(&footprints))?;
    if let Some(ours) = footprints.first() {
        let verdict = if ours.ratio <= 2.0 { "met" } else { "MISSED" };
        writeln!(
            text,
            "\nTarget: MemoryStore holds {} sessions in <= 2x their JSON bytes: {verdict} ({:.2}x)",
            ours.sessions, ours.ratio
        )?;
    }
    Ok(())
}

async fn print_purge(args: &Args, expired: usize) -> Result<()> {
    let url = args
        .postgres_url
        .as_deref()
        .context("--purge needs SESSION_STORES_POSTGRES_URL / --postgres-url")?;
    let plan = args.plan();
    let report = purge::run(url, expired, plan.sessions, plan.top(), plan.duration).await?;
    let (mut json, mut text) = args.outputs()?;
    report::write_json_lines(&mut json, &report.rows)?;
    json.flush()?;
    write!(text, "\n{}", purge::table(&report))?;
    let errors: u64 = report.rows.iter().map(|row| row.errors).sum();
    if errors > 0 {
        eprintln!("session-bench: {errors} failed operations; see above");
        std::process::exit(1);
    }
    Ok(())
}

async fn print_cluster(args: &Args) -> Result<()> {
    let url = args
        .redis_cluster_url
        .as_deref()
        .context("--cluster-scale needs SESSION_STORES_REDIS_CLUSTER_URL / --redis-cluster-url")?;
    let plan = args.plan();
    let rows = cluster::run(url, &plan).await?;
    let (mut json, mut text) = args.outputs()?;
    report::write_json_lines(&mut json, &rows)?;
    json.flush()?;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    write!(
        text,
        "\nRedis Cluster, 1 vs 3 primaries ({} sessions, {:.1} s phases, {cores} cores):\n{}",
        plan.sessions,
        plan.duration.as_secs_f64(),
        cluster::table(&rows, plan.top())
    )?;
    let errors: u64 = rows.iter().map(|row| row.errors).sum();
    if errors > 0 {
        eprintln!("session-bench: {errors} failed operations; see above");
        std::process::exit(1);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(store) = args.footprint_child {
        return footprint::child(store, args.footprint_sessions).await;
    }
    if args.memory_footprint {
        return print_footprint(&args);
    }
    if let Some(sessions) = args.owner_sweep {
        let url = args
            .redis_url
            .as_deref()
            .context("--owner-sweep needs SESSION_STORES_REDIS_URL / --redis-url")?;
        return sweep::run(url, sessions).await;
    }
    if let Some(expired) = args.purge {
        return print_purge(&args, expired).await;
    }
    if args.cluster_scale {
        return print_cluster(&args).await;
    }
    if args.prometheus {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .context("installing the Prometheus recorder")?;
    }
    let plan = args.plan();
    let started = Instant::now();
    let mut outcome = Outcome::default();
    let counts = if args.scale.is_empty() {
        vec![plan.sessions]
    } else {
        args.scale.clone()
    };
    for backend in args.backends() {
        for &sessions in &counts {
            let plan = Plan {
                sessions: sessions.max(1),
                ..plan.clone()
            };
            run_backend(&args, &plan, backend, &mut outcome).await;
        }
    }
    stats::add_ratios(&mut outcome.rows);
    print_report(&args, &plan, &outcome, started.elapsed())?;
    if !args.scale.is_empty() {
        let (_, mut text) = args.outputs()?;
        write!(text, "\n{}", report::scale_table(&outcome.rows, plan.top()))?;
    }
    if let Some(dir) = &args.charts {
        for path in charts::write(dir, &outcome.rows, plan.top())? {
            eprintln!("chart: {}", path.display());
        }
    }
    let errors: u64 = outcome.rows.iter().map(|row| row.errors).sum();
    if errors > 0 || outcome.failed {
        eprintln!("session-bench: {errors} failed operations; see above");
        std::process::exit(1);
    }
    Ok(())
}

//! `soak`: the fault workload against dedicated servers that are killed and restarted
//! periodically, on every network backend at once, bounded in time. Prints one summary
//! line per store (operations, errors by kind, acknowledged writes lost, p99) and one for
//! the linearizability check of its recorded history, and exits with status 1 if any
//! acknowledged write was lost, a call overran its timeout, an error was not retryable, an
//! operation never resolved, or the history is not linearizable.
//!
//! ```sh
//! cargo run --release -p integration-tests --bin soak -- --seconds 600
//! ```
//!
//! Needs `redis-server`, PostgreSQL's `initdb`/`pg_ctl` and the FerretDB binary that
//! `scripts/services` installs; it starts its own servers on free ports and never touches
//! the shared ones.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use integration_tests::servers::{
    DedicatedServer, FerretServer, MariadbServer, PostgresServer, RedisServer,
};
use integration_tests::targets::Target;
use integration_tests::workload::{CALL_TIMEOUT, Report, Workload};
use session_core::StoreOptions;

/// Soak test: the workload of the fault tests while real servers crash and restart.
#[derive(Debug, Parser)]
struct Args {
    /// How long each store runs, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds between server crashes.
    #[arg(long, default_value_t = 10)]
    restart_every: u64,
    /// Seconds a crashed server stays down before it restarts.
    #[arg(long, default_value_t = 1.0)]
    down: f64,
    /// Stores to run (all at once), comma-separated: redis-fred, redis-rs, postgres, mongo,
    /// mysql.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "redis-fred,redis-rs,postgres,mongo,mysql"
    )]
    stores: Vec<String>,
}

type Server = Arc<Mutex<Box<dyn DedicatedServer>>>;

fn start_server(target: Target) -> Result<Box<dyn DedicatedServer>, String> {
    Ok(match target {
        Target::RedisFred | Target::RedisRs => Box::new(RedisServer::start()?),
        Target::Postgres => Box::new(PostgresServer::start()?),
        Target::Mongo => Box::new(FerretServer::start()?),
        Target::Mysql => Box::new(MariadbServer::start()?),
    })
}

/// Runs `op` on the server outside the async workers (pg_ctl blocks for a while).
async fn on_server(server: &Server, op: fn(&mut dyn DedicatedServer) -> Result<(), String>) {
    let server = server.clone();
    tokio::task::spawn_blocking(move || op(server.lock().unwrap().as_mut()))
        .await
        .expect("server control panicked")
        .expect("crashing or restarting the server failed");
}

async fn soak(target: Target, args: &Args) -> Result<(u32, Report), String> {
    let server: Server = Arc::new(Mutex::new(
        tokio::task::spawn_blocking(move || start_server(target))
            .await
            .map_err(|e| e.to_string())??,
    ));
    let url = server.lock().unwrap().url();
    let workload = Workload {
        recorded: Some(target.partitions()),
        ..Workload::default()
    };
    let options = StoreOptions {
        timeout: CALL_TIMEOUT,
        ..StoreOptions::default()
    };
    let store = target
        .connect(&url, options)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let runner = workload.start(store);
    let progress = runner.progress();
    let mut restarts = 0;
    let report = runner
        .run(async {
            let end = Instant::now() + Duration::from_secs(args.seconds);
            loop {
                let next = Instant::now() + Duration::from_secs(args.restart_every);
                if next >= end {
                    tokio::time::sleep_until(end.into()).await;
                    break;
                }
                tokio::time::sleep_until(next.into()).await;
                on_server(&server, |s| s.kill()).await;
                tokio::time::sleep(Duration::from_secs_f64(args.down)).await;
                on_server(&server, |s| s.restart()).await;
                restarts += 1;
                if progress
                    .resumed(10, Duration::from_secs(30))
                    .await
                    .is_none()
                {
                    eprintln!("soak {}: no progress 30 s after a restart", target.name());
                }
            }
        })
        .await;
    Ok((restarts, report))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut targets = Vec::new();
    for name in &args.stores {
        match Target::ALL.into_iter().find(|t| t.name() == name) {
            Some(target) => targets.push(target),
            None => {
                eprintln!("soak: unknown store {name:?}");
                std::process::exit(2);
            }
        }
    }
    let args = Arc::new(args);
    let runs: Vec<_> = targets
        .into_iter()
        .map(|target| {
            let args = args.clone();
            tokio::spawn(async move { (target, soak(target, &args).await) })
        })
        .collect();
    let mut failed = false;
    for run in runs {
        let (target, outcome) = run.await.expect("a soak run panicked");
        match outcome {
            Ok((restarts, report)) => {
                println!(
                    "soak {}: {}s restarts={restarts} {report}",
                    target.name(),
                    args.seconds
                );
                if !report.is_clean() {
                    eprintln!("{}", report.problems());
                    failed = true;
                }
                let name = format!("soak-{}", target.name());
                match report.check_linearizability(&name, "soak") {
                    Ok(verdict) => {
                        println!(
                            "soak {}: linearizability: histories=1 partitions={} ops={} \
                             unknown={} anomalies={} timed_out={}",
                            target.name(),
                            verdict.partitions,
                            verdict.ops,
                            verdict.unknown,
                            verdict.anomalies,
                            verdict.timed_out
                        );
                        failed |=
                            verdict.anomalies > 0 || verdict.timed_out > 0 || verdict.ops == 0;
                    }
                    Err(err) => {
                        println!(
                            "soak {}: linearizability check failed to run: {err}",
                            target.name()
                        );
                        failed = true;
                    }
                }
            }
            Err(err) => {
                println!("soak {}: could not run: {err}", target.name());
                failed = true;
            }
        }
    }
    std::process::exit(i32::from(failed));
}

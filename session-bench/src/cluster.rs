//! `--cluster-scale`: what spreading the keys over three Redis Cluster primaries buys against
//! one. The three-primary Cluster is the one `scripts/services` runs (each primary with a
//! replica); the one-primary Cluster is a `redis-server` in cluster mode this mode starts
//! on a free port and stops at the end (every slot on it, no replica). Each runs
//! session-redis (both clients) through create, rmw and get at the top concurrency; the
//! figure is each store's throughput on three primaries over one, in the same run.
//!
//! On a machine with fewer cores than the servers and the bench need, three primaries can
//! not run side by side, so the ratio there says what the Cluster's redirections and
//! per-node connections cost rather than what scaling out gains.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use session_redis::{DEFAULT_POOL_SIZE, RedisStore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::runner::{Job, Plan, Probes, job};
use crate::stats::Row;
use crate::target::Ours;
use crate::workload::Phase;

/// How long the spawned server may take to answer and to call its cluster ok.
const START_WAIT: Duration = Duration::from_secs(20);

/// A `redis-server` in cluster mode holding every slot, killed (and its directory
/// removed) on drop.
struct OnePrimary {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for OnePrimary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free now, whose cluster bus port (+10000) is free too.
fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port pair for a cluster node")
}

/// Sends one inline command and reads a simple, error or bulk reply.
async fn command(port: u16, line: &str) -> Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await?;
    let mut head = String::new();
    stream.read_line(&mut head).await?;
    let head = head.trim_end();
    match head.split_at(head.len().min(1)) {
        ("+", rest) => Ok(rest.to_owned()),
        ("-", rest) => bail!("{line}: {rest}"),
        ("$", len) => {
            let len: usize = len.parse().context("bulk length")?;
            let mut body = vec![0; len + 2];
            stream.read_exact(&mut body).await?;
            body.truncate(len);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        _ => bail!("{line}: unexpected reply {head:?}"),
    }
}

impl OnePrimary {
    /// Starts the server, gives it every slot and waits until it calls the cluster ok.
    async fn start() -> Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("session-bench-cluster-{port}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            // A node that never met another knows no address of its own, and would
            // announce an empty one in CLUSTER SLOTS.
            .args(["--cluster-announce-ip", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (on PATH?)")?;
        let server = Self { child, dir, port };
        let deadline = Instant::now() + START_WAIT;
        while command(port, "PING").await.is_err() {
            if Instant::now() > deadline {
                bail!("redis-server on {port} did not answer within {START_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        command(port, "CLUSTER ADDSLOTSRANGE 0 16383").await?;
        while !command(port, "CLUSTER INFO")
            .await?
            .contains("cluster_state:ok")
        {
            if Instant::now() > deadline {
                bail!("the one-primary cluster on {port} is not ok within {START_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// The targets on one Cluster: session-redis with fred and with redis-rs, named by how
/// many primaries the Cluster has.
async fn jobs(urls: &[String], primaries: usize) -> Result<Vec<Box<dyn Job>>> {
    let store = |client: &str| {
        RedisStore::builder()
            .cluster_urls(urls)
            .prefix(format!("bench:cluster-{client}:"))
            .pool_size(DEFAULT_POOL_SIZE)
    };
    let name = |client: &str| {
        format!(
            "session-redis ({client}), {primaries} primar{}",
            if primaries == 1 { "y" } else { "ies" }
        )
    };
    Ok(vec![
        job(Ours::new(
            store("fred").fred().connect().await?,
            name("fred"),
            "redis-cluster",
        )),
        job(Ours::new(
            store("redis-rs").redis_rs().connect().await?,
            name("redis-rs"),
            "redis-cluster",
        )),
    ])
}

/// Runs `plan` (create, then rmw and get at its top concurrency) on a one-primary Cluster
/// it starts and on the three-primary Cluster at `three` (comma-separated seed URLs).
pub async fn run(three: &str, plan: &Plan) -> Result<Vec<Row>> {
    let plan = Plan {
        levels: vec![plan.top()],
        phases: [Phase::Rmw, Phase::Get].into(),
        ..plan.clone()
    };
    let mut rows = Vec::new();
    {
        eprintln!("redis-cluster, 1 primary (spawned):");
        let one = OnePrimary::start().await?;
        for job in jobs(&[one.url()], 1).await? {
            rows.extend(job.run(&plan, &Probes::default()).await);
        }
    }
    eprintln!("redis-cluster, 3 primaries ({three}):");
    let urls: Vec<String> = three.split(',').map(str::to_owned).collect();
    for job in jobs(&urls, 3).await? {
        rows.extend(job.run(&plan, &Probes::default()).await);
    }
    Ok(rows)
}

/// The table: each client's phase on one primary and on three, and their ratio.
pub fn table(rows: &[Row], top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<9} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "client", "phase", "1p ops/s", "1p p99 µs", "3p ops/s", "3p p99 µs", "3p / 1p"
    );
    for client in ["fred", "redis-rs"] {
        for phase in [Phase::Create, Phase::Rmw, Phase::Get] {
            let find = |primaries: &str| {
                rows.iter().find(|row| {
                    row.store
                        .starts_with(&format!("session-redis ({client}), {primaries}"))
                        && row.phase == phase.name()
                        && row.concurrency == top
                })
            };
            if let (Some(one), Some(three)) = (find("1 "), find("3 ")) {
                let _ = writeln!(
                    out,
                    "{:<10} {:<9} {:>12.0} {:>12.1} {:>12.0} {:>12.1} {:>8.2}x",
                    client,
                    format!("{}@{top}", phase.name()),
                    one.ops_per_s,
                    one.p99_us,
                    three.ops_per_s,
                    three.p99_us,
                    three.ops_per_s / one.ops_per_s.max(1e-9)
                );
            }
        }
    }
    out
}

//! A Redis Cluster in Docker containers (a network of their own) under the faults a
//! Cluster has and a proxy can't fake (its nodes announce their own addresses, which
//! clients then use directly), while the concurrent workload of
//! `integration_tests::workload` runs, as tests/faults.rs does for the other stores through
//! toxiproxy:
//!
//! - **partition**: one of three masters cut off (`docker network disconnect`) and healed
//!   (`docker network connect`, same address). The cut outlasts the nodes'
//!   `cluster-node-timeout`, so the other masters mark it as failed and the whole cluster
//!   refuses commands (`CLUSTERDOWN`) until it is back, not only the cut node's slots;
//! - **failover**: three masters with a replica each; a master is killed (SIGKILL) mid-traffic,
//!   its replica is promoted, then the old master's container is started again and must
//!   rejoin as the replica of the promoted node. Under the default durability (Redis'
//!   asynchronous replication) a write acknowledged in the instant before the kill may be
//!   lost, so those runs only print what was lost; under `Durability::Replicated` (fred: each
//!   write's `WAIT` goes to the key's node on its connection) nothing acknowledged may be
//!   lost. Writes to the dead master's slots fail until the promotion: errors, not losses;
//! - **resharding**: a block of slots moved from one master to another with `redis-cli
//!   --cluster reshard` (slot by slot: `SETSLOT IMPORTING`/`MIGRATING`, `MIGRATE` of its
//!   keys, `SETSLOT NODE`), so the clients get `ASK` and `MOVED` redirections (and
//!   `TRYAGAIN` for a script whose keys are split mid-migration) while they write. The
//!   slots must really have moved, with some of the workload's keys.
//!
//! Each must show what the fault tests check: no panic, no call past its timeout (plus
//! slack), no acknowledged write lost or changed and no destroyed session back (but for
//! the failover under the default durability, above), counters equal to their acknowledged
//! increments, the service resuming by itself, and a linearizable history of the calls on
//! each session (owner-wide calls span nodes on a Cluster, without one instant, as the
//! crate docs say, so they are not watched). Each scenario prints one line: lost writes,
//! destroyed sessions back, calls past their timeout, how long recovery took.
//!
//! Needs a Docker daemon and the image `$SESSION_STORES_REDIS_IMAGE` (default `redis:7.0`,
//! pulled when missing); without them the tests skip loudly (a failure when `CI` is set).
//! `FAULT_SECONDS` sets how long the partition lasts (default 3, as in faults.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::docker::{self, RedisCluster, Role};
use integration_tests::linearizable::Partitions;
use integration_tests::workload::{CALL_TIMEOUT, Progress, Workload};
use session_core::conformance::{note, skip};
use session_core::{SessionId, StoreOptions};
use session_redis::{Client, Durability, RedisStore};

/// The node a fault hits: a master (nodes 0 to 2 start as the masters), not the first seed,
/// so a client that only ever talks to its first seed would be caught too.
const HIT: usize = 1;

/// Where the resharding moves slots to (from [`HIT`]).
const RESHARD_TO: usize = 2;

/// How many slots the resharding moves: a twentieth of them, so some of the workload's keys
/// (spread over every slot) move, in a few seconds.
const RESHARD_SLOTS: usize = 800;

/// How long after the fault ends the workload must be making progress again: the cluster
/// clears a master's failure only after twice the node timeout, then the clients
/// reconnect.
const RESUME_WITHIN: Duration = Duration::from_secs(20);

/// How long a killed master's replica may take to be promoted, and the restarted master to
/// rejoin as a synced replica: a few node timeouts on a busy machine.
const FAILOVER_WITHIN: Duration = Duration::from_secs(15);

/// What happens to the cluster while the workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Master [`HIT`] cut off the network for `FAULT_SECONDS`, then healed.
    Partition,
    /// Master [`HIT`] killed; its replica promoted; it is started again.
    Failover,
    /// [`RESHARD_SLOTS`] slots moved from master [`HIT`] to master [`RESHARD_TO`].
    Reshard,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::Partition => "with a master cut off",
            Fault::Failover => "with a master killed and failed over",
            Fault::Reshard => "resharding",
        }
    }

    /// The nodes' `cluster-node-timeout`. A partition outlasts it, so the cluster notices
    /// the node gone; a failover starts after it, so it is short; a resharding should see
    /// no failure at all, so it is long enough for a busy machine.
    fn node_timeout(self) -> Duration {
        match self {
            Fault::Partition => Duration::from_millis(1500),
            Fault::Failover => Duration::from_millis(1000),
            Fault::Reshard => Duration::from_secs(5),
        }
    }

    fn replicas(self) -> usize {
        match self {
            Fault::Failover => 1,
            Fault::Partition | Fault::Reshard => 0,
        }
    }
}

/// What the fault's schedule saw, for the report line; times from the fault's start.
#[derive(Debug, Default)]
struct Observed {
    /// The workload made progress again (20 more successful calls) this long after the
    /// fault started (partition: after the heal; failover: after the kill).
    resumed: Option<Duration>,
    /// Failover: the replica reported itself master this long after the kill.
    promoted: Option<Duration>,
    /// Failover: the restarted master was a synced replica this long after its restart.
    rejoined: Option<Duration>,
    /// Resharding: how long `redis-cli --cluster reshard` took, and the keys it migrated.
    resharded: Option<(Duration, usize)>,
}

fn fault_duration() -> Duration {
    let seconds = std::env::var("FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(seconds)
}

/// Runs a blocking `docker` call without stalling the workload's tasks on this worker.
fn blocking<T>(call: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(call)
}

/// Every scenario: a cluster of its own, the workload on a store of `client` with
/// `durability`, `fault` injected a second in, then the checks.
async fn scenario(client: Client, fault: Fault, durability: Durability) {
    let started = Instant::now();
    let test = format!(
        "a Redis Cluster on {client:?} ({durability:?}) {}",
        fault.describe()
    );
    let image = docker::redis_image();
    if let Err(skipped) = docker::available(&image) {
        return skip(&test, &skipped.0);
    }
    let cluster = blocking(|| {
        RedisCluster::start_with_replicas(&image, fault.node_timeout(), fault.replicas())
    })
    .unwrap_or_else(|err| panic!("{test}: starting the cluster: {err}"));
    let replica = (fault == Fault::Failover).then(|| {
        // Promotable only once synced: `--cluster create` returns before that.
        let replica = blocking(|| cluster.replica_of(HIT, 0))
            .unwrap_or_else(|err| panic!("{test}: finding node {HIT}'s replica: {err}"));
        blocking(|| cluster.wait_replica_of(replica, HIT, FAILOVER_WITHIN))
            .unwrap_or_else(|err| panic!("{test}: the replica never synced: {err}"));
        blocking(|| cluster.wait_replicating(FAILOVER_WITHIN))
            .unwrap_or_else(|err| panic!("{test}: the replicas confirm no writes: {err}"));
        replica
    });
    let slots_before = (fault == Fault::Reshard).then(|| slots(&cluster, 0, &test));

    let workload = Workload {
        // As on MongoDB: the calls on one session are checked, the owner-wide ones not.
        recorded: Some(Partitions {
            owner_calls: false,
            moves_atomic: false,
            ..Partitions::default()
        }),
        ..Workload::default()
    };
    let options = StoreOptions {
        timeout: CALL_TIMEOUT,
        ..StoreOptions::default()
    };
    let store = RedisStore::builder()
        .url(cluster.url())
        .client(client)
        .durability(durability)
        .prefix(format!("cluster:{}:", &SessionId::generate().expose()[..8]))
        .options(options)
        .connect()
        .await
        .unwrap_or_else(|err| panic!("{test}: connecting to the cluster: {err}"));

    let runner = workload.start(Arc::new(store));
    let progress = runner.progress();
    let mut observed = Observed::default();
    let ran = Instant::now();
    let report = runner
        .run(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            observed = match fault {
                Fault::Partition => partition(&cluster, &progress, &test).await,
                Fault::Failover => {
                    failover(&cluster, replica.unwrap_or(HIT), &progress, &test).await
                }
                Fault::Reshard => reshard(&cluster, &progress, &test).await,
            };
            // Checked here, not after the run: against a cluster that stays down, the run's
            // final check reads each of a thousand sessions until its timeout, for minutes.
            assert!(
                observed.resumed.is_some(),
                "{test}: the store did not resume within {RESUME_WITHIN:?}: {observed:?}\n{}",
                progress.diagnosis()
            );
        })
        .await;
    let ran = ran.elapsed();
    eprintln!("{test}: {}", report.diagnosis());

    let resurrected = report
        .lost
        .iter()
        .filter(|l| l.contains("came back"))
        .count();
    note(&format!(
        "{test}: lost acknowledged writes {} (destroyed sessions back {resurrected}), calls \
         past their timeout {}, resumed {:?}, promoted {:?}, rejoined {:?}, resharded \
         (took, keys) {:?}; workload {ran:.1?}, scenario {:.1?}; {report}",
        report.lost.len(),
        report.overran.len(),
        observed.resumed,
        observed.promoted,
        observed.rejoined,
        observed.resharded,
        started.elapsed(),
    ));
    let name = format!(
        "cluster-{fault:?}-{client:?}-{}",
        durability_name(durability)
    )
    .to_lowercase();
    let unknown = if fault == Fault::Failover && durability == Durability::Primary {
        // Redis' asynchronous replication may lose what was acknowledged in the instant
        // before the kill (the store's docs say so): what was lost is printed, everything
        // that does not depend on it is asserted.
        assert!(
            report.overran.is_empty() && report.fatal.is_empty() && report.unresolved == 0,
            "{test}:\n{}\n{report}",
            report.problems()
        );
        match report.check_linearizability(&name, "failover") {
            Ok(verdict) => {
                note(&format!(
                    "{test}: linearizability (not asserted, async replication): {verdict:?}"
                ));
                verdict.unknown
            }
            Err(reason) => {
                skip(&format!("the linearizability check of {test}"), &reason);
                0
            }
        }
    } else {
        report.assert_clean_and_linearizable(&test, &name, &format!("{fault:?}").to_lowercase())
    };
    assert!(
        report.acked_updates > 0 && report.acked_creates > 0,
        "{test}: the workload made no progress: {report}"
    );
    if fault == Fault::Reshard {
        // A resharding is no outage: the store follows `ASK` and `MOVED` and sends again
        // what was refused (`TRYAGAIN`), so no call fails but by its timeout (a busy
        // machine).
        assert!(
            report.errors.keys().all(|kind| *kind == "timeout"),
            "{test}: calls failed while slots moved: {report}"
        );
    } else {
        assert!(
            report.errors.values().sum::<u64>() + unknown > 0,
            "{test}: no call failed, so the fault never reached the store: {report}"
        );
    }
    if let Some(before) = slots_before {
        assert_moved(&cluster, &before, &observed, &test);
    }
    // Recovered means recovered for the cluster too, not only for the slots the workload hit.
    blocking(|| cluster.wait_ok(Duration::from_secs(10)))
        .unwrap_or_else(|err| panic!("{test}: the cluster did not recover: {err}"));
}

fn durability_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Primary => "primary",
        _ => "replicated",
    }
}

/// Master [`HIT`] cut off for `FAULT_SECONDS`, long enough for the others to count it as
/// failed, then back.
async fn partition(cluster: &RedisCluster, progress: &Progress, test: &str) -> Observed {
    blocking(|| cluster.partition(HIT))
        .unwrap_or_else(|err| panic!("{test}: cutting node {HIT} off: {err}"));
    tokio::time::sleep(fault_duration()).await;
    // Otherwise this is only a partial outage, which the docs above don't claim.
    let seen_from_first = blocking(|| cluster.state(0));
    assert!(
        matches!(seen_from_first.as_deref(), Ok("fail")),
        "{test}: the other masters did not notice node {HIT} gone within {:?} (node \
         timeout {:?}): cluster_state {seen_from_first:?}",
        fault_duration(),
        Fault::Partition.node_timeout()
    );
    blocking(|| cluster.heal(HIT))
        .unwrap_or_else(|err| panic!("{test}: reconnecting node {HIT}: {err}"));
    let resumed = progress.resumed(20, RESUME_WITHIN).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Observed {
        resumed,
        ..Observed::default()
    }
}

/// Master [`HIT`] killed; `replica` (its replica) must take over by itself; then the old
/// master is started again and must come back as `replica`'s replica.
async fn failover(
    cluster: &RedisCluster,
    replica: usize,
    progress: &Progress,
    test: &str,
) -> Observed {
    blocking(|| cluster.kill(HIT))
        .unwrap_or_else(|err| panic!("{test}: killing node {HIT}: {err}"));
    let killed = Instant::now();
    let mut promoted = None;
    while promoted.is_none() && killed.elapsed() < FAILOVER_WITHIN {
        if matches!(blocking(|| cluster.role(replica)), Ok(Role::Primary)) {
            promoted = Some(killed.elapsed());
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        promoted.is_some(),
        "{test}: node {replica} was not promoted within {FAILOVER_WITHIN:?} of the kill of \
         its master"
    );
    blocking(|| cluster.wait_ok_except(&[HIT], FAILOVER_WITHIN))
        .unwrap_or_else(|err| panic!("{test}: the cluster did not heal by the failover: {err}"));
    let resumed = progress
        .resumed(20, RESUME_WITHIN)
        .await
        .map(|_| killed.elapsed());

    blocking(|| cluster.restart(HIT))
        .unwrap_or_else(|err| panic!("{test}: starting node {HIT} again: {err}"));
    let restarted = Instant::now();
    blocking(|| cluster.wait_replica_of(HIT, replica, FAILOVER_WITHIN))
        .unwrap_or_else(|err| panic!("{test}: the old master did not rejoin: {err}"));
    let rejoined = Some(restarted.elapsed());
    // The cluster agrees: the old master is listed as the new one's replica.
    let new_id = blocking(|| cluster.node_id(replica))
        .unwrap_or_else(|err| panic!("{test}: node {replica}'s id: {err}"));
    let listed = blocking(|| cluster.topology(0))
        .unwrap_or_else(|err| panic!("{test}: CLUSTER NODES: {err}"))
        .into_iter()
        .find(|n| cluster.index_of(&n.address) == Some(HIT));
    assert!(
        listed
            .as_ref()
            .is_some_and(|n| n.primary.as_deref() == Some(&new_id) && n.slots == 0),
        "{test}: node 0 does not list the old master as node {replica}'s replica: {listed:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Observed {
        resumed,
        promoted,
        rejoined,
        ..Observed::default()
    }
}

/// [`RESHARD_SLOTS`] slots moved from master [`HIT`] to master [`RESHARD_TO`] while the
/// workload writes.
async fn reshard(cluster: &RedisCluster, progress: &Progress, test: &str) -> Observed {
    let started = Instant::now();
    let keys = blocking(|| cluster.reshard(HIT, RESHARD_TO, RESHARD_SLOTS))
        .unwrap_or_else(|err| panic!("{test}: resharding: {err}"));
    let took = started.elapsed();
    let resumed = progress.resumed(20, RESUME_WITHIN).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Observed {
        resumed,
        resharded: Some((took, keys)),
        ..Observed::default()
    }
}

/// How many slots each master serves, as node `asked` sees it.
fn slots(cluster: &RedisCluster, asked: usize, test: &str) -> Vec<(usize, usize)> {
    let topology = blocking(|| cluster.topology(asked))
        .unwrap_or_else(|err| panic!("{test}: CLUSTER NODES from node {asked}: {err}"));
    let mut slots: Vec<(usize, usize)> = topology
        .iter()
        .filter(|n| n.is_live_primary())
        .filter_map(|n| Some((cluster.index_of(&n.address)?, n.slots)))
        .collect();
    slots.sort_unstable();
    slots
}

/// The slots moved: every master agrees that [`HIT`] serves [`RESHARD_SLOTS`] fewer and
/// [`RESHARD_TO`] as many more, and keys of the workload moved with them.
fn assert_moved(
    cluster: &RedisCluster,
    before: &[(usize, usize)],
    observed: &Observed,
    test: &str,
) {
    let expected: Vec<(usize, usize)> = before
        .iter()
        .map(|&(node, n)| match node {
            HIT => (node, n - RESHARD_SLOTS),
            RESHARD_TO => (node, n + RESHARD_SLOTS),
            _ => (node, n),
        })
        .collect();
    for asked in 0..3 {
        let after = slots(cluster, asked, test);
        assert_eq!(
            after, expected,
            "{test}: node {asked} sees the slots as {after:?}, not moved from {before:?}"
        );
    }
    assert!(
        observed.resharded.is_some_and(|(_, keys)| keys > 0),
        "{test}: the resharding moved none of the workload's keys: {observed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred() {
    scenario(Client::Fred, Fault::Partition, Durability::Primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs() {
    scenario(Client::RedisRs, Fault::Partition, Durability::Primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_fred() {
    scenario(Client::Fred, Fault::Failover, Durability::Primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_redis_rs() {
    scenario(Client::RedisRs, Fault::Failover, Durability::Primary).await;
}

/// Every write waits for the replica, so the failover loses nothing acknowledged. Until the
/// old master is back as its replica, the promoted node's writes fail their `WAIT`, one at
/// a time, and reads of its slots go on: the store must resume within [`RESUME_WITHIN`] of
/// the promotion all the same. (It did not in 1 run of ~5 under load while each retried write
/// added another `WAIT` to that node's connection, reads queued behind them all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_fred_replicated() {
    let durability = Durability::Replicated {
        replicas: 1,
        timeout: Duration::from_millis(300),
    };
    scenario(Client::Fred, Fault::Failover, durability).await;
}

/// Fails today: fred (`max_command_attempts = 1`, so that it never writes a command twice)
/// answers a command it must send again after a redirection with "Too many failed write
/// attempts" (`ErrorKind::Unknown`, not retryable) instead of following it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_fred() {
    scenario(Client::Fred, Fault::Reshard, Durability::Primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_redis_rs() {
    scenario(Client::RedisRs, Fault::Reshard, Durability::Primary).await;
}

//! A Redis Cluster under a real network partition: three masters in Docker containers on a
//! network of their own, one of them cut off (`docker network disconnect`) and healed
//! (`docker network connect`, same address) while the concurrent workload of
//! `integration_tests::workload` runs, as tests/faults.rs does for the other stores through
//! toxiproxy. A proxy can't do this on a Cluster: its nodes announce their own addresses,
//! which clients then use directly.
//!
//! The partition outlasts the nodes' `cluster-node-timeout`, so the other masters mark the
//! cut one as failed and the whole cluster refuses commands (`CLUSTERDOWN`) until it is
//! back, and not only the slots of the node cut off go dark.
//!
//! It must show what the fault tests check: no panic, no call past its timeout (plus
//! slack), no acknowledged write lost or changed, counters equal to their acknowledged
//! increments, the service resuming by itself once the node is back, and a linearizable
//! history of the calls on each session (owner-wide calls span nodes on a Cluster, without
//! one instant, as the crate docs say, so they are not watched).
//!
//! Needs a Docker daemon and the image `$SESSION_STORES_REDIS_IMAGE` (default `redis:7.0`,
//! pulled when missing); without them the tests skip loudly (a failure when `CI` is set).
//! `FAULT_SECONDS` sets how long the partition lasts (default 3, as in faults.rs).

use std::sync::Arc;
use std::time::Duration;

use integration_tests::docker::{self, RedisCluster};
use integration_tests::linearizable::Partitions;
use integration_tests::workload::{CALL_TIMEOUT, Workload};
use session_core::conformance::skip;
use session_core::{SessionId, StoreOptions};
use session_redis::{Client, RedisStore};

/// Shorter than the partition, so the cluster notices the node is gone.
const NODE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Which master is cut off: not the first seed, so a client that only ever talks to its
/// first seed would be caught too.
const CUT: usize = 1;

/// How long after the heal the workload must be making progress again: the cluster
/// clears a master's failure only after twice the node timeout, then the clients
/// reconnect.
const RESUME_WITHIN: Duration = Duration::from_secs(20);

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

async fn scenario(client: Client) {
    let test = format!("a Redis Cluster on {client:?} with a master cut off");
    let image = docker::redis_image();
    if let Err(skipped) = docker::available(&image) {
        return skip(&test, &skipped.0);
    }
    let cluster = blocking(|| RedisCluster::start(&image, NODE_TIMEOUT))
        .unwrap_or_else(|err| panic!("{test}: starting the cluster: {err}"));

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
        .prefix(format!(
            "partition:{}:",
            &SessionId::generate().expose()[..8]
        ))
        .options(options)
        .connect()
        .await
        .unwrap_or_else(|err| panic!("{test}: connecting to the cluster: {err}"));

    let runner = workload.start(Arc::new(store));
    let progress = runner.progress();
    let mut resumed = None;
    let report = runner
        .run(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            blocking(|| cluster.partition(CUT))
                .unwrap_or_else(|err| panic!("{test}: cutting node {CUT} off: {err}"));
            tokio::time::sleep(fault_duration()).await;
            // Otherwise this is only a partial outage, which the docs above don't claim.
            let seen_from_first = blocking(|| cluster.state(0));
            assert!(
                matches!(seen_from_first.as_deref(), Ok("fail")),
                "{test}: the other masters did not notice node {CUT} gone within \
                 {:?} (node timeout {NODE_TIMEOUT:?}): cluster_state {seen_from_first:?}",
                fault_duration()
            );
            blocking(|| cluster.heal(CUT))
                .unwrap_or_else(|err| panic!("{test}: reconnecting node {CUT}: {err}"));
            resumed = progress.resumed(20, RESUME_WITHIN).await;
            // Checked here, not after the run: against a cluster that stays down, the run's
            // final check reads each of a thousand sessions until its timeout, for minutes.
            assert!(
                resumed.is_some(),
                "{test}: the store did not resume within {RESUME_WITHIN:?} of the node \
                 coming back"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;

    eprintln!("{test}: resumed after {resumed:?}; {report}");
    let name = format!("cluster-partition-{client:?}").to_lowercase();
    let unknown = report.assert_clean_and_linearizable(&test, &name, "partition");
    assert!(
        report.acked_updates > 0 && report.acked_creates > 0,
        "{test}: the workload made no progress: {report}"
    );
    assert!(
        report.errors.values().sum::<u64>() + unknown > 0,
        "{test}: no call failed, so the partition never reached the store: {report}"
    );
    // Healed means healed for the cluster too, not only for the slots the workload hit.
    blocking(|| cluster.wait_ok(Duration::from_secs(10)))
        .unwrap_or_else(|err| panic!("{test}: the cluster did not recover: {err}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred() {
    scenario(Client::Fred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs() {
    scenario(Client::RedisRs).await;
}

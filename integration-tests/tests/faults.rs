//! Network faults under load: toxiproxy between each network store and its server, and the
//! concurrent workload of `integration_tests::workload` running through each fault.
//!
//! Each scenario: the workload runs healthy for a moment, the fault is injected for a few
//! seconds, then lifted. It must show no panic, no call past its timeout (plus scheduling
//! slack), no acknowledged write lost or changed, counters equal to their acknowledged
//! increments, and the service resuming by itself once the fault is gone.
//!
//! `FAULT_SECONDS` sets how long each fault lasts (default 2, the CI version: twice the
//! workload's 1 s call timeout; in a run of all 25 scenarios at 2 s every fault made at least
//! 4 calls fail, while at 0.05 s some passed unseen and failed the test).
//! Redis Cluster is not proxied: its nodes announce their own addresses, which clients
//! then use directly, so a proxy in front of one node would be bypassed.

use std::time::Duration;

use integration_tests::targets::{Target, host_port, with_host_port};
use integration_tests::toxiproxy::{Fault, Toxiproxy};
use integration_tests::workload::{CALL_TIMEOUT, Workload};
use integration_tests::{Skip, server_url};
use session_core::StoreOptions;
use session_core::conformance::skip;

fn fault_duration() -> Duration {
    let seconds = std::env::var("FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(seconds)
}

async fn scenario(target: Target, fault: Fault) {
    let test = format!("{} under {fault:?}", target.name());
    let (toxiproxy, url) = match Toxiproxy::from_env()
        .and_then(|t| server_url(target.backend()).map(|url| (t, url)))
    {
        Ok(found) => found,
        Err(Skip(reason)) => return skip(&test, &reason),
    };
    let name = format!("{}-{fault:?}", target.name()).to_lowercase();
    let proxy = toxiproxy
        .proxy(&name, host_port(&url))
        .await
        .unwrap_or_else(|err| panic!("{test}: {err}"));
    let workload = Workload {
        recorded: Some(target.partitions()),
        ..Workload::default()
    };
    let options = StoreOptions {
        timeout: CALL_TIMEOUT,
        ..StoreOptions::default()
    };
    let store = target
        .connect(&with_host_port(&url, proxy.listen()), options)
        .await
        .unwrap_or_else(|err| panic!("{test}: connecting through the proxy: {err}"));

    let runner = workload.start(store);
    let progress = runner.progress();
    let mut resumed = None;
    let report = runner
        .run(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            proxy.inject(fault).await.unwrap();
            tokio::time::sleep(fault_duration()).await;
            proxy.lift(fault).await.unwrap();
            resumed = progress.resumed(20, Duration::from_secs(20)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
    proxy.delete().await.ok();

    eprintln!("{test}: resumed after {resumed:?}; {report}");
    let name = format!("{}-{fault:?}", target.name()).to_lowercase();
    let unknown = report.assert_clean_and_linearizable(&test, &name, &format!("{fault:?}"));
    assert!(
        resumed.is_some(),
        "{test}: the store did not resume within 20 s of the fault being lifted"
    );
    assert!(
        report.acked_updates > 0 && report.acked_creates > 0,
        "{test}: the workload made no progress: {report}"
    );
    // A latency spike need not fail anything; on MongoDB the replies a 16 KiB cut lands in
    // are nearly always reads (1 KiB documents, against tens of bytes for a write's reply),
    // which the driver retries by itself. (tests/lost_replies.rs loses a write's reply there.)
    let may_pass_unseen =
        fault == Fault::LatencySpike || (fault == Fault::LostReplies && target == Target::Mongo);
    if !may_pass_unseen {
        assert!(
            report.errors.values().sum::<u64>() + unknown > 0,
            "{test}: no call failed, so the fault never reached the store: {report}"
        );
    }
}

macro_rules! fault_tests {
    ($($module:ident => $target:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn latency_spike() {
                scenario($target, Fault::LatencySpike).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn connection_reset() {
                scenario($target, Fault::ConnectionReset).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unreachable() {
                scenario($target, Fault::Unreachable).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn half_open() {
                scenario($target, Fault::HalfOpen).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lost_replies() {
                scenario($target, Fault::LostReplies).await;
            }
        }
    )*};
}

fault_tests! {
    redis_fred => Target::RedisFred,
    redis_rs => Target::RedisRs,
    postgres => Target::Postgres,
    mongo => Target::Mongo,
    mysql => Target::Mysql,
}

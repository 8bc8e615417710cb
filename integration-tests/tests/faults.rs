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

/// Failover on Sentinel under load: a set of our own (`RedisSentinelSet`; the shared one
/// of `scripts/services` is never failed over), the workload on a store connected through
/// its sentinels. After 1 s replication to the replica is cut, the workload runs on for a
/// moment (writes the primary acknowledges now exist only there), the primary is killed
/// with SIGKILL, the sentinels promote the replica, the old primary comes back as the new
/// one's replica (its first sync discards the writes only it had), and the workload runs
/// on. The sentinels make that one failover and no other (see `RedisSentinelSet`).
///
/// With the default durability (`Durability::Primary`) the writes acknowledged in the
/// window are lost, and the test asserts it sees them (which proves it can see the loss
/// window) besides no call past its timeout and the store resuming by itself. With
/// `Durability::Replicated` no acknowledged write may be lost and the history must be
/// linearizable; the writes made while replication is cut fail with a retryable error, and
/// so do all writes after the failover until the old primary is a replica again (the new
/// primary has no other), so that scenario waits for it (about 3.5 s after the kill) and
/// then for the store to resume; each scenario takes about 6 s.
///
/// Each prints one line (`NOTE`): acknowledged writes lost, resurrections (destroyed
/// sessions back), calls past their timeout, the failovers made, the failover's and the
/// store's recovery time.
mod sentinel_failover {
    use std::sync::Arc;
    use std::time::Instant;

    use integration_tests::linearizable::Partitions;
    use integration_tests::servers::{RedisSentinelSet, redis_server_version};
    use session_core::conformance::note;
    use session_redis::{Client, Durability, RedisStore};

    use super::*;

    /// How long writes are acknowledged by the primary alone before it is killed.
    const WINDOW: Duration = Duration::from_millis(500);

    async fn failover(client: Client, durability: Durability) {
        let setting = match durability {
            Durability::Primary => "primary",
            _ => "replicated",
        };
        let name = format!("sentinel-failover-{client:?}-{setting}").to_lowercase();
        let test = format!("{name} (Sentinel failover under load, {durability:?})");
        let toxiproxy = match Toxiproxy::from_env() {
            Ok(toxiproxy) => toxiproxy,
            Err(Skip(reason)) => return skip(&test, &reason),
        };
        if let Err(reason) = redis_server_version() {
            return skip(&test, &reason);
        }
        let starting = Instant::now();
        let mut set = RedisSentinelSet::start(&toxiproxy, &name)
            .await
            .unwrap_or_else(|err| panic!("{test}: starting the set: {err}"));
        let start_up = starting.elapsed();
        let options = StoreOptions {
            timeout: CALL_TIMEOUT,
            ..StoreOptions::default()
        };
        let store = RedisStore::builder()
            .url(set.url())
            .prefix(format!("{}:", integration_tests::unique_name("failover")))
            .options(options)
            .client(client)
            .durability(durability)
            .connect()
            .await
            .unwrap_or_else(|err| panic!("{test}: connecting through the sentinels: {err}"));
        let workload = Workload {
            // One Redis primary: owner-wide calls and moves are atomic.
            recorded: Some(Partitions::default()),
            ..Workload::default()
        };
        let store: Arc<dyn session_core::SessionStore> = Arc::new(store);
        let runner = workload.start(store);
        let progress = runner.progress();
        let mut failed_over = Err(String::from("the schedule did not get there"));
        let mut recovered = None;
        let mut rejoined = None;
        let mut resumed = None;
        // The processes' logs, when something went wrong (they go with the set).
        let mut logs = None;
        let started = Instant::now();
        let report = runner
            .run(async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                set.hold_replication().await.unwrap();
                tokio::time::sleep(WINDOW).await;
                set.kill_primary().await.unwrap();
                let steps = async {
                    failed_over = set.wait_for_failover(Duration::from_secs(20)).await;
                    set.restart_old_primary().await.unwrap();
                    if durability != Durability::Primary {
                        // The new primary has no replica until the old one, restarted as
                        // its replica, has synced: no write succeeds.
                        rejoined = Some(set.wait_for_rejoin(Duration::from_secs(20)).await);
                        resumed = progress.resumed(20, Duration::from_secs(10)).await;
                        if resumed.is_none() {
                            logs = Some(set.log_tails());
                        }
                    }
                    // Primary: the old primary is back (as a primary) for this long, and a
                    // client that found it would write there; replicated: progress was seen.
                    let run_on = match durability {
                        Durability::Primary => 1000,
                        _ => 500,
                    };
                    tokio::time::sleep(Duration::from_millis(run_on)).await;
                };
                ((), recovered) =
                    tokio::join!(steps, progress.resumed(20, Duration::from_secs(20)));
            })
            .await;
        let took = started.elapsed();
        let failovers = set.failovers();
        if failovers != 1 && logs.is_none() {
            logs = Some(set.log_tails());
        }
        set.stop().await.ok();
        let logs = logs.unwrap_or_default();
        eprintln!("{test}: {}", report.diagnosis());

        let (resurrected, lost): (Vec<&String>, Vec<&String>) =
            report.lost.iter().partition(|l| l.contains("came back"));
        let rejoin = match &rejoined {
            Some(Ok(after)) => format!(" rejoined={after:.1?} resumed_after_rejoin={resumed:.1?}"),
            Some(Err(_)) => " rejoined=never".into(),
            None => String::new(),
        };
        note(&format!(
            "{test}: lost_acked_writes={} resurrections={} overran={} failover={} \
             failovers={failovers} recovered={recovered:.1?}{rejoin} start-up={start_up:.1?} \
             run={took:.1?}; {report}",
            lost.len(),
            resurrected.len(),
            report.overran.len(),
            failed_over
                .as_ref()
                .map_or("never".into(), |after| format!("{after:.1?}")),
        ));
        failed_over.unwrap_or_else(|err| panic!("{test}: {err}"));
        // What the checks below promise holds for the one failover scheduled; a second one
        // (Sentinel failing back) is a different scenario, which the set rules out.
        assert_eq!(
            failovers, 1,
            "{test}: the sentinels failed over {failovers} times, not once as scheduled\n{logs}"
        );
        assert!(
            report.acked_updates > 0 && report.acked_creates > 0,
            "{test}: the workload made no progress: {report}"
        );
        match durability {
            Durability::Primary => {
                assert!(
                    recovered.is_some(),
                    "{test}: the store did not resume within 20 s of the kill: {report}"
                );
                assert!(
                    report.overran.is_empty() && report.fatal.is_empty() && report.unresolved == 0,
                    "{test}:\n{}\n{report}",
                    report.problems()
                );
                assert!(
                    !lost.is_empty(),
                    "{test}: no acknowledged write was lost although the primary acknowledged \
                     writes for {WINDOW:?} with replication cut, then was failed over: the \
                     test cannot see the loss window: {report}"
                );
            }
            _ => {
                if let Some(Err(err)) = rejoined {
                    panic!("{test}: {err}");
                }
                assert!(
                    resumed.is_some(),
                    "{test}: the store did not resume within 10 s of the old primary rejoining \
                     as a replica: {report}\n{logs}"
                );
                report.assert_clean_and_linearizable(&test, &name, "sentinel failover");
            }
        }
    }

    /// A `WAIT` longer than [`WINDOW`]: no write of the window gets its answer before the
    /// kill, so the workload only ever counts writes the store acknowledged. (With a shorter
    /// one, a write whose `WAIT` timed out was applied on the primary, a read can see it and
    /// the failover then drops it: the documented limit of `Durability::Replicated`, which
    /// keeps acknowledged writes only, and which the workload, resolving a failed increment
    /// by reading, would count as a lost acknowledged write.)
    fn replicated() -> Durability {
        Durability::Replicated {
            replicas: 1,
            timeout: Duration::from_millis(800),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fred_primary_durability_loses_the_window() {
        failover(Client::Fred, Durability::Primary).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fred_replicated_durability_loses_nothing() {
        failover(Client::Fred, replicated()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_rs_primary_durability_loses_the_window() {
        failover(Client::RedisRs, Durability::Primary).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_rs_replicated_durability_loses_nothing() {
        failover(Client::RedisRs, replicated()).await;
    }
}

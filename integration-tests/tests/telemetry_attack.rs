//! Attacks on `InstrumentedStore` over real servers: a call the caller cancels after the
//! server ran it, and `modify`'s counters against the conflicts the wrapper saw. In a
//! process of its own, because the Prometheus recorder read back here is process-wide
//! (each test labels its store with a `db_system` of its own).

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::sync::OnceLock;
use std::time::Duration as StdDuration;

use integration_tests::proxy::FaultProxy;
use integration_tests::targets::{host_port, with_host_port};
use integration_tests::{Backend, Skip, server_url};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use session_core::conformance::skip;
use session_core::{Record, SessionStore, modify, now};
use session_postgres::PostgresStore;
use session_redis::RedisStore;
use session_telemetry::InstrumentedStore;
use time::Duration;

/// The process-wide recorder, installed before any store is built.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn sum(name: &str, labels: &[(&str, &str)]) -> f64 {
    prometheus()
        .render()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
            (series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().unwrap())
        })
        .sum::<f64>()
        + 0.0
}

fn session(owner: &str) -> Record {
    let mut record = Record::new(now() + Duration::hours(1));
    record.insert("cart", "a secret cart").unwrap();
    record.set_owner(Some(owner.into()));
    record
}

/// How long the slowed proxy holds each chunk: the request reaches the server after it,
/// the reply the client after twice it.
const HOLD: StdDuration = StdDuration::from_millis(300);

/// A call cancelled (its future dropped by a caller's timeout) after the server ran it and
/// before its reply came: the store changed, the call was made, so the duration histogram
/// must have its sample (the promise "metrics equal the calls made"; an undercount here
/// drops exactly the slow calls a latency metric is for).
async fn cancelled_after_the_server_ran_it<S: SessionStore>(
    store: InstrumentedStore<S>,
    proxy: &FaultProxy,
    direct: &dyn SessionStore,
    system: &'static str,
) {
    let mut a = session("telemetry-attack");
    store.create(&mut a).await.unwrap();
    let _events = store.subscribe();

    // Slowed down, the reply comes HOLD after the server ran the call: the caller gives up
    // as soon as the server shows the change, before the reply.
    proxy.slow_down(HOLD);
    let call = store.destroy(a.id());
    let gone = async {
        while direct.get(a.id()).await.unwrap().is_some() {
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    };
    let ran_before_reply = tokio::select! {
        result = call => { result.unwrap(); false }
        () = gone => true,
    };
    proxy.slow_down(StdDuration::ZERO);
    assert!(
        ran_before_reply,
        "{system}: the reply came first; no cancellation to test"
    );
    assert!(direct.get(a.id()).await.unwrap().is_none());

    // The scrape is read right: the create before is there.
    let created = sum(
        "session_store_operation_duration_seconds_count",
        &[("db_system", system), ("operation", "create")],
    );
    assert_eq!(created, 1.0, "{system}: the create's sample");
    let samples = sum(
        "session_store_operation_duration_seconds_count",
        &[("db_system", system), ("operation", "destroy")],
    );
    let destroyed = sum(
        "session_store_sessions_destroyed_total",
        &[("db_system", system)],
    );
    assert_eq!(
        samples,
        1.0,
        "{system}: destroy was made once and ran on the server (the session is gone), but \
         {OP} has {samples} samples for it (sessions destroyed counter: {destroyed})",
        OP = "session_store_operation_duration_seconds",
    );
}

#[tokio::test]
async fn a_cancelled_redis_call_that_ran_is_still_counted() {
    prometheus();
    let url = match server_url(Backend::Redis) {
        Ok(url) => url,
        Err(Skip(reason)) => return skip("telemetry attack on Redis", &reason),
    };
    let proxy = FaultProxy::start(host_port(&url)).await.unwrap();
    let inner = RedisStore::from_url(&with_host_port(&url, proxy.listen()))
        .await
        .unwrap();
    let direct = RedisStore::from_url(&url).await.unwrap();
    let store = InstrumentedStore::builder(inner)
        .system("redis-cancel")
        .build();
    cancelled_after_the_server_ran_it(store, &proxy, &direct, "redis-cancel").await;
}

#[tokio::test]
async fn a_cancelled_postgres_call_that_ran_is_still_counted() {
    prometheus();
    let url = match server_url(Backend::Postgres) {
        Ok(url) => url,
        Err(Skip(reason)) => return skip("telemetry attack on Postgres", &reason),
    };
    let proxy = FaultProxy::start(host_port(&url)).await.unwrap();
    let inner = PostgresStore::builder()
        .connect(&with_host_port(&url, proxy.listen()))
        .await
        .unwrap();
    inner.migrate().await.unwrap();
    let direct = PostgresStore::builder().connect(&url).await.unwrap();
    let store = InstrumentedStore::builder(inner)
        .system("postgresql-cancel")
        .build();
    cancelled_after_the_server_ran_it(store, &proxy, &direct, "postgresql-cancel").await;
}

/// Every lost compare-and-swap of `modify` is either read again after or given up on:
/// with 8 writers racing on one Redis session through the wrapper, the wrapper's update
/// conflicts equal `modify`'s retries plus give-ups, and every writer that didn't give up
/// left its change.
#[tokio::test]
async fn modify_counts_match_the_conflicts_the_wrapper_saw_on_redis() {
    prometheus();
    let url = match server_url(Backend::Redis) {
        Ok(url) => url,
        Err(Skip(reason)) => return skip("telemetry attack on Redis", &reason),
    };
    let store = InstrumentedStore::builder(RedisStore::from_url(&url).await.unwrap())
        .system("redis-modify")
        .build();
    let mut record = session("modify-race");
    record.insert("n", 0).unwrap();
    store.create(&mut record).await.unwrap();
    let id = record.id().clone();
    let writers = (0..8).map(|_| {
        modify(&store, &id, 3, |r| {
            let n: i64 = r.get("n").unwrap().unwrap();
            r.insert("n", n + 1).unwrap();
        })
    });
    let results = futures_join_all(writers).await;
    let done = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    let gave_up = results
        .iter()
        .filter(|r| r.as_ref().is_err_and(session_core::Error::is_conflict))
        .count();
    assert_eq!(done + gave_up, 8, "{results:?}");
    let n: i64 = store
        .get(&id)
        .await
        .unwrap()
        .unwrap()
        .get("n")
        .unwrap()
        .unwrap();
    assert_eq!(n, done as i64);
    let conflicts = sum(
        "session_store_conflicts_total",
        &[("db_system", "redis-modify"), ("operation", "update")],
    );
    let retries = sum(session_core::MODIFY_RETRIES, &[]);
    let give_ups = sum(session_core::MODIFY_GIVE_UPS, &[]);
    assert_eq!(give_ups, gave_up as f64);
    assert!(conflicts > 0.0, "8 writers on one session raced");
    assert_eq!(
        conflicts,
        retries + give_ups,
        "conflicts {conflicts}, retries {retries}"
    );
    store.destroy(&id).await.unwrap();
}

/// Joins futures concurrently on this task, without the futures crate.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, future) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

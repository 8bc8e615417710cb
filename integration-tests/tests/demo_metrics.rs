//! The demo's `/metrics` on every backend: after a login, a who-am-I and a logout through
//! each store, the scrape counts exactly those calls. In a process of its own, because the
//! Prometheus recorder is process-wide.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::collections::BTreeMap;

use integration_tests::{Backend, server_url};
use reqwest::StatusCode;
use serde_json::json;
use session_core::Expiry;
use session_demo::{Demo, Key, app, install_prometheus, metrics_routes, store_from_setting};
use time::Duration;

/// The settings of every backend here, each with its `db_system` label.
fn settings() -> Vec<(String, &'static str)> {
    let mut settings = vec![
        ("memory".to_owned(), "memory"),
        (integration_tests::sqlite_test_url("demo-metrics"), "sqlite"),
    ];
    for (backend, system) in [
        (Backend::Redis, "redis"),
        (Backend::Postgres, "postgresql"),
        (Backend::Mongo, "mongodb"),
        (Backend::Mysql, "mysql"),
    ] {
        match server_url(backend) {
            Ok(url) => settings.push((url, system)),
            Err(skip) => session_core::conformance::skip(
                &format!("the demo's metrics on {backend:?}"),
                &skip.0,
            ),
        }
    }
    settings
}

/// A scrape's samples: name and sorted labels to value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// The samples of a scrape.
fn samples(scrape: &str) -> Samples {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            ((name.to_owned(), labels), value.parse().unwrap())
        })
        .collect()
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .get(&(name.to_owned(), key))
        .copied()
        .unwrap_or_else(|| panic!("no {name} {labels:?} in the scrape"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_counts_each_backends_login_and_logout() {
    let prometheus = install_prometheus().unwrap();
    let settings = settings();
    for (setting, _) in &settings {
        let demo = Demo {
            store: store_from_setting(Some(setting)).await.unwrap(),
            key: Key::generate(),
            expiry: Expiry::idle(Duration::minutes(30)),
            secure_cookies: false,
            max_sessions_per_user: 3,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes = app(demo).merge(metrics_routes(prometheus.clone()));
        tokio::spawn(async move { axum::serve(listener, routes).await });
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let login = client
            .post(format!("{base}/auth"))
            .json(&json!({"username": "alice", "password": "wonderland"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::OK, "{setting}");
        let me = client.get(format!("{base}/me")).send().await.unwrap();
        assert_eq!(me.status(), StatusCode::OK, "{setting}");
        let out = client.post(format!("{base}/logout")).send().await.unwrap();
        assert_eq!(out.status(), StatusCode::NO_CONTENT, "{setting}");
    }

    let scrape = reqwest::get(format!(
        "http://{}/metrics",
        serve_metrics_only(prometheus.clone()).await
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let samples = samples(&scrape);
    for (_, system) in &settings {
        let calls = |operation, outcome| {
            sample(
                &samples,
                "session_store_operation_duration_seconds_count",
                &[
                    ("db_system", system),
                    ("operation", operation),
                    ("outcome", outcome),
                ],
            )
        };
        // Login: a new session, then the per-user limit; who-am-I: a read; logout: a destroy.
        for (operation, outcome) in [
            ("create", "ok"),
            ("limit_owner", "ok"),
            ("get", "ok"),
            ("destroy", "ok"),
        ] {
            assert_eq!(
                calls(operation, outcome),
                1.0,
                "{system} {operation}\n{scrape}"
            );
        }
        let lifecycle = |name| sample(&samples, name, &[("db_system", system)]);
        assert_eq!(
            lifecycle("session_store_sessions_created_total"),
            1.0,
            "{system}"
        );
        assert_eq!(
            lifecycle("session_store_sessions_destroyed_total"),
            1.0,
            "{system}"
        );
        let payload = sample(
            &samples,
            "session_store_payload_bytes_count",
            &[("db_system", system), ("operation", "create")],
        );
        assert_eq!(payload, 1.0, "{system}");
        let failed: Vec<_> = samples
            .keys()
            .filter(|(_, labels)| {
                labels.get("db_system").map(String::as_str) == Some(*system)
                    && labels.get("outcome").map(String::as_str) == Some("error")
            })
            .collect();
        assert!(failed.is_empty(), "{system}: {failed:?}");
    }
    // Units and help text reach the scrape.
    assert!(scrape.contains("# TYPE session_store_operation_duration_seconds histogram"));
    assert!(scrape.contains("# HELP session_store_sessions_created_total"));
}

/// Serves only `/metrics`, so the scrape is read the way Prometheus would.
async fn serve_metrics_only(
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes: axum::Router = metrics_routes(prometheus);
    tokio::spawn(async move { axum::serve(listener, routes).await });
    addr
}

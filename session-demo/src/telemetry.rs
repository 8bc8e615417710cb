//! What the demo reports: every store call through
//! [`InstrumentedStore`](session_telemetry::InstrumentedStore), its metrics served as
//! Prometheus text on `GET /metrics`.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use session_core::SessionStore;
use session_telemetry::InstrumentedStore;
use session_telemetry::metrics::{OPERATION_DURATION, PAYLOAD_SIZE};

/// Histogram buckets for store calls, in seconds: 100 us to 5 s (the default timeout).
const SECONDS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// Histogram buckets for session data, in bytes: 64 B to 1 MiB (the default limit).
const BYTES: [f64; 9] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 524288.0, 1048576.0,
];

/// Installs the process-wide Prometheus recorder, with histogram buckets for the store's
/// call durations and payload sizes; its handle renders the scrape.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(OPERATION_DURATION.into()), &SECONDS)?
        .set_buckets_for_metric(Matcher::Full(PAYLOAD_SIZE.into()), &BYTES)?
        .install_recorder()
}

/// `GET /metrics`: the scrape, in Prometheus' text format.
pub fn metrics_routes<S: Clone + Send + Sync + 'static>(handle: PrometheusHandle) -> Router<S> {
    Router::new().route("/metrics", get(move || async move { handle.render() }))
}

/// `store` wrapped so every call is reported (the payload size of one write in 16: the demo
/// installs a recorder), named by the URL it was opened from: its scheme gives `db.system.name`, its
/// host and port the spans' server fields (never the password).
pub(crate) fn instrument<S: SessionStore + 'static>(
    store: S,
    system: &'static str,
    setting: &str,
) -> Arc<dyn SessionStore> {
    let builder = InstrumentedStore::builder(store)
        .system(system)
        .payload_sizes(16);
    Arc::new(
        match server(setting) {
            Some((host, port)) => builder.server(host, port),
            None => builder,
        }
        .build(),
    )
}

/// The first host (and port) of a URL such as `redis://user:pw@host:6379/0`, or of a
/// comma-separated node list.
fn server(setting: &str) -> Option<(String, Option<u16>)> {
    let (_, rest) = setting.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    let first = hosts.split(',').next()?;
    if first.is_empty() {
        return None;
    }
    let (host, port) = match first.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']')?;
            (format!("[{host}]"), rest.strip_prefix(':'))
        }
        None => match first.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (first.to_owned(), None),
        },
    };
    Some((host, port.and_then(|port| port.parse().ok())))
}

#[cfg(test)]
mod tests {
    use super::server;

    #[test]
    fn server_fields_never_hold_a_password() {
        let at = |url| server(url).map(|(h, p)| format!("{h}|{p:?}"));
        assert_eq!(
            at("redis://user:secret@cache:6379/0").as_deref(),
            Some("cache|Some(6379)")
        );
        assert_eq!(
            at("redis+cluster://:pw@a:7001,b:7002").as_deref(),
            Some("a|Some(7001)")
        );
        assert_eq!(at("postgres://db/sessions").as_deref(), Some("db|None"));
        assert_eq!(
            at("mongodb://[::1]:27017").as_deref(),
            Some("[::1]|Some(27017)")
        );
        assert_eq!(at("sqlite::memory:"), None);
        assert_eq!(at("sqlite:///"), None);
    }
}

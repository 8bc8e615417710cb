//! Measurements: per-worker latency histograms, merged into one [`Row`] per phase.

use std::time::Duration as StdDuration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::server::ServerCost;
use crate::target::{Info, Kind};
use crate::workload::Phase;

/// What one worker (or all of them, merged) measured.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency of each successful operation, in nanoseconds.
    latency: Histogram<u64>,
    /// Failed operations.
    pub errors: u64,
    /// Touch writes made (the `touch` phase).
    pub writes: u64,
    /// The first error's text, to show why a phase failed.
    pub first_error: Option<String>,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    /// An empty tally (latencies from 1 ns to 60 s, 3 significant digits).
    pub fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("valid histogram bounds"),
            errors: 0,
            writes: 0,
            first_error: None,
        }
    }

    /// Records one operation's outcome and latency.
    pub fn record<T>(&mut self, outcome: &anyhow::Result<T>, took: StdDuration) {
        match outcome {
            Ok(_) => self
                .latency
                .saturating_record(took.as_nanos().max(1) as u64),
            Err(err) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{err:#}"));
            }
        }
    }

    /// Successful operations.
    pub fn ops(&self) -> u64 {
        self.latency.len()
    }

    /// Adds another worker's tally.
    pub fn merge(&mut self, other: &Self) {
        self.latency.add(&other.latency).ok();
        self.errors += other.errors;
        self.writes += other.writes;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// The latency at `quantile`, in microseconds.
    fn quantile_us(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1_000.0
    }
}

/// One line of the output: a target's result in one phase at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The target's name.
    pub store: String,
    /// Its backend.
    pub backend: &'static str,
    /// Ours, raw or peer.
    pub kind: Kind,
    /// The phase.
    pub phase: &'static str,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Successful operations.
    pub ops: u64,
    /// Successful operations per second.
    pub ops_per_s: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Failed operations.
    pub errors: u64,
    /// Touch writes per 1,000 requests (`touch` phase only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub touch_writes_per_1k: Option<f64>,
    /// `ops_per_s` over the raw baseline's on the same backend, phase and concurrency.
    pub vs_raw: Option<f64>,
    /// `ops_per_s` over the best peer's on the same backend, phase and concurrency.
    pub vs_best_peer: Option<f64>,
    /// Which peer that was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_peer: Option<String>,
    /// Sessions the target created for the run.
    pub sessions: usize,
    /// The create row, where the backend counts its bytes: storage per session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_session: Option<f64>,
    /// Redis: microseconds of the server's main thread per operation (`INFO cpu`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_us_per_op: Option<f64>,
    /// Redis: commands the server ran per operation (a script counts once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_commands_per_op: Option<f64>,
}

impl Row {
    /// The row for `tally`, measured over `elapsed`.
    pub fn new(
        info: &Info,
        phase: Phase,
        concurrency: usize,
        tally: &Tally,
        elapsed: StdDuration,
    ) -> Self {
        let ops = tally.ops();
        let requests = ops + tally.errors;
        Self {
            store: info.name.clone(),
            backend: info.backend,
            kind: info.kind,
            phase: phase.name(),
            concurrency,
            ops,
            ops_per_s: ops as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_us: tally.quantile_us(0.5),
            p99_us: tally.quantile_us(0.99),
            errors: tally.errors,
            touch_writes_per_1k: (phase == Phase::Touch && requests > 0)
                .then(|| tally.writes as f64 * 1_000.0 / requests as f64),
            vs_raw: None,
            vs_best_peer: None,
            best_peer: None,
            sessions: 0,
            bytes_per_session: None,
            server_us_per_op: None,
            server_commands_per_op: None,
        }
    }

    /// Records what the row's operations cost the server.
    pub fn set_server_cost(&mut self, cost: Option<ServerCost>) {
        self.server_us_per_op = cost.map(|c| c.usec_per_op);
        self.server_commands_per_op = cost.map(|c| c.commands_per_op);
    }

    fn same_cell(&self, other: &Self) -> bool {
        self.backend == other.backend
            && self.phase == other.phase
            && self.concurrency == other.concurrency
            && self.sessions == other.sessions
    }
}

/// Fills every non-raw row's ratios to the raw baseline and to the best peer of its cell.
pub fn add_ratios(rows: &mut [Row]) {
    let snapshot = rows.to_vec();
    for row in rows.iter_mut().filter(|row| row.kind != Kind::Raw) {
        let key = row.clone();
        let cell = || snapshot.iter().filter(|other| other.same_cell(&key));
        let raw = cell().find(|other| other.kind == Kind::Raw);
        row.vs_raw = raw.map(|raw| row.ops_per_s / raw.ops_per_s);
        if row.kind == Kind::Ours {
            let best = cell()
                .filter(|other| other.kind == Kind::Peer)
                .max_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
            row.vs_best_peer = best.map(|peer| row.ops_per_s / peer.ops_per_s);
            row.best_peer = best.map(|peer| peer.store.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Info;

    fn row(name: &str, kind: Kind, ops_per_s: f64) -> Row {
        let mut row = Row::new(
            &Info::new(name, "redis", kind),
            Phase::Rmw,
            64,
            &Tally::new(),
            StdDuration::from_secs(1),
        );
        row.ops_per_s = ops_per_s;
        row
    }

    #[test]
    fn ratios_compare_to_raw_and_the_best_peer_of_the_same_cell() {
        let mut rows = vec![
            row("ours", Kind::Ours, 900.0),
            row("raw", Kind::Raw, 1000.0),
            row("slow peer", Kind::Peer, 300.0),
            row("fast peer", Kind::Peer, 600.0),
        ];
        add_ratios(&mut rows);
        assert_eq!(rows[0].vs_raw, Some(0.9));
        assert_eq!(rows[0].vs_best_peer, Some(1.5));
        assert_eq!(rows[0].best_peer.as_deref(), Some("fast peer"));
        assert_eq!(rows[1].vs_raw, None);
        assert_eq!(rows[3].vs_raw, Some(0.6));
    }
}

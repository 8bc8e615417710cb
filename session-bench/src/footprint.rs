//! `--memory-footprint`: how much memory an in-process store takes to hold N sessions,
//! against the JSON bytes they hold. Each store is filled in a child process of its own, so
//! one store's freed memory never counts for another.

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use session_memory::MemoryStore;
use time::Duration;

use crate::peers::tower15::Tower;
use crate::target::{Ours, Target};
use crate::workload::{Rng, json_len, payload};

/// The stores the footprint mode measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FootprintStore {
    /// session-memory's `MemoryStore`.
    Ours,
    /// tower-sessions' `MemoryStore`.
    Tower,
}

/// What one child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Footprint {
    /// The store.
    pub store: String,
    /// Sessions stored.
    pub sessions: usize,
    /// Their data's JSON size, added up.
    pub json_bytes: u64,
    /// Resident memory after filling minus before (`VmRSS`).
    pub rss_delta_bytes: u64,
    /// Peak resident memory minus resident memory before (`VmHWM - VmRSS`).
    pub peak_rss_delta_bytes: u64,
    /// `rss_delta_bytes / json_bytes`.
    pub ratio: f64,
    /// `peak_rss_delta_bytes / json_bytes`.
    pub peak_ratio: f64,
}

/// A `/proc/self/status` field in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(field: &str) -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024)
}

/// Fills `target` with `sessions` sessions of the payload and measures.
async fn fill<T: Target>(target: T, sessions: usize) -> Result<Footprint> {
    let before = proc_status_bytes("VmRSS")?;
    let mut rng = Rng::new(42);
    let mut json_bytes = 0;
    let mut ids = Vec::with_capacity(sessions);
    for n in 0..sessions {
        let data = payload(n as u64, &mut rng);
        json_bytes += json_len(&data) as u64;
        ids.push(target.create(data, Duration::hours(1)).await?);
    }
    let after = proc_status_bytes("VmRSS")?;
    let peak = proc_status_bytes("VmHWM")?;
    // Every session must still be there (a bounded store must not have evicted any).
    for id in ids.iter().step_by(97) {
        target.get(id).await?;
    }
    let (delta, peak_delta) = (after.saturating_sub(before), peak.saturating_sub(before));
    Ok(Footprint {
        store: target.info().name,
        sessions,
        json_bytes,
        rss_delta_bytes: delta,
        peak_rss_delta_bytes: peak_delta,
        ratio: delta as f64 / json_bytes as f64,
        peak_ratio: peak_delta as f64 / json_bytes as f64,
    })
}

/// The child's work: fills `store` and prints the [`Footprint`] as one JSON line.
pub async fn child(store: FootprintStore, sessions: usize) -> Result<()> {
    let footprint = match store {
        FootprintStore::Ours => {
            let store = MemoryStore::new();
            fill(
                Ours::new(store, "session-memory MemoryStore", "memory"),
                sessions,
            )
            .await?
        }
        FootprintStore::Tower => {
            let store = tower_sessions_memory_store::MemoryStore::default();
            fill(
                Tower::new(store, crate::backends::TOWER_MEMORY, "memory"),
                sessions,
            )
            .await?
        }
    };
    println!("{}", serde_json::to_string(&footprint)?);
    Ok(())
}

/// Runs one child per store and returns what they measured.
pub fn measure(sessions: usize) -> Result<Vec<Footprint>> {
    let exe = std::env::current_exe()?;
    [FootprintStore::Ours, FootprintStore::Tower]
        .into_iter()
        .map(|store| {
            let name = clap::ValueEnum::to_possible_value(&store)
                .map(|value| value.get_name().to_owned())
                .unwrap_or_default();
            let output = Command::new(&exe)
                .args(["--footprint-child", &name])
                .args(["--footprint-sessions", &sessions.to_string()])
                .output()?;
            if !output.status.success() {
                bail!(
                    "footprint child for {name} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(serde_json::from_slice(&output.stdout)?)
        })
        .collect()
}

/// The readable lines of the footprint results.
pub fn table(footprints: &[Footprint]) -> String {
    let mut out = String::from(
        "store                        sessions   JSON MiB  RSS delta MiB  peak MiB  RSS/JSON  peak/JSON\n",
    );
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    for f in footprints {
        out.push_str(&format!(
            "{:<28} {:>8} {:>10.1} {:>14.1} {:>9.1} {:>8.2}x {:>9.2}x\n",
            f.store,
            f.sessions,
            mib(f.json_bytes),
            mib(f.rss_delta_bytes),
            mib(f.peak_rss_delta_bytes),
            f.ratio,
            f.peak_ratio
        ));
    }
    out
}

//! Output: JSON lines, the readable table, and the issue's targets checked against the rows.

use std::fmt::Write as _;
use std::io::Write;

use crate::stats::Row;
use crate::target::Kind;
use crate::workload::Phase;

/// Writes one JSON object per row.
pub fn write_json_lines(out: &mut dyn Write, rows: &[Row]) -> std::io::Result<()> {
    for row in rows {
        serde_json::to_writer(&mut *out, row)?;
        writeln!(out)?;
    }
    Ok(())
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
}

/// The readable table of every row.
pub fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|row| row.store.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<width$} {:<7} {:>4} {:>10} {:>9} {:>9} {:>6} {:>7} {:>7} {:>8}",
        "backend",
        "store",
        "phase",
        "conc",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "errors",
        "xraw",
        "xpeer",
        "touch/1k"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<8} {:<width$} {:<7} {:>4} {:>10.0} {:>9.1} {:>9.1} {:>6} {:>7} {:>7} {:>8}",
            row.backend,
            row.store,
            row.phase,
            row.concurrency,
            row.ops_per_s,
            row.p50_us,
            row.p99_us,
            row.errors,
            ratio(row.vs_raw),
            ratio(row.vs_best_peer),
            row.touch_writes_per_1k
                .map_or_else(|| "-".into(), |w| format!("{w:.2}")),
        );
    }
    out
}

fn find<'a>(rows: &'a [Row], store: &str, phase: Phase, concurrency: usize) -> Option<&'a Row> {
    rows.iter().find(|row| {
        row.store == store && row.phase == phase.name() && row.concurrency == concurrency
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met   " } else { "MISSED" }
}

/// The targets, one line each, judged from `rows` (`top`: the highest concurrency;
/// `prometheus`: whether a metrics recorder was installed).
pub fn targets(rows: &[Row], top: usize, prometheus: bool) -> String {
    let mut out = telemetry_overhead(rows, top, prometheus);
    let ours = rows.iter().filter(|row| {
        row.kind == Kind::Ours && row.phase == Phase::Rmw.name() && row.concurrency == top
    });
    for rmw in ours {
        let name = format!("{} [{}]", rmw.store, rmw.backend);
        if let Some(r) = rmw.vs_raw {
            let _ = writeln!(
                out,
                "{} rmw@{top} >= 0.9x raw: {r:.2}x  {name}",
                verdict(r >= 0.9)
            );
        }
        if let (Some(r), Some(peer)) = (rmw.vs_best_peer, &rmw.best_peer) {
            let _ = writeln!(
                out,
                "{} rmw@{top} >= 1.0x best peer ({peer}): {r:.2}x  {name}",
                verdict(r >= 1.0)
            );
        }
        if let Some(cas) = find(rows, &rmw.store, Phase::RmwCas, top) {
            let slower = 1.0 - cas.ops_per_s / rmw.ops_per_s;
            let _ = writeln!(
                out,
                "{} rmw-cas <= 15% slower than rmw: {:.1}% slower  {name}",
                verdict(slower <= 0.15),
                slower * 100.0
            );
        }
        if let Some(w) =
            find(rows, &rmw.store, Phase::Touch, top).and_then(|t| t.touch_writes_per_1k)
        {
            let _ = writeln!(
                out,
                "{} lazy touch <= 1 write per 1,000 reads: {w:.2}  {name}",
                verdict(w <= 1.0)
            );
        }
        if rmw.backend == "memory"
            && let Some(tower) = rows.iter().find(|row| {
                row.store == crate::backends::TOWER_MEMORY
                    && row.phase == rmw.phase
                    && row.concurrency == top
            })
        {
            let r = rmw.ops_per_s / tower.ops_per_s;
            let _ = writeln!(
                out,
                "{} rmw@{top} >= 1.5x tower-sessions MemoryStore: {r:.2}x  {name}",
                verdict(r >= 1.5)
            );
        }
    }
    out
}

/// The telemetry wrapper's cost on rmw at `top` against the bare store it wraps: under 3%
/// with a recorder installed, under 1% without.
fn telemetry_overhead(rows: &[Row], top: usize, prometheus: bool) -> String {
    use crate::backends::{INSTRUMENTED_MEMORY, INSTRUMENTED_REDIS};
    let mut out = String::new();
    let (limit, with) = if prometheus {
        (0.03, "the Prometheus recorder")
    } else {
        (0.01, "no recorder")
    };
    for (wrapped, bare) in [
        (INSTRUMENTED_REDIS, "session-redis (fred)"),
        (INSTRUMENTED_MEMORY, "session-memory MemoryStore"),
    ] {
        if let (Some(w), Some(b)) = (
            find(rows, wrapped, Phase::Rmw, top),
            find(rows, bare, Phase::Rmw, top),
        ) {
            let cost = 1.0 - w.ops_per_s / b.ops_per_s;
            let _ = writeln!(
                out,
                "{} telemetry costs < {:.0}% of rmw@{top} with {with}: {:.1}%  {wrapped}",
                verdict(cost < limit),
                limit * 100.0,
                cost * 100.0
            );
        }
    }
    out
}

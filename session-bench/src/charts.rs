//! `--charts DIR`: the run's rows as SVG pictures, so a reader sees the gaps the tables
//! hold without reading every figure: per backend, ops/s of each operation for every target
//! at the top concurrency (`bars-<backend>.svg`); with `--scale`, throughput and storage
//! per session against the number of sessions, one line per store (`scale.svg`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use plotters::prelude::*;

use crate::stats::Row;
use crate::target::Kind;
use crate::workload::Phase;

/// Our stores' colours (blues and greens), the raw baseline's (dark grey) and the peers'
/// (oranges and reds): a bar's kind reads from its colour alone.
const OURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(23, 190, 207),
    RGBColor(148, 103, 189),
    RGBColor(106, 61, 154),
    RGBColor(51, 160, 140),
];
const RAW: RGBColor = RGBColor(60, 60, 60);
const PEERS: [RGBColor; 3] = [
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(227, 119, 194),
];

/// The order phases appear in, left to right.
const PHASES: [Phase; 5] = [
    Phase::Create,
    Phase::Rmw,
    Phase::RmwCas,
    Phase::Get,
    Phase::Touch,
];

/// Writes every chart `rows` allow into `dir` (created if missing); returns the files
/// written. `top`: the highest concurrency, the one the bars show.
pub fn write(dir: &Path, rows: &[Row], top: usize) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
    let mut written = Vec::new();
    let backends: BTreeSet<&str> = rows.iter().map(|row| row.backend).collect();
    let counts: BTreeSet<usize> = rows.iter().map(|row| row.sessions).collect();
    // Bars of the largest run: with --scale, the one that counts most.
    let largest = counts.last().copied().unwrap_or(0);
    for backend in backends {
        let rows: Vec<&Row> = rows
            .iter()
            .filter(|row| row.backend == backend && row.sessions == largest)
            .collect();
        let path = dir.join(format!("bars-{backend}.svg"));
        if bars(&path, backend, &rows, top)? {
            written.push(path);
        }
    }
    if counts.len() > 1 {
        let path = dir.join("scale.svg");
        scale(&path, rows, top)?;
        written.push(path);
    }
    Ok(written)
}

/// The colour of each target, in the order they ran: ours, raw, peers apart.
fn colours<'a>(targets: &[(&'a str, Kind)]) -> Vec<(&'a str, Kind, RGBColor)> {
    let (mut ours, mut peers) = (0, 0);
    targets
        .iter()
        .map(|&(name, kind)| {
            let colour = match kind {
                Kind::Ours => {
                    ours += 1;
                    OURS[(ours - 1) % OURS.len()]
                }
                Kind::Raw => RAW,
                Kind::Peer => {
                    peers += 1;
                    PEERS[(peers - 1) % PEERS.len()]
                }
            };
            (name, kind, colour)
        })
        .collect()
}

fn legend_name(name: &str, kind: Kind) -> String {
    match kind {
        Kind::Ours => name.to_owned(),
        Kind::Raw => format!("{name} [baseline]"),
        Kind::Peer => format!("{name} [peer]"),
    }
}

/// Plotting errors carry the backend's error type, which is not `'static`-friendly for
/// `anyhow`: keep their text.
fn plotted<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T> {
    result.map_err(|err| anyhow!("drawing a chart: {err}"))
}

/// One backend's grouped bars: a group per phase, a bar per target, at `top` (`create`
/// runs there too). Returns false, writing nothing, when there is nothing to draw.
fn bars(path: &Path, backend: &str, rows: &[&Row], top: usize) -> Result<bool> {
    let phases: Vec<Phase> = PHASES
        .into_iter()
        .filter(|phase| {
            rows.iter()
                .any(|row| row.phase == phase.name() && row.concurrency == top)
        })
        .collect();
    let mut targets: Vec<(&str, Kind)> = Vec::new();
    for row in rows {
        if !targets.iter().any(|(name, _)| *name == row.store) {
            targets.push((row.store.as_str(), row.kind));
        }
    }
    let max = rows
        .iter()
        .filter(|row| row.concurrency == top)
        .map(|row| row.ops_per_s)
        .fold(0.0, f64::max);
    if phases.is_empty() || targets.is_empty() || max <= 0.0 {
        return Ok(false);
    }
    let sessions = rows.first().map_or(0, |row| row.sessions);
    // Room under the bars for the legend, one line per target.
    let height = 420 + 20 * targets.len() as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    plotted(root.fill(&WHITE))?;
    let (plot, legend) = root.split_vertically(400);
    let groups = phases.len() as f64;
    let mut chart = plotted(
        ChartBuilder::on(&plot)
            .caption(
                format!(
                    "{backend}: ops/s per operation at concurrency {top} ({sessions} sessions)"
                ),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..groups, 0.0..max * 1.08),
    )?;
    plotted(
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_desc("ops/s")
            .draw(),
    )?;
    // The phase names under their groups, where a numeric axis would put its ticks.
    for (group, phase) in phases.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(group as f64 + 0.5, 0.0));
        let style = TextStyle::from(("sans-serif", 15).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ),
        );
        plotted(root.draw(&Text::new(phase.name(), (x, y + 6), style)))?;
    }
    let width = 0.8 / targets.len() as f64;
    let coloured = colours(&targets);
    for (slot, (name, _, colour)) in coloured.iter().enumerate() {
        let bars = phases.iter().enumerate().filter_map(|(group, phase)| {
            let row = rows.iter().find(|row| {
                row.store == *name && row.phase == phase.name() && row.concurrency == top
            })?;
            let left = group as f64 + 0.1 + slot as f64 * width;
            Some(Rectangle::new(
                [(left, 0.0), (left + width * 0.9, row.ops_per_s)],
                colour.filled(),
            ))
        });
        plotted(chart.draw_series(bars))?;
    }
    for (line, (name, kind, colour)) in coloured.iter().enumerate() {
        let y = 5 + 20 * line as i32;
        plotted(legend.draw(&Rectangle::new([(80, y), (94, y + 12)], colour.filled())))?;
        plotted(legend.draw(&Text::new(
            legend_name(name, *kind),
            (102, y),
            ("sans-serif", 14).into_font(),
        )))?;
    }
    plotted(root.present())?;
    Ok(true)
}

/// What a panel plots of a row, when the row has it.
type Reading<'a> = &'a dyn Fn(&Row) -> Option<f64>;

/// One store's points of `value` by session count, sorted by count.
fn series(rows: &[Row], store: &str, value: impl Fn(&Row) -> Option<f64>) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = rows
        .iter()
        .filter(|row| row.store == store)
        .filter_map(|row| Some((row.sessions as f64, value(row)?)))
        .filter(|&(_, y)| y.is_finite() && y > 0.0)
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Three panels side by side, each a line per store against the session count (log
/// scale): rmw and get ops/s at `top`, and bytes per session as the backend counts them.
fn scale(path: &Path, rows: &[Row], top: usize) -> Result<()> {
    let mut targets: Vec<(&str, Kind)> = Vec::new();
    for row in rows {
        if !targets.iter().any(|(name, _)| *name == row.store) {
            targets.push((row.store.as_str(), row.kind));
        }
    }
    let coloured = colours(&targets);
    let ops = |phase: Phase| {
        move |row: &Row| {
            (row.phase == phase.name() && row.concurrency == top).then_some(row.ops_per_s)
        }
    };
    let bytes = |row: &Row| {
        (row.phase == Phase::Create.name())
            .then_some(row.bytes_per_session)
            .flatten()
    };
    let panels: [(String, &str, Reading<'_>); 3] = [
        (format!("rmw@{top} ops/s"), "ops/s", &ops(Phase::Rmw)),
        (format!("get@{top} ops/s"), "ops/s", &ops(Phase::Get)),
        ("bytes per session".into(), "bytes", &bytes),
    ];
    let (lo, hi) = rows.iter().fold((f64::MAX, 0.0f64), |(lo, hi), row| {
        let n = row.sessions as f64;
        (lo.min(n), hi.max(n))
    });
    let height = 440 + 20 * targets.len() as u32;
    let root = SVGBackend::new(path, (1440, height)).into_drawing_area();
    plotted(root.fill(&WHITE))?;
    let (plots, legend) = root.split_vertically(420);
    for (area, (title, unit, value)) in plots.split_evenly((1, 3)).iter().zip(panels) {
        let lines: Vec<(RGBColor, Vec<(f64, f64)>)> = coloured
            .iter()
            .map(|(name, _, colour)| (*colour, series(rows, name, value)))
            .collect();
        let max = lines
            .iter()
            .flat_map(|(_, points)| points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        let mut chart = plotted(
            ChartBuilder::on(area)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0.0..max.max(1.0) * 1.1),
        )?;
        plotted(
            chart
                .configure_mesh()
                .x_desc("sessions")
                .y_desc(unit)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| format!("{y:.0}"))
                .draw(),
        )?;
        for (colour, points) in lines.into_iter().filter(|(_, p)| !p.is_empty()) {
            plotted(chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2))))?;
            plotted(
                chart.draw_series(
                    points
                        .into_iter()
                        .map(|point| Circle::new(point, 3, colour.filled())),
                ),
            )?;
        }
    }
    for (line, (name, kind, colour)) in coloured.iter().enumerate() {
        let y = 5 + 20 * line as i32;
        plotted(legend.draw(&Rectangle::new([(80, y), (94, y + 12)], colour.filled())))?;
        plotted(legend.draw(&Text::new(
            format!("{} [{}]", legend_name(name, *kind), backend_of(rows, name)),
            (102, y),
            ("sans-serif", 14).into_font(),
        )))?;
    }
    plotted(root.present())?;
    Ok(())
}

fn backend_of<'a>(rows: &'a [Row], store: &str) -> &'a str {
    rows.iter()
        .find(|row| row.store == store)
        .map_or("", |row| row.backend)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::Tally;
    use crate::target::Info;

    fn row(store: &str, kind: Kind, phase: Phase, sessions: usize, ops_per_s: f64) -> Row {
        let mut row = Row::new(
            &Info::new(store, "redis", kind),
            phase,
            64,
            &Tally::new(),
            Duration::from_secs(1),
        );
        row.ops_per_s = ops_per_s;
        row.sessions = sessions;
        row.bytes_per_session = (phase == Phase::Create).then_some(1100.0);
        row
    }

    #[test]
    fn writes_a_bar_chart_per_backend_and_the_scale_chart() {
        let dir = std::env::temp_dir().join(format!("session-bench-charts-{}", std::process::id()));
        let mut rows = Vec::new();
        for sessions in [1_000, 10_000] {
            for (store, kind) in [
                ("ours", Kind::Ours),
                ("raw", Kind::Raw),
                ("peer", Kind::Peer),
            ] {
                for phase in [Phase::Create, Phase::Rmw, Phase::Get] {
                    rows.push(row(store, kind, phase, sessions, 5_000.0));
                }
            }
        }
        let written = write(&dir, &rows, 64).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["bars-redis.svg", "scale.svg"]);
        let bars = std::fs::read_to_string(&written[0]).unwrap();
        assert!(bars.contains("raw [baseline]") && bars.contains("peer [peer]"));
        // One more row at the top concurrency is one more bar; a row at another is none.
        let rects = |rows: &[Row]| {
            let path = &write(&dir, rows, 64).unwrap()[0];
            std::fs::read_to_string(path)
                .unwrap()
                .matches("<rect")
                .count()
        };
        let before = rects(&rows);
        rows.push(row("ours", Kind::Ours, Phase::Touch, 10_000, 4_000.0));
        assert_eq!(rects(&rows), before + 1);
        // A peer's touch at concurrency 1, in a phase drawn at 64: no bar.
        let mut other = row("peer", Kind::Peer, Phase::Touch, 10_000, 4_000.0);
        other.concurrency = 1;
        rows.push(other);
        assert_eq!(rects(&rows), before + 1);
        std::fs::remove_dir_all(&dir).ok();
    }
}

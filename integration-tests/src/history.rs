//! Histories of store operations, recorded as they run (who called what, when, and what
//! came back) and judged by the linearizability checker in `integration-tests/lincheck`
//! (porcupine, in Go), which knows the store's model: per owner, a map of session ids to
//! versioned values with compare-and-swap, destroy, rename and "log out everywhere".
//!
//! The file format is the checker's (see its README): one JSON object with `backend`,
//! `scenario` and `partitions`, each a `key` and its `ops` (`client`, `call`, `ret`, `op`,
//! `out`; times in microseconds from the start; `ret` and `out` null when the call failed in
//! a way that leaves its effect unknown).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

/// A history being recorded.
#[derive(Debug)]
pub struct History {
    start: Instant,
    partitions: Mutex<BTreeMap<String, Vec<Value>>>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            partitions: Mutex::default(),
        }
    }
}

/// A call in progress: [`History::call`] starts it, [`Call::done`] or [`Call::unknown`]
/// records it.
#[derive(Debug)]
pub struct Call {
    partition: String,
    client: usize,
    call: u64,
    op: Value,
}

impl History {
    /// Microseconds since the history started.
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Starts recording `op` by `client` on `partition` (just before the store is called).
    pub fn call(&self, partition: &str, client: usize, op: Value) -> Call {
        Call {
            partition: partition.to_owned(),
            client,
            call: self.now(),
            op,
        }
    }

    fn push(&self, call: Call, ret: Option<u64>, out: Option<Value>) {
        let entry = json!({
            "client": call.client, "call": call.call, "ret": ret, "op": call.op, "out": out,
        });
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(call.partition)
            .or_default()
            .push(entry);
    }

    /// How many partitions and operations were recorded.
    pub fn size(&self) -> (usize, usize) {
        let partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        (partitions.len(), partitions.values().map(Vec::len).sum())
    }

    /// Writes the history in the checker's format.
    pub fn write(&self, path: &Path, backend: &str, scenario: &str) -> std::io::Result<()> {
        let partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let partitions: Vec<Value> = partitions
            .iter()
            .map(|(key, ops)| json!({ "key": key, "ops": ops }))
            .collect();
        let file = json!({ "backend": backend, "scenario": scenario, "partitions": partitions });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec(&file)?)
    }
}

impl Call {
    /// The call returned `out` (a definite outcome).
    pub fn done(self, history: &History, out: Value) {
        let ret = history.now();
        history.push(self, Some(ret), Some(out));
    }

    /// The call failed without telling whether it took effect (a timeout, a lost reply):
    /// the checker lets it take effect at any point after its call, or never.
    pub fn unknown(self, history: &History) {
        history.push(self, None, None);
    }
}

/// What the checker said of one history file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Verdict {
    /// Partitions checked.
    pub partitions: u64,
    /// Operations checked.
    pub ops: u64,
    /// Operations whose outcome was unknown.
    pub unknown: u64,
    /// Partitions with no linearization: must be 0.
    pub anomalies: u64,
    /// Partitions the checker could not finish in time: must be 0.
    pub timed_out: u64,
    /// The keys of the anomalous partitions.
    #[serde(default)]
    pub anomalous_partitions: Vec<String>,
}

/// Where histories and the checker's visualisations of anomalies go:
/// `$SESSION_STORES_HISTORY_DIR`, else `target/histories` under the workspace.
pub fn history_dir() -> PathBuf {
    std::env::var_os("SESSION_STORES_HISTORY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("histories")
        })
}

/// The checker binary: `$SESSION_STORES_LINCHECK`, else built from `integration-tests/lincheck`
/// with Go into the cache (`go build` is a no-op when nothing changed).
pub fn checker() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SESSION_STORES_LINCHECK") {
        return Ok(PathBuf::from(path));
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("lincheck");
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let binary = Path::new(&home).join(".cache/session-stores/bin/lincheck");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&source)
        .status()
        .map_err(|err| format!("cannot run `go build` for the linearizability checker: {err}"))?;
    if !status.success() {
        return Err(format!(
            "`go build` of {} failed ({status})",
            source.display()
        ));
    }
    Ok(binary)
}

/// Runs the checker on `file`, writing visualisations of anomalies next to it.
pub fn check(file: &Path) -> Result<Verdict, String> {
    let checker = checker()?;
    let html = file.with_extension("anomalies");
    let output = Command::new(&checker)
        .arg("--html")
        .arg(&html)
        .arg(file)
        .output()
        .map_err(|err| format!("cannot run {}: {err}", checker.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let verdict: Verdict = serde_json::from_str(line).map_err(|err| {
        format!(
            "the checker's output is not a verdict ({err}); status {}, stdout {stdout}, stderr {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok(verdict)
}

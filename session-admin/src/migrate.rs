//! Copying every live session from one store to another: resumable from a checkpoint,
//! rate-limited, never overwriting a session the target already holds, verified at the end.
//!
//! Run it while every application process serves through a
//! [`MigratingStore`](session_core::MigratingStore) over the same two stores: the
//! wrapper moves sessions as they are used, this copies the rest, and both insert only
//! into a free id, so neither overwrites the other (or a tombstone).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::json;
use std::collections::HashSet;

use session_core::{
    Error, MIGRATION_COPY_WINDOW, Record, Result, ScanCursor, ScanSessions, SessionId,
    SessionStore, is_tombstone,
};

/// How a migration runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Sessions per page read from the source (default 500).
    pub batch: usize,
    /// At most this many sessions copied per second (default: no limit).
    pub rate: Option<u32>,
    /// Inserts in flight at once (default 16).
    pub concurrency: usize,
    /// Read and count only; write nothing (default off).
    pub dry_run: bool,
    /// Where the cursor is written after every page, and read from at start to continue an
    /// interrupted run (default: none, no resuming).
    pub checkpoint: Option<PathBuf>,
    /// Sessions compared field by field between the stores at the end (default 100).
    pub verify_sample: usize,
    /// What the checkpoint belongs to (e.g. the two stores' redacted URLs): a checkpoint
    /// written for another pair is refused. Default: not checked.
    pub pair: Option<String>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            rate: None,
            concurrency: 16,
            dry_run: false,
            checkpoint: None,
            verify_sample: 100,
            pair: None,
        }
    }
}

/// What a migration did (so far, when given to a progress callback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Live sessions read from the source (a session a scan returned twice counts twice).
    pub scanned: u64,
    /// Sessions written to the target.
    pub copied: u64,
    /// Sessions the target already held under their id (copied by an earlier run, moved by
    /// a `MigratingStore`, written since, or destroyed there: a tombstone), left as they are.
    pub kept: u64,
    /// Sessions that ended between the page's read and their copy (not copied).
    pub ended: u64,
    /// Stored records of the source that did not decode (not copied).
    pub corrupt: u64,
    /// Pages read.
    pub pages: u64,
    /// Whether this run continued an interrupted one (its counts included).
    pub resumed: bool,
    /// Whether the scan reached its end.
    pub complete: bool,
    /// The final check, once complete (not in a dry run).
    pub verification: Option<Verification>,
}

/// The final check of a migration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// The source's count of live sessions at the end.
    pub source_count: u64,
    /// The target's count of live sessions at the end.
    pub target_count: u64,
    /// Sessions live in the source that the target holds a tombstone of: a
    /// `MigratingStore`'s destroy in flight (it writes the tombstone, then removes the
    /// source's copy), so ended, not missing.
    pub ending: u64,
    /// Sessions compared field by field.
    pub sampled: u64,
    /// Sampled sessions the target holds at a newer version (written since the copy).
    pub newer_in_target: u64,
    /// Fingerprints of sampled sessions live in the source but missing or different (at an
    /// equal or older version) in the target.
    pub mismatched: Vec<String>,
}

impl Verification {
    /// Whether every sampled session arrived and the target holds at least as many live
    /// sessions as the source (more when sessions were created through a
    /// `MigratingStore` meanwhile; fewer means sessions are missing, also from pages an
    /// interrupted run copied, which this run did not sample).
    pub fn passed(&self) -> bool {
        self.mismatched.is_empty() && self.target_count + self.ending >= self.source_count
    }
}

/// Copies every live session of `source` into `target` (see the module docs), calling
/// `progress` after every page. Continues from `options.checkpoint` when it holds the
/// cursor of an interrupted run; a finished run's checkpoint makes this an error (delete
/// it to copy again).
pub async fn migrate(
    source: &dyn ScanSessions,
    target: &dyn ScanSessions,
    options: &MigrateOptions,
    mut progress: impl FnMut(&MigrateReport),
) -> Result<MigrateReport> {
    let (mut cursor, mut report) = match &options.checkpoint {
        Some(path) => load_checkpoint(path, options.pair.as_deref())?,
        None => (ScanCursor::start(), MigrateReport::default()),
    };
    let started = Instant::now();
    let copied_before = report.copied + report.kept;
    let mut sample: Vec<Record> = Vec::new();
    let mut seen = 0;
    loop {
        let page = source.scan(&cursor, options.batch.max(1)).await?;
        report.pages += 1;
        report.corrupt += page.corrupt;
        report.scanned += page.records.len() as u64;
        if !options.dry_run {
            let outcomes: Vec<Result<Outcome>> = stream::iter(page.records.iter())
                .map(|record| copy_one(source, target, record))
                .buffer_unordered(options.concurrency.max(1))
                .collect()
                .await;
            for outcome in outcomes {
                match outcome? {
                    Outcome::Copied => report.copied += 1,
                    Outcome::Kept => report.kept += 1,
                    Outcome::Ended => report.ended += 1,
                }
            }
            keep_sample(&mut sample, page.records, options.verify_sample, &mut seen);
        }
        match page.next {
            Some(next) => cursor = next,
            None => {
                report.complete = true;
            }
        }
        if let Some(path) = &options.checkpoint {
            save_checkpoint(path, options.pair.as_deref(), &cursor, &report)?;
        }
        progress(&report);
        if report.complete {
            break;
        }
        pace(
            options.rate,
            report.copied + report.kept - copied_before,
            started,
        )
        .await;
    }
    if !options.dry_run {
        report.verification = Some(verify(source, target, &sample).await?);
    }
    Ok(report)
}

/// What became of one session.
enum Outcome {
    Copied,
    Kept,
    Ended,
}

/// Copies the session `record` names into a free id of `target`, keeping its version. The
/// page's record is only where to look: the session is read again right before its copy,
/// so a copy is never older than one round trip (a session a `MigratingStore` wrote,
/// shortened or ended since the page was read is copied as it is now, or not at all).
async fn copy_one(
    source: &dyn ScanSessions,
    target: &dyn SessionStore,
    record: &Record,
) -> Result<Outcome> {
    let (mut tries, mut slow) = (0, 0);
    loop {
        let reading = Instant::now();
        let Some(mut copy) = source.get(record.id()).await? else {
            return Ok(Outcome::Ended);
        };
        if reading.elapsed() > MIGRATION_COPY_WINDOW {
            // Too slow to copy safely: a MigratingStore may have moved it meanwhile.
            slow += 1;
            if slow > 10 {
                return Err(Error::transient(
                    "migrate",
                    "the source keeps answering slower than MIGRATION_COPY_WINDOW (250 ms): \
                     lower --concurrency or the load on it",
                ));
            }
            continue;
        }
        // `insert` stores the record's version + 1.
        copy.set_version(copy.version() - 1);
        // Inserting into a free id only is safe to send again after a lost reply: a
        // second try finds the first one's copy and keeps it.
        match target.insert(&mut copy).await {
            Ok(true) => return Ok(Outcome::Copied),
            Ok(false) => return Ok(Outcome::Kept),
            Err(err) if err.is_retryable() && tries < 3 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100 << tries)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Keeps a uniform sample of up to `size` of the records seen (`seen` counts them all).
fn keep_sample(sample: &mut Vec<Record>, page: Vec<Record>, size: usize, seen: &mut u64) {
    for record in page {
        *seen += 1;
        if sample.len() < size {
            sample.push(record);
        } else {
            // Reservoir sampling: the n-th record replaces a kept one with chance size/n.
            let slot = fastrand::u64(..*seen) as usize;
            if slot < size {
                sample[slot] = record;
            }
        }
    }
}

/// Sleeps so that `done` sessions since `started` stay within `rate` per second.
async fn pace(rate: Option<u32>, done: u64, started: Instant) {
    if let Some(rate) = rate.filter(|rate| *rate > 0) {
        let due = Duration::from_secs_f64(done as f64 / f64::from(rate));
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(ahead).await;
        }
    }
}

/// Counts both stores (the target first: a session created meanwhile through a
/// `MigratingStore` only adds to it) and compares `sample` field by field, as each store
/// holds it now.
async fn verify(
    source: &dyn ScanSessions,
    target: &dyn ScanSessions,
    sample: &[Record],
) -> Result<Verification> {
    let (target_live, target_ended) = scan_ids(target).await?;
    let (source_live, _) = scan_ids(source).await?;
    let mut verification = Verification {
        source_count: source_live.len() as u64,
        target_count: target_live.len() as u64,
        ending: source_live.intersection(&target_ended).count() as u64,
        ..Verification::default()
    };
    for record in sample {
        let Some(now_in_source) = source.get(record.id()).await? else {
            continue; // ended since: nothing to compare
        };
        let in_target = target.get(record.id()).await;
        // Ended meanwhile (a MigratingStore's destroy leaves a tombstone in the target,
        // then removes the source's copy): nothing to compare.
        let ended = match &in_target {
            Ok(Some(copy)) => is_tombstone(copy),
            _ => false,
        } || source.get(record.id()).await?.is_none();
        if ended {
            continue;
        }
        verification.sampled += 1;
        match in_target {
            Ok(Some(copy)) if copy == now_in_source => {}
            Ok(Some(copy)) if copy.version() > now_in_source.version() => {
                verification.newer_in_target += 1;
            }
            Ok(_) | Err(_) => verification
                .mismatched
                .push(record.id().fingerprint().to_string()),
        }
    }
    Ok(verification)
}

/// The ids a full scan finds: the live sessions, and apart from them the tombstones of a
/// `MigratingStore`.
async fn scan_ids(store: &dyn ScanSessions) -> Result<(HashSet<SessionId>, HashSet<SessionId>)> {
    let (mut live, mut tombstones) = (HashSet::new(), HashSet::new());
    let mut cursor = ScanCursor::start();
    loop {
        let page = store.scan(&cursor, 1000).await?;
        for record in page.records {
            let ids = if is_tombstone(&record) {
                &mut tombstones
            } else {
                &mut live
            };
            ids.insert(record.id().clone());
        }
        match page.next {
            Some(next) => cursor = next,
            None => return Ok((live, tombstones)),
        }
    }
}

/// The cursor and counts an interrupted run left, or the start.
fn load_checkpoint(path: &Path, pair: Option<&str>) -> Result<(ScanCursor, MigrateReport)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok((ScanCursor::start(), MigrateReport::default()));
        }
        Err(err) => return Err(checkpoint_error(path, &err.to_string())),
    };
    let saved: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| checkpoint_error(path, &err.to_string()))?;
    let count = |key: &str| saved[key].as_u64().unwrap_or(0);
    if saved["complete"].as_bool() == Some(true) {
        return Err(Error::Config(format!(
            "the checkpoint {} is of a finished migration; delete it to copy again",
            path.display()
        )));
    }
    if let (Some(pair), Some(saved_pair)) = (pair, saved["pair"].as_str())
        && pair != saved_pair
    {
        return Err(checkpoint_error(
            path,
            &format!("it is of another migration ({saved_pair}), not of {pair}"),
        ));
    }
    let cursor = saved["cursor"]
        .as_str()
        .ok_or_else(|| checkpoint_error(path, "no cursor in it"))?;
    let report = MigrateReport {
        scanned: count("scanned"),
        copied: count("copied"),
        kept: count("kept"),
        ended: count("ended"),
        corrupt: count("corrupt"),
        pages: count("pages"),
        resumed: true,
        ..MigrateReport::default()
    };
    Ok((cursor.parse().unwrap_or_default(), report))
}

/// Writes the checkpoint whole or not at all (a temporary file, then a rename), so a
/// crash mid-write leaves the previous one.
fn save_checkpoint(
    path: &Path,
    pair: Option<&str>,
    cursor: &ScanCursor,
    report: &MigrateReport,
) -> Result<()> {
    let saved = json!({
        "pair": pair,
        "cursor": cursor.to_string(),
        "complete": report.complete,
        "scanned": report.scanned,
        "copied": report.copied,
        "kept": report.kept,
        "ended": report.ended,
        "corrupt": report.corrupt,
        "pages": report.pages,
    });
    let partial = path.with_extension("partial");
    std::fs::write(&partial, saved.to_string())
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|err| checkpoint_error(path, &err.to_string()))
}

fn checkpoint_error(path: &Path, reason: &str) -> Error {
    Error::Config(format!(
        "the migration checkpoint {} can't be used: {reason}",
        path.display()
    ))
}

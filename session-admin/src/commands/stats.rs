//! `stats`: what the store holds, from a full scan: live sessions (deduplicated by id; a
//! Redis scan may return one twice), owners, sizes in power-of-two buckets, expiries by
//! hour from now, and how many stored records did not decode.

use std::collections::{BTreeMap, HashSet};

use serde_json::json;
use session_core::{ScanCursor, now};

use super::data_bytes;
use crate::cli::{Context, Exit, Failure};
use crate::output::{Report, Table, pairs};

/// Sessions a scan asks for per page.
const PAGE: usize = 1000;
/// The widest bar in the histograms.
const BAR: u64 = 40;

pub(crate) async fn run(ctx: &Context) -> Result<Report, Failure> {
    let opened = ctx.open().await?;
    let progress = ctx.spinner("sessions scanned");
    let started = now();
    let mut seen = HashSet::new();
    let mut owners = HashSet::new();
    let mut without_owner = 0u64;
    let mut bytes = 0u64;
    let mut corrupt = 0u64;
    // Bucket k: sizes in (2^(k-1), 2^k] bytes (k = 0: 0 and 1 byte).
    let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
    // Bucket h: expiring in [h, h + 1) hours from the scan's start.
    let mut expiries: BTreeMap<i64, u64> = BTreeMap::new();
    let mut cursor = ScanCursor::start();
    loop {
        let page = opened.store.scan(&cursor, PAGE).await?;
        corrupt += page.corrupt;
        for record in page.records {
            if !seen.insert(record.id().clone()) {
                continue;
            }
            match record.owner() {
                Some(owner) => {
                    owners.insert(owner.to_owned());
                }
                None => without_owner += 1,
            }
            let size = data_bytes(&record) as u64;
            bytes += size;
            *sizes.entry(size_bucket(size)).or_default() += 1;
            let hours = (record.expires_at() - started).whole_hours().max(0);
            *expiries.entry(hours).or_default() += 1;
        }
        progress.set_position(seen.len() as u64);
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    progress.finish_and_clear();
    let sessions = seen.len() as u64;
    let size_rows: Vec<(u64, u64, u64)> = sizes
        .iter()
        .map(|(&k, &n)| {
            let to = 1u64 << k;
            let from = if k == 0 { 0 } else { (to >> 1) + 1 };
            (from, to, n)
        })
        .collect();
    let json = json!({
        "backend": opened.backend,
        "store": ctx.store(),
        "sessions": sessions,
        "corrupt": corrupt,
        "owners": owners.len(),
        "without_owner": without_owner,
        "bytes": bytes,
        "sizes": size_rows
            .iter()
            .map(|&(from, to, n)| json!({"from_bytes": from, "to_bytes": to, "sessions": n}))
            .collect::<Vec<_>>(),
        "expires_in_hours": expiries
            .iter()
            .map(|(&h, &n)| json!({"from": h, "to": h + 1, "sessions": n}))
            .collect::<Vec<_>>(),
    });
    let mut text = pairs(&[
        ("backend", opened.backend.to_owned()),
        ("store", ctx.store()),
        ("sessions", sessions.to_string()),
        ("owners", owners.len().to_string()),
        ("without owner", without_owner.to_string()),
        ("data bytes", bytes.to_string()),
        ("corrupt", corrupt.to_string()),
    ]);
    let widest = sizes
        .values()
        .chain(expiries.values())
        .copied()
        .max()
        .unwrap_or(1);
    let bar = |n: u64| "#".repeat(((n * BAR).div_ceil(widest.max(1))) as usize);
    if sessions > 0 {
        let mut table = Table::new(&["size (bytes)", "sessions#", ""]);
        for &(from, to, n) in &size_rows {
            table.row(vec![format!("{from}-{to}"), n.to_string(), bar(n)]);
        }
        text.push('\n');
        text.push_str(&table.render());
        let mut table = Table::new(&["expires in", "sessions#", ""]);
        for (&h, &n) in &expiries {
            table.row(vec![format!("{h}-{} h", h + 1), n.to_string(), bar(n)]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    if corrupt > 0 {
        text.push_str(&format!(
            "\n{corrupt} stored record(s) did not decode (left as they are, not counted above)\n"
        ));
    }
    let report = Report::new(json, text);
    Ok(if corrupt > 0 {
        report.exit(Exit::Corrupt)
    } else {
        report
    })
}

/// The power-of-two bucket of a size: the k with 2^(k-1) < size <= 2^k (0 for 0 and 1).
fn size_bucket(size: u64) -> u32 {
    if size <= 1 {
        0
    } else {
        64 - (size - 1).leading_zeros()
    }
}

#[cfg(test)]
mod tests {
    use super::size_bucket;

    #[test]
    fn sizes_fall_in_power_of_two_buckets() {
        let buckets: Vec<u32> = [0, 1, 2, 3, 4, 5, 64, 65, 1024, 1025]
            .map(size_bucket)
            .to_vec();
        assert_eq!(buckets, [0, 0, 1, 2, 2, 3, 6, 7, 10, 11]);
    }
}

//! `list`: live sessions by fingerprint, of one owner (the owner index) or the first
//! `--limit` of a scan.

use std::collections::HashSet;

use serde_json::{Value, json};
use session_core::{Record, ScanCursor};

use super::{cells, describe, header};
use crate::cli::{Context, Exit, Failure};
use crate::output::{Report, Table};

/// Sessions a scan asks for per page.
const PAGE: usize = 500;

/// `list`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only this owner's sessions (exactly: no prefix or case folding).
    #[arg(long)]
    owner: Option<String>,
    /// At most this many sessions without --owner.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Also print the session ids. They are bearer secrets: anyone holding one is logged
    /// in as its owner.
    #[arg(long)]
    show_ids: bool,
}

pub(crate) async fn run(ctx: &Context, args: &Args) -> Result<Report, Failure> {
    let opened = ctx.open().await?;
    let (mut records, corrupt, truncated) = match &args.owner {
        Some(owner) => (opened.store.list_by_owner(owner).await?, 0, false),
        None => {
            let progress = ctx.spinner("sessions listed");
            let mut seen = HashSet::new();
            let mut records: Vec<Record> = Vec::new();
            let mut corrupt = 0;
            let mut cursor = ScanCursor::start();
            let truncated = loop {
                let page = opened
                    .store
                    .scan(&cursor, PAGE.min(args.limit.max(1)))
                    .await?;
                corrupt += page.corrupt;
                for record in page.records {
                    if records.len() == args.limit {
                        break;
                    }
                    if seen.insert(record.id().clone()) {
                        records.push(record);
                    }
                }
                progress.set_position(records.len() as u64);
                match page.next {
                    Some(_) if records.len() == args.limit => break true,
                    Some(next) => cursor = next,
                    None => break false,
                }
            };
            progress.finish_and_clear();
            (records, corrupt, truncated)
        }
    };
    records.sort_by_key(|r| (r.created_at(), r.id().fingerprint().to_string()));
    let json = json!({
        "backend": opened.backend,
        "store": ctx.store(),
        "owner": args.owner,
        "sessions": records.iter().map(|r| describe(r, args.show_ids)).collect::<Vec<Value>>(),
        "corrupt": corrupt,
        "truncated": truncated,
    });
    let mut table = Table::new(&header(args.show_ids));
    for record in &records {
        table.row(cells(record, args.show_ids));
    }
    let mut text = table.render();
    text.push_str(&format!(
        "{} session{}{}",
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        match &args.owner {
            Some(owner) => format!(" of {owner:?}"),
            None => String::new(),
        }
    ));
    if truncated {
        text.push_str(&format!(" (the first {}; --limit for more)", args.limit));
    }
    text.push('\n');
    if corrupt > 0 {
        text.push_str(&format!(
            "{corrupt} stored record(s) did not decode and are not listed\n"
        ));
    }
    let report = Report::new(json, text);
    Ok(if corrupt > 0 {
        report.exit(Exit::Corrupt)
    } else {
        report
    })
}

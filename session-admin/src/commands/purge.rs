//! `purge`: remove expired sessions, a batch at a time, on the stores that keep them.

use serde_json::json;

use crate::cli::{Context, Failure};
use crate::output::{Report, pairs};

/// `purge`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Expired sessions one batch removes (one statement and transaction on the SQL
    /// stores): small batches keep locks short on a busy table.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
}

pub(crate) async fn run(ctx: &Context, args: &Args) -> Result<Report, Failure> {
    let opened = ctx.open().await?;
    let Some(purge) = &opened.purge else {
        let json = json!({
            "backend": opened.backend,
            "store": ctx.store(),
            "purged": 0,
            "expires_by_itself": true,
        });
        let text = format!(
            "nothing to purge: {} removes expired sessions by itself\n",
            opened.backend
        );
        return Ok(Report::new(json, text));
    };
    let progress = ctx.spinner("expired sessions purged");
    let mut purged = 0;
    let mut batches = 0;
    loop {
        let claimed = purge.batch(args.batch).await?;
        purged += claimed;
        batches += 1;
        progress.set_position(purged);
        // A full batch may have left more behind; a short one found the last.
        if claimed < u64::from(args.batch) {
            break;
        }
    }
    progress.finish_and_clear();
    let json = json!({
        "backend": opened.backend,
        "store": ctx.store(),
        "purged": purged,
        "batches": batches,
        "expires_by_itself": false,
    });
    let text = pairs(&[
        ("backend", opened.backend.to_owned()),
        ("purged", format!("{purged} expired session(s)")),
        ("batches", batches.to_string()),
    ]);
    Ok(Report::new(json, text))
}

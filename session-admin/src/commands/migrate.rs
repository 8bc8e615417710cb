//! `migrate`: copy every live session from one store to another (see
//! [`crate::migrate`]), with a progress line, a checkpoint to resume from and a final
//! verification.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::cli::{Context, Exit, Failure};
use crate::migrate::{MigrateOptions, MigrateReport, migrate};
use crate::output::{Report, pairs};
use crate::redact::redacted;

/// `migrate`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store to copy from (a URL as for --url).
    #[arg(long)]
    from: String,
    /// The store to copy to (its table or collection is created when missing).
    #[arg(long)]
    to: String,
    /// Sessions read per page.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// At most this many sessions copied per second.
    #[arg(long)]
    rate: Option<u32>,
    /// Copies in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Read and count only; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// A file holding where the copy stands: written after every page; run the same command
    /// again to continue after Ctrl-C or a crash.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Sessions compared field by field at the end.
    #[arg(long, default_value_t = 100)]
    verify_sample: usize,
}

pub(crate) async fn run(ctx: &Context, args: &Args) -> Result<Report, Failure> {
    if args.from.trim() == args.to.trim() {
        return Err(Failure::usage("--from and --to name the same store"));
    }
    for url in [&args.from, &args.to] {
        if url.trim() == "memory" || url.trim().is_empty() {
            return Err(Failure::usage(
                "an in-process memory store can't be migrated from a command line: give a server's URL",
            ));
        }
    }
    let source = ctx.open_url(&args.from, false).await?;
    let target = ctx.open_url(&args.to, true).await?;
    let options = MigrateOptions {
        batch: args.batch as usize,
        rate: args.rate,
        concurrency: args.concurrency as usize,
        dry_run: args.dry_run,
        checkpoint: args.checkpoint.clone(),
        verify_sample: args.verify_sample,
        pair: Some(format!(
            "{} -> {}",
            redacted(&args.from),
            redacted(&args.to)
        )),
    };
    let progress = ctx.spinner("sessions read");
    let started = Instant::now();
    let report = migrate(&*source.store, &*target.store, &options, |so_far| {
        progress.set_position(so_far.scanned);
    })
    .await?;
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if report.scanned == 0 && report.corrupt > 0 {
        return Err(Failure {
            exit: Exit::Corrupt,
            kind: "decode",
            message: format!(
                "none of the source's {} stored records decode: it is in another format (an \
                 express-session store such as connect-redis, or data sealed by another \
                 EncryptedStore key) or not a session store; nothing was copied",
                report.corrupt
            ),
        });
    }
    Ok(summary(args, &report, seconds))
}

fn summary(args: &Args, report: &MigrateReport, seconds: f64) -> Report {
    let per_second = (report.copied + report.kept) as f64 / seconds.max(1e-9);
    let verification = report.verification.as_ref();
    let json = json!({
        "from": redacted(&args.from).to_string(),
        "to": redacted(&args.to).to_string(),
        "dry_run": args.dry_run,
        "complete": report.complete,
        "resumed": report.resumed,
        "scanned": report.scanned,
        "copied": report.copied,
        "kept": report.kept,
        "ended": report.ended,
        "corrupt": report.corrupt,
        "pages": report.pages,
        "seconds": seconds,
        "sessions_per_second": per_second,
        "verification": verification.map(|v| json!({
            "passed": v.passed(),
            "source_count": v.source_count,
            "target_count": v.target_count,
            "ending": v.ending,
            "sampled": v.sampled,
            "newer_in_target": v.newer_in_target,
            "mismatched": v.mismatched,
        })),
    });
    let mut lines = vec![
        ("from", redacted(&args.from).to_string()),
        ("to", redacted(&args.to).to_string()),
        (
            "read",
            format!(
                "{} live session(s) in {} page(s)",
                report.scanned, report.pages
            ),
        ),
        ("copied", report.copied.to_string()),
        (
            "kept",
            format!("{} (the target already held them)", report.kept),
        ),
        (
            "ended",
            format!("{} (ended before their copy)", report.ended),
        ),
        ("corrupt", format!("{} (not copied)", report.corrupt)),
        (
            "rate",
            format!("{per_second:.0} sessions/s over {seconds:.1} s"),
        ),
    ];
    if report.resumed {
        lines.push(("resumed", "continued from the checkpoint".into()));
    }
    match verification {
        Some(v) => lines.push((
            "verified",
            format!(
                "{}: {} sampled, {} newer in the target, {} missing or different; {} live in \
                 the source, {} in the target, {} being destroyed",
                if v.passed() { "ok" } else { "FAILED" },
                v.sampled,
                v.newer_in_target,
                v.mismatched.len(),
                v.source_count,
                v.target_count,
                v.ending
            ),
        )),
        None => lines.push(("verified", "no (dry run)".into())),
    }
    let exit = match verification {
        Some(v) if !v.passed() => Exit::Unverified,
        _ if report.corrupt > 0 => Exit::Corrupt,
        _ => Exit::Ok,
    };
    Report::new(json, pairs(&lines)).exit(exit)
}

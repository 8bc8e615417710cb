//! `count`: the store's own count of live sessions.

use serde_json::json;

use crate::cli::{Context, Failure};
use crate::output::{Report, pairs};

pub(crate) async fn run(ctx: &Context) -> Result<Report, Failure> {
    let opened = ctx.open().await?;
    let sessions = opened.store.count().await?;
    let json = json!({
        "backend": opened.backend,
        "store": ctx.store(),
        "sessions": sessions,
    });
    let text = pairs(&[
        ("backend", opened.backend.to_owned()),
        ("store", ctx.store()),
        ("sessions", sessions.to_string()),
    ]);
    Ok(Report::new(json, text))
}

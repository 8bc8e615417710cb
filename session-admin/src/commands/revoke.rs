//! `revoke ID` / `revoke --owner U`: end sessions now.

use serde_json::json;

use super::parse_id;
use crate::cli::{Context, Failure};
use crate::output::{Report, pairs};

/// `revoke`'s arguments: one session id, or an owner.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Args {
    /// The session id to end (one starting with `-` is an id too, not an option).
    #[arg(allow_hyphen_values = true)]
    id: Option<String>,
    /// End every live session of this owner ("log out everywhere").
    #[arg(long)]
    owner: Option<String>,
}

pub(crate) async fn run(ctx: &Context, args: &Args) -> Result<Report, Failure> {
    if let Some(owner) = &args.owner {
        let opened = ctx.open().await?;
        let revoked = opened.store.destroy_by_owner(owner).await?;
        let json = json!({
            "backend": opened.backend,
            "store": ctx.store(),
            "owner": owner,
            "revoked": revoked,
        });
        let text = pairs(&[
            ("owner", owner.clone()),
            ("revoked", format!("{revoked} live session(s)")),
        ]);
        return Ok(Report::new(json, text));
    }
    let id = parse_id(args.id.as_deref().unwrap_or_default())?;
    let opened = ctx.open().await?;
    // `destroy` succeeds whether or not the session was there: look first, so a mistyped
    // id says so. A corrupt record is there (and is removed).
    let found = match opened.store.get(&id).await {
        Ok(found) => found.is_some(),
        Err(session_core::Error::Decode { .. }) => true,
        Err(err) => return Err(err.into()),
    };
    // Removed either way: an expired record that is still stored goes too.
    opened.store.destroy(&id).await?;
    if !found {
        return Err(Failure::not_found(format!(
            "no live session {} in the store; nothing revoked",
            id.fingerprint()
        )));
    }
    let json = json!({
        "backend": opened.backend,
        "store": ctx.store(),
        "session": id.fingerprint().to_string(),
        "revoked": 1,
    });
    let text = pairs(&[
        ("session", id.fingerprint().to_string()),
        ("revoked", "yes".to_owned()),
    ]);
    Ok(Report::new(json, text))
}

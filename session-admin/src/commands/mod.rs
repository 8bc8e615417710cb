//! One module per command; what several of them show of a session lives here.

pub(crate) mod count;
pub(crate) mod list;
pub(crate) mod migrate;
pub(crate) mod purge;
pub(crate) mod revoke;
pub(crate) mod show;
pub(crate) mod stats;

use serde_json::{Value, json};
use session_core::{Record, SessionId};

use crate::cli::Failure;
use crate::output::{rfc3339, when};

/// The size of a session's data: its JSON encoding, in bytes (what the stores' payload
/// limit measures).
pub(crate) fn data_bytes(record: &Record) -> usize {
    serde_json::to_vec(record.data()).map_or(0, |json| json.len())
}

/// A session as `list` and `show` describe it: fingerprint, owner, times, size; the id only
/// when asked for.
pub(crate) fn describe(record: &Record, show_id: bool) -> Value {
    let mut session = json!({
        "session": record.id().fingerprint().to_string(),
        "owner": record.owner(),
        "created_at": rfc3339(record.created_at()),
        "expires_at": rfc3339(record.expires_at()),
        "deadline": record.deadline().map(rfc3339),
        "version": record.version(),
        "bytes": data_bytes(record),
    });
    if show_id {
        session["id"] = Value::from(record.id().expose());
    }
    session
}

/// The same as table cells: session, owner, created, expires, deadline, bytes[, id].
pub(crate) fn cells(record: &Record, show_id: bool) -> Vec<String> {
    let mut cells = vec![
        record.id().fingerprint().to_string(),
        record.owner().unwrap_or("-").to_owned(),
        when(record.created_at()),
        when(record.expires_at()),
        record.deadline().map_or_else(|| "-".to_owned(), when),
        data_bytes(record).to_string(),
    ];
    if show_id {
        cells.push(record.id().expose().to_owned());
    }
    cells
}

/// The columns of [`cells`].
pub(crate) fn header(show_id: bool) -> Vec<&'static str> {
    let mut header = vec![
        "session", "owner", "created", "expires", "deadline", "bytes#",
    ];
    if show_id {
        header.push("id");
    }
    header
}

/// A session id given on the command line: a malformed one is a usage error that says
/// why, without repeating what was typed (it may be most of a real id).
pub(crate) fn parse_id(text: &str) -> Result<SessionId, Failure> {
    SessionId::parse(text.trim())
        .map_err(|why| Failure::usage(format!("the ID argument is not a session id: {why}")))
}

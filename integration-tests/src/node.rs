//! The Node side of the express-session tests: `integration-tests/node` (an express app, the
//! value generator), run with the machine's `node`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `integration-tests/node`, where the Node scripts and their `node_modules` are.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Whether `node` can run here. Without it, `what` is skipped loudly (a failure under CI,
/// see [`session_core::conformance::skip`]).
pub fn available(what: &str) -> bool {
    let found = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        session_core::conformance::skip(
            what,
            "`node` is not on PATH. Install Node.js (>= 18) and run `npm ci` in \
             integration-tests/node to run it",
        );
    }
    found
}

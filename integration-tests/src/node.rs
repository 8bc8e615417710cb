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

/// A Node app of `integration-tests/node` (`app.js` and the like), killed when dropped, so a
/// failed assertion never leaks it.
pub struct NodeApp {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`, where it listens.
    pub base: String,
}

impl Drop for NodeApp {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl NodeApp {
    /// Runs `node <script>` in [`dir`] with `env` added, and waits (20 s at most) for its
    /// `listening <port>` line. Panics when `npm ci` was not run or the app does not start:
    /// check [`available`] first.
    pub fn start(script: &str, env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        use std::time::{Duration, Instant};

        let dir = dir();
        assert!(
            dir.join("node_modules").is_dir(),
            "{} is missing: run `npm ci` in integration-tests/node (scripts/test does it)",
            dir.join("node_modules").display()
        );
        let mut child = Command::new("node")
            .arg(script)
            .current_dir(&dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start node {script}: {err}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        // Owns the process from here: a panic below kills it.
        let mut app = Self {
            child,
            base: String::new(),
        };
        let (lines, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = line.trim().strip_prefix("listening ") {
                        let port: u16 = port.parse().expect("app.js prints its port");
                        app.base = format!("http://127.0.0.1:{port}");
                        return app;
                    }
                    eprintln!("node: {line}");
                }
                Err(_) => {
                    let status = app.child.try_wait().ok().flatten();
                    panic!(
                        "node {script} did not print `listening <port>` in 20 s (exit: {status:?})"
                    )
                }
            }
        }
    }
}

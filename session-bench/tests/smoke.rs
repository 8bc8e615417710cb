//! The benchmark's smoke run (`--smoke`: every target on every backend, briefly), so the
//! benchmark never rots. A test rather than a `cargo run` of its own: it runs in
//! `scripts/test` with the servers that starts, on the binary the test build already made
//! (a separate `cargo run` resolved other features and rebuilt a hundred crates).

use std::process::Command;

#[test]
fn smoke_run_completes_on_every_backend() {
    let missing: Vec<&str> = [
        "SESSION_STORES_REDIS_URL",
        "SESSION_STORES_POSTGRES_URL",
        "SESSION_STORES_MONGO_URL",
        "SESSION_STORES_MYSQL_URL",
    ]
    .into_iter()
    .filter(|var| std::env::var_os(var).is_none())
    .collect();
    if !missing.is_empty() {
        session_core::conformance::skip(
            "session-bench --smoke",
            &format!("no server: set {}", missing.join(", ")),
        );
        return;
    }
    let json =
        std::env::temp_dir().join(format!("session-bench-smoke-{}.json", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_session-bench"))
        .arg("--smoke")
        .arg("--json")
        .arg(&json)
        .status()
        .expect("session-bench runs");
    let _ = std::fs::remove_file(&json);
    assert!(status.success(), "session-bench --smoke failed: {status}");
}

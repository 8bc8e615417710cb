//! The benchmark's smoke run (every target on every backend, briefly), so the benchmark
//! never rots. A test rather than a `cargo run` of its own: it runs in `scripts/test` with
//! the servers that starts, on the binary the test build already made (a separate
//! `cargo run` resolved other features and rebuilt a hundred crates).
//!
//! Shorter than `--smoke` (0.3 s phases, 200 sessions: 35-40 s here): 0.1 s phases on 50
//! sessions run every target, phase and concurrency level of `--smoke` in about 10 s, and the
//! test checks from the JSON lines that each backend ran and every phase of every target
//! completed operations, besides the exit status (which fails on any failed operation).

use std::process::Command;

#[test]
fn smoke_run_completes_on_every_backend() {
    let missing: Vec<&str> = [
        "SESSION_STORES_REDIS_URL",
        "SESSION_STORES_REDIS_SENTINEL_URL",
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
    // `--smoke`'s concurrency levels, with shorter phases and fewer sessions.
    let status = Command::new(env!("CARGO_BIN_EXE_session-bench"))
        .args([
            "--duration",
            "0.1",
            "--sessions",
            "50",
            "--concurrency",
            "1,8",
        ])
        .arg("--json")
        .arg(&json)
        .status()
        .expect("session-bench runs");
    let lines = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    assert!(
        status.success(),
        "the session-bench smoke run failed: {status}"
    );
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    for backend in [
        "memory",
        "redis",
        "redis-sentinel",
        "postgres",
        "mongo",
        "sqlite",
        "mysql",
    ] {
        assert!(
            rows.iter().any(|row| row["backend"] == backend),
            "no {backend} target ran"
        );
    }
    for row in &rows {
        assert!(
            row["ops"].as_u64().is_some_and(|ops| ops > 0),
            "a phase completed no operation: {row}"
        );
        // What each operation cost the Redis server (INFO cpu and commandstats): every
        // timed phase there has the figures, and sends at least one command per operation
        // but through a cache (whose hits send none).
        let timed = ["rmw", "rmw-cas", "get"].contains(&row["phase"].as_str().unwrap_or(""));
        if row["backend"] == "redis" && timed {
            let cached = row["store"].as_str().unwrap_or("").contains("Cached");
            let floor = if cached { 0.0 } else { 1.0 };
            assert!(
                row["server_commands_per_op"]
                    .as_f64()
                    .is_some_and(|c| c >= floor)
                    && row["server_us_per_op"].as_f64().is_some_and(|u| u >= 0.0),
                "a Redis phase without its server cost: {row}"
            );
        }
    }
}

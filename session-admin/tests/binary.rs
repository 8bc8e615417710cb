//! The `session-admin` binary as a process: exit statuses, stdout and stderr. No server is
//! needed (the in-process memory store, and a port nothing listens on); the commands on real
//! servers are tested in integration-tests/tests/admin.rs.

use std::process::{Command, Output};

fn admin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_session-admin"))
        .args(args)
        .env_remove("SESSION_ADMIN_URL")
        .output()
        .expect("running session-admin")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_count_prints_one_json_document_and_exits_0() {
    let out = admin(&["--url", "memory", "--json", "count"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(document["sessions"], 0);
    assert_eq!(document["backend"], "memory");
}

#[test]
fn the_url_can_come_from_the_environment_and_help_hides_it() {
    let url = "postgres://app:Env-Secret-77@127.0.0.1:1/app";
    let help = Command::new(env!("CARGO_BIN_EXE_session-admin"))
        .arg("--help")
        .env("SESSION_ADMIN_URL", url)
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    let shown = text(&help.stdout);
    assert!(shown.contains("Exit codes:"), "{shown}");
    assert!(!shown.contains("Env-Secret-77"), "{shown}");

    let out = Command::new(env!("CARGO_BIN_EXE_session-admin"))
        .args(["--json", "count"])
        .env("SESSION_ADMIN_URL", "memory")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn usage_errors_exit_2() {
    let malformed = admin(&["--url", "memory", "show", "not/an/id"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(text(&malformed.stderr).contains("the ID argument is not a session id"));
    assert!(!text(&malformed.stderr).contains("not/an/id"));
    assert_eq!(admin(&["count"]).status.code(), Some(2));
    assert_eq!(
        admin(&["--url", "memory", "frobnicate"]).status.code(),
        Some(2)
    );
}

#[test]
fn a_store_that_cannot_be_reached_exits_1_without_printing_its_password() {
    let out = admin(&[
        "--url",
        "postgres://app:Unreachable-Pw-31@127.0.0.1:1/app",
        "--timeout",
        "500ms",
        "--json",
        "count",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("Unreachable-Pw-31"), "{all}");
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(document["error"]["exit"], 1);
}

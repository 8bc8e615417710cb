//! Every value Node can keep in an express-session session reads in Rust, and a Rust write
//! of one other field leaves it exactly as Node sees it.
//!
//! node/values.js stores thousands of random sessions through connect-redis (fast-check
//! values from a seed: strings of any UTF-16 code units, lone surrogates included, keys
//! such as `__proto__` and `""`, numbers such as -0, 1e21 and 2^60, data nested up to 200
//! levels). Then, for every session, `RedisStore::express_session()` must read it
//! (`get`) and [`modify`] must set its `k` field; then values.js reads every session back
//! through connect-redis and compares `JSON.stringify` of each other field with the value
//! it stored: equal text, so equal key order, numbers and surrogates.
//!
//! Env: `EXPRESS_VALUES_COUNT` (sessions, default 10,000), `EXPRESS_VALUES_SEED` (replays
//! a run: every run prints its seed), `EXPRESS_VALUES_SKIP_RUST=1` (the control: no Rust
//! read or write between Node's write and Node's check, which must then find no
//! difference, or the harness itself is wrong).
//!
//! Needs `node` on PATH and `npm ci` run in integration-tests/node (scripts/test does it).
//! Without node, the test is skipped loudly, unless `CI` is set: then it fails.

#![allow(clippy::unwrap_used)] // a failed call is a failed test

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use integration_tests::{Backend, server_url};
use serde_json::Value;
use session_core::{SessionId, SessionStore, modify};
use session_redis::RedisStore;

const WHAT: &str = "the express-session values test";
/// Sessions per run unless `EXPRESS_VALUES_COUNT` says otherwise.
const DEFAULT_COUNT: u64 = 10_000;
/// Sessions read and written at once: enough to keep Redis busy, few enough to stay far
/// from any connection or script limit.
const IN_FLIGHT: usize = 32;
/// How much of a stored value or an error a failure message shows.
const SNIPPET: usize = 300;
/// How long one run of values.js may take before the test gives up on it.
const NODE_DEADLINE: Duration = Duration::from_secs(540);

/// Runs `node values.js <mode>` with `env` and returns the JSON line it prints. Blocking:
/// call it from `spawn_blocking`. The process is killed past [`NODE_DEADLINE`].
fn values_js(mode: &str, env: &[(&str, String)]) -> Value {
    let dir = integration_tests::node::dir();
    assert!(
        dir.join("node_modules").join("fast-check").is_dir(),
        "{} has no fast-check: run `npm ci` in integration-tests/node (scripts/test does it)",
        dir.join("node_modules").display()
    );
    let mut child = Command::new("node")
        .arg("values.js")
        .arg(mode)
        .current_dir(&dir)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .env(
            "TIMEOUT_MS",
            (NODE_DEADLINE.as_millis() - 5_000).to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start node values.js {mode}: {err}"));
    // Read while it runs: `write` prints every sid, more than a pipe buffers.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + NODE_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("node values.js {mode} still ran after {NODE_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().unwrap().unwrap();
    assert!(
        status.success(),
        "node values.js {mode} failed ({status}); stdout: {}",
        snippet(&out)
    );
    let line = out.lines().rev().find(|line| !line.trim().is_empty());
    serde_json::from_str(line.unwrap_or_default()).unwrap_or_else(|err| {
        panic!(
            "node values.js {mode} printed no JSON line ({err}): {}",
            snippet(&out)
        )
    })
}

/// Runs [`values_js`] off the runtime's threads.
async fn run_values_js(mode: &'static str, env: Vec<(&'static str, String)>) -> Value {
    tokio::task::spawn_blocking(move || values_js(mode, &env))
        .await
        .unwrap()
}

/// The first [`SNIPPET`] characters of `text`.
fn snippet(text: &str) -> String {
    match text.char_indices().nth(SNIPPET) {
        Some((end, _)) => format!("{}...({} bytes)", &text[..end], text.len()),
        None => text.to_owned(),
    }
}

/// Whether `raw` JSON holds a `\uXXXX` escape of a lone UTF-16 surrogate (half an emoji,
/// as JSON.stringify writes it), which a Rust string can't hold.
fn has_lone_surrogate(raw: &[u8]) -> bool {
    let unit = |at: usize| -> Option<u16> {
        let hex = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    };
    let (mut quoted, mut at, mut high) = (false, 0, false);
    while at < raw.len() {
        let byte = raw[at];
        at += 1;
        if !quoted {
            quoted = byte == b'"';
            continue;
        }
        let code = match byte {
            b'"' => {
                quoted = false;
                None
            }
            b'\\' if raw.get(at) == Some(&b'u') => {
                let code = unit(at + 1);
                at += 5;
                code
            }
            b'\\' => {
                at += 1;
                None
            }
            _ => None,
        };
        match code {
            Some(0xdc00..=0xdfff) if high => high = false,
            Some(0xdc00..=0xdfff) => return true,
            _ if high => return true,
            Some(0xd800..=0xdbff) => high = true,
            _ => {}
        }
    }
    high
}

/// What went wrong with one session on the Rust side.
struct Failure {
    sid: String,
    /// `get`, `modify`, `insert` or `id`, then the error with the parts that differ
    /// between sessions (the id's fingerprint, numbers) blanked: the failures' class.
    class: String,
    error: String,
    raw: String,
    nesting: usize,
    lone_surrogate: bool,
}

/// The error's text with what differs between sessions of one kind of failure blanked.
fn class_of(stage: &str, error: &str, id: &SessionId) -> String {
    let text = error.replace(&id.fingerprint().to_string(), "<id>");
    let mut class = format!("{stage}: ");
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                class.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            class.push(c);
        }
    }
    class
}

/// Reads the session, then sets its `k` to 1 with `modify`; `None` when both worked.
async fn read_and_write(store: &RedisStore, sid: String) -> Option<Failure> {
    let id = match SessionId::parse(&sid) {
        Ok(id) => id,
        Err(err) => {
            return Some(Failure {
                class: format!("id: {err}"),
                error: err.to_string(),
                sid,
                raw: String::new(),
                nesting: 0,
                lone_surrogate: false,
            });
        }
    };
    let failed: Result<(), (&str, String)> = async {
        match store.get(&id).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(("get", "no session (Ok(None))".to_owned())),
            Err(err) => return Err(("get", err.to_string())),
        }
        match modify(store, &id, 8, |record| record.insert("k", 1)).await {
            Ok(Some((_, Ok(_)))) => Ok(()),
            Ok(Some((_, Err(err)))) => Err(("insert", err.to_string())),
            Ok(None) => Err(("modify", "no session (Ok(None))".to_owned())),
            Err(err) => Err(("modify", err.to_string())),
        }
    }
    .await;
    let (stage, error) = failed.err()?;
    let raw = store
        .raw_get(&store.key_for(&id))
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    Some(Failure {
        class: class_of(stage, &error, &id),
        error,
        nesting: session_core::codec::nesting(&raw),
        lone_surrogate: has_lone_surrogate(&raw),
        raw: snippet(&String::from_utf8_lossy(&raw)),
        sid,
    })
}

/// The failures by class: how many, the raw values' nesting, and the first examples.
fn failure_report(failures: &[Failure]) -> String {
    let mut classes: BTreeMap<&str, Vec<&Failure>> = BTreeMap::new();
    for failure in failures {
        classes.entry(&failure.class).or_default().push(failure);
    }
    let mut out = String::new();
    for (class, members) in classes {
        let low = members.iter().map(|f| f.nesting).min().unwrap_or(0);
        let high = members.iter().map(|f| f.nesting).max().unwrap_or(0);
        let lone = members.iter().filter(|f| f.lone_surrogate).count();
        writeln!(
            out,
            "  {} x {class}\n    (stored JSON nested {low}..={high} levels, the session object \
             counted; {lone} of them hold a lone surrogate)",
            members.len()
        )
        .unwrap();
        for failure in members.iter().take(3) {
            writeln!(
                out,
                "    e.g. sid {}: {}\n      stored: {}",
                failure.sid,
                snippet(&failure.error),
                failure.raw
            )
            .unwrap();
        }
    }
    out
}

/// Deletes the run's keys (best effort: they expire within the hour anyway).
async fn delete_keys(redis_url: &str, keys: &[String]) {
    let Ok(client) = redis::Client::open(redis_url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    for chunk in keys.chunks(500) {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_values_survive_a_rust_write() {
    if !integration_tests::node::available(WHAT) {
        return;
    }
    let redis_url = match server_url(Backend::Redis) {
        Ok(url) => url,
        Err(skip) => return session_core::conformance::skip(WHAT, &skip.0),
    };
    let count: u64 = env_var("EXPRESS_VALUES_COUNT").map_or(DEFAULT_COUNT, |count| {
        count
            .trim()
            .parse()
            .expect("EXPRESS_VALUES_COUNT is a number")
    });
    let seed: u32 = env_var("EXPRESS_VALUES_SEED").map_or_else(
        || {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            // fast-check takes a 32-bit seed; kept positive so it reads the same in JS.
            nanos & 0x7fff_ffff
        },
        |seed| seed.trim().parse().expect("EXPRESS_VALUES_SEED is a u32"),
    );
    let skip_rust = env_var("EXPRESS_VALUES_SKIP_RUST").is_some_and(|value| value != "0");
    let replay = format!("EXPRESS_VALUES_SEED={seed} EXPRESS_VALUES_COUNT={count}");
    session_core::conformance::note(&format!(
        "{WHAT}: seed {seed}, {count} sessions{} (replay with {replay})",
        if skip_rust {
            ", Rust step skipped (control run)"
        } else {
            ""
        }
    ));
    let prefix = format!("values:{}:sess:", &SessionId::generate().expose()[..16]);
    let env = vec![
        ("REDIS_URL", redis_url.clone()),
        ("SESSION_PREFIX", prefix.clone()),
        ("SEED", seed.to_string()),
        ("COUNT", count.to_string()),
        ("EXPECT_K", if skip_rust { "0" } else { "1" }.to_owned()),
    ];

    let started = Instant::now();
    let written = run_values_js("write", env.clone()).await;
    let sids: Vec<String> = serde_json::from_value(written["sids"].clone()).unwrap();
    assert_eq!(sids.len() as u64, count, "values.js wrote {count} sessions");
    let keys: Vec<String> = sids.iter().map(|sid| format!("{prefix}{sid}")).collect();
    let write_time = started.elapsed();

    let started = Instant::now();
    let failures: Vec<Failure> = if skip_rust {
        Vec::new()
    } else {
        let store = RedisStore::builder()
            .url(&redis_url)
            .prefix(&prefix)
            .express_session()
            .connect()
            .await
            .unwrap();
        futures::stream::iter(sids)
            .map(|sid| {
                let store = store.clone();
                async move { read_and_write(&store, sid).await }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter_map(|failure| async move { failure })
            .collect()
            .await
    };
    let rust_time = started.elapsed();

    let started = Instant::now();
    let checked = run_values_js("check", env).await;
    let check_time = started.elapsed();
    delete_keys(&redis_url, &keys).await;
    session_core::conformance::note(&format!(
        "{WHAT}: seed {seed}: node write {write_time:.1?}, rust get+modify {rust_time:.1?}, \
         node check {check_time:.1?}; {} Rust failures, {} mismatches, {} missing",
        failures.len(),
        checked["mismatches"],
        checked["missing"]
    ));

    let number = |field: &str| checked[field].as_u64().unwrap_or(u64::MAX);
    let clean = failures.is_empty()
        && number("missing") == 0
        && number("mismatches") == 0
        && number("badK") == 0
        && number("badCookie") == 0;
    if !clean {
        let pretty = |field: &str| serde_json::to_string_pretty(&checked[field]).unwrap();
        panic!(
            "{WHAT} failed with seed {seed} (replay with {replay}):\n\
             {} of {count} sessions failed in Rust:\n{}\
             Node's check: {} of {} values differ, {} sessions missing, {} with `k` not {}, \
             {} with their cookie changed\n\
             mismatched values by feature: {}\n\
             checked values with the feature: {}\n\
             mismatched values by depth: {}\n\
             first mismatches: {}\n\
             first mismatches of values with no lone surrogate and at most 95 levels: {}\n\
             first `k` mismatches: {}\n\
             first cookie changes: {}",
            failures.len(),
            failure_report(&failures),
            checked["mismatches"],
            checked["fields"],
            checked["missing"],
            checked["badK"],
            if skip_rust { 0 } else { 1 },
            checked["badCookie"],
            checked["byFeature"],
            checked["totals"],
            checked["mismatchedDepths"],
            pretty("first"),
            pretty("firstUnexplained"),
            checked["badKExamples"],
            checked["badCookieExamples"],
        );
    }
}

/// The failure report's helpers read stored JSON as Node writes it.
#[test]
fn raw_json_helpers() {
    assert!(has_lone_surrogate(br#"{"a":"x\ud83d"}"#));
    assert!(has_lone_surrogate(br#"{"\udc00":1}"#));
    assert!(has_lone_surrogate(br#"{"a":"\ude00\ud83d"}"#));
    assert!(!has_lone_surrogate(br#"{"a":"\ud83d\ude00"}"#));
    assert!(
        !has_lone_surrogate(br#"{"a":"\\ud83d"}"#),
        "an escaped backslash, then text"
    );
    assert!(!has_lone_surrogate("{\"a\":\"😀\"}".as_bytes()));
    assert_eq!(session_core::codec::nesting(br#"{"a":[{"b":"[[["}]}"#), 3);
    assert_eq!(session_core::codec::nesting(br#"{"a":"\"[{"}"#), 1);
}

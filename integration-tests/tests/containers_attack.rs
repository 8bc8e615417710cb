//! The testcontainers fallback (`integration_tests::server_url` with no URL set) against
//! the ways a test process really ends in CI and at a terminal, and against the network it
//! publishes on.
//!
//! Each test runs this binary again as a child (the `child` test, a no-op unless
//! [`CHILD`] is set) with the Redis URL unset, so the child starts a container; the child
//! runs in a process group of its own, which the test then signals as `timeout` and Ctrl-C
//! do (the whole group, not one process). Whatever the child started must be gone a few
//! seconds later: the reaper that removes it may not die with the group.
//!
//! Needs a Docker daemon and the Redis image (`$SESSION_STORES_REDIS_IMAGE`, as
//! `scripts/services docker` prints); without them the tests skip loudly (a failure under
//! `CI`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use integration_tests::docker::{self, docker};
use integration_tests::{Backend, server_url};
use session_core::conformance::skip;

/// Set in the child: which backend's container it starts and holds.
const CHILD: &str = "CONTAINERS_ATTACK_CHILD";

/// How long a container may outlive its process (the reaper polls, then `docker rm`s).
const REMOVED_WITHIN: Duration = Duration::from_secs(20);

/// The child: starts a container through the fallback, says where it is, and waits to be
/// killed. In an ordinary run (no [`CHILD`]) it does nothing.
#[test]
fn child() {
    let backend = match std::env::var(CHILD).as_deref() {
        Ok("redis") => Backend::Redis,
        Ok("mysql") => Backend::Mysql,
        Ok("network") => {
            // As tests/cluster_partition.rs holds its cluster: a guard whose `Drop` removes it.
            let mut network = docker::Network::create("attack").expect("a network");
            let container = network
                .run("attack", &docker::redis_image(), &[])
                .expect("a container on it");
            say(&format!("{} {container}", network.name()));
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        _ => return,
    };
    let url = server_url(backend).expect("the child's container");
    say(&url);
    std::thread::sleep(Duration::from_secs(120));
}

/// Tells the parent what the child made (on the line after libtest's "test child ... ").
fn say(what: &str) {
    let mut out = std::io::stdout();
    writeln!(out, "URL={what}").unwrap();
    out.flush().unwrap();
}

/// The Redis image, or `None` after a loud skip when Docker or the image is missing.
fn ready(test: &str) -> Option<String> {
    let image = docker::redis_image();
    match docker::available(&image) {
        Ok(()) => Some(image),
        Err(reason) => {
            skip(test, &reason.0);
            None
        }
    }
}

/// This binary again, running only [`child`] for `backend`, in a process group of its own
/// (its id is the child's pid), with every backend URL unset.
fn spawn_child(backend: &str, extra_env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, backend)
        .env_remove("SESSION_STORES_REDIS_URL")
        .env_remove("SESSION_STORES_MYSQL_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    for (name, value) in extra_env {
        command.env(name, value);
    }
    command.spawn().expect("running the test binary again")
}

/// The URL the child prints once its container is ready.
fn child_url(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest's "test child ... " comes first on the line.
            if let Some((_, url)) = line.split_once("URL=") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the child never printed its container's URL")
}

/// The id of the test container whose port `port` is published on the host.
fn container_on_port(port: &str) -> String {
    let listing = docker(&[
        "ps",
        "--filter",
        &format!("label={}", docker::MANAGED_BY),
        "--format",
        "{{.ID}}\t{{.Ports}}",
    ])
    .unwrap();
    listing
        .lines()
        .find(|line| line.contains(&format!(":{port}->")))
        .and_then(|line| line.split('\t').next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no test container publishes port {port}: {listing}"))
}

fn port_of(url: &str) -> String {
    url.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .to_owned()
}

/// Removes the container when the test ends, whatever the reaper did, so a failing test
/// leaves nothing behind for the next one.
struct Remove(String);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", "--volumes", &self.0]);
    }
}

/// Kills the child's whole process group with `signal`, as `timeout`, Ctrl-C or a CI
/// runner's cancel do.
fn kill_group(child: &mut Child, signal: &str) {
    let group = format!("-{}", child.id());
    let status = Command::new("kill")
        .args(["-s", signal, "--", &group])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {signal} -- {group}");
    let _ = child.wait();
}

fn exists(id: &str) -> bool {
    !docker(&["ps", "-aq", "--filter", &format!("id={id}")])
        .unwrap()
        .is_empty()
}

fn assert_removed(id: &str, how: &str) {
    let started = Instant::now();
    while exists(id) {
        assert!(
            started.elapsed() < REMOVED_WITHIN,
            "container {id} was still there {REMOVED_WITHIN:?} after its test process {how}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn killed_group_leaves_no_container(signal: &str) {
    let test = format!("a {signal} to the test's process group");
    if ready(&test).is_none() {
        return;
    }
    let mut child = spawn_child("redis", &[]);
    let url = child_url(&mut child);
    let id = container_on_port(&port_of(&url));
    let _remove = Remove(id.clone());
    kill_group(&mut child, signal);
    assert_removed(&id, &format!("group got {signal}"));
}

/// `timeout 900 cargo test` and Ctrl-C signal the whole process group.
#[test]
fn a_sigterm_to_the_process_group_leaves_no_container() {
    killed_group_leaves_no_container("TERM");
}

#[test]
fn a_sigkill_to_the_process_group_leaves_no_container() {
    killed_group_leaves_no_container("KILL");
}

/// tests/cluster_partition.rs killed mid-run (a CI timeout): the `Network` guard's `Drop`
/// never runs, so its network and containers must go with the process all the same.
#[test]
fn a_killed_network_test_leaves_no_network_or_container() {
    if ready("a killed network test").is_none() {
        return;
    }
    let mut child = spawn_child("network", &[]);
    let said = child_url(&mut child);
    let (network, container) = said.split_once(' ').expect("network and container");
    let _remove = Remove(container.to_owned());
    kill_group(&mut child, "KILL");
    assert_removed(container, "was killed with its network");
    let started = Instant::now();
    while !docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name=^{network}$"),
    ])
    .unwrap()
    .is_empty()
    {
        if started.elapsed() > REMOVED_WITHIN {
            let _ = docker(&["network", "rm", network]);
            panic!(
                "network {network} was still there {REMOVED_WITHIN:?} after its test process was killed"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Killed while the container is starting (PostgreSQL's initdb, MariaDB's install-db take
/// seconds on 2 cores): the container exists before `start` returns. A "MariaDB" that never
/// logs its ready line (the Redis image) holds the child in that window.
#[test]
fn a_kill_while_the_container_starts_leaves_no_container() {
    let Some(image) = ready("a kill while the container starts") else {
        return;
    };
    let stuck = |_: ()| {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("ancestor={image}"),
            "--filter",
            "expose=3306",
        ])
        .unwrap()
    };
    let before = stuck(());
    let mut child = spawn_child("mysql", &[("SESSION_STORES_MYSQL_IMAGE", &image)]);
    let started = Instant::now();
    let id = loop {
        if let Some(id) = stuck(()).lines().find(|id| !before.contains(id)) {
            break id.to_owned();
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the child never created its container");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _remove = Remove(id.clone());
    // Past `docker create`, inside the wait for the ready line.
    std::thread::sleep(Duration::from_millis(1500));
    kill_group(&mut child, "KILL");
    assert_removed(&id, "was killed while it started");
}

/// The ports are asked for on 127.0.0.1, whatever the daemon's default (a dockerd that apt
/// started, as `apt-get install docker.io` does on a systemd machine, publishes on
/// 0.0.0.0: a Redis without a password for the whole network).
#[test]
fn ports_are_published_on_loopback_only() {
    if ready("the container's published ports").is_none() {
        return;
    }
    let mut child = spawn_child("redis", &[]);
    let url = child_url(&mut child);
    let id = container_on_port(&port_of(&url));
    let _remove = Remove(id.clone());
    let asked = docker(&[
        "inspect",
        "--format",
        "{{json .HostConfig.PortBindings}}",
        &id,
    ]);
    let got = docker(&[
        "inspect",
        "--format",
        "{{json .NetworkSettings.Ports}}",
        &id,
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let (asked, got) = (asked.unwrap(), got.unwrap());
    let asked: serde_json::Value = serde_json::from_str(&asked).unwrap();
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    for (what, bindings) in [("asked for", &asked), ("published", &got)] {
        let ips: Vec<&str> = bindings
            .as_object()
            .into_iter()
            .flat_map(|ports| ports.values())
            .filter_map(|b| b.as_array())
            .flatten()
            .map(|b| b["HostIp"].as_str().unwrap_or(""))
            .collect();
        assert!(
            !ips.is_empty() && ips.iter().all(|ip| *ip == "127.0.0.1"),
            "ports {what} on {ips:?}, not 127.0.0.1 only: {bindings}"
        );
    }
}

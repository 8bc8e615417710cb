//! Attacks on session-redis's replication promises, on real servers started by the test
//! (never the shared ones of `scripts/services`).
//!
//! 1. fred on a Cluster: a write the server **ran**, whose reply fred had not read yet when
//!    a cluster resync dropped that node's connection (the node left the primaries in a
//!    failover), must not be sent again. fred puts the in-flight commands of a connection
//!    its resync closes (`clustered::sync`: `changes.remove`, `drop_broken_connections`) back
//!    in its retry buffer without checking their attempts, then fails each one with
//!    "Too many failed write attempts" as it replays them (`write_command`,
//!    `decr_check_attempted`). The store classifies that text as "not sent" (it assumes
//!    only a refused MOVED/ASK leads there) and sends the compare-and-swap again. The
//!    test holds the reply to one `update` in a proxy in front of the primary, fails that
//!    primary over to its replica (`CLUSTER FAILOVER TAKEOVER`, the write already
//!    replicated), and makes fred resync through a `MOVED` on another node; then the update
//!    must be applied once and never be reported as a conflict.
//! 2. fred on a Cluster, a `NOSCRIPT` on one node while a write's reply is in flight on
//!    another: fred's script reload (`SCRIPT LOAD` to every primary) first drains every
//!    connection. If the other node's connection is then reset, fred re-queues every
//!    in-flight command (`Router::disconnect_all`) and the store resends the write that
//!    ran; if the other node stays silent, the drain never ends and the whole client serves
//!    no call.
//! 3. redis-rs on Sentinel with the first sentinel hung (SIGSTOP: a frozen host, or one
//!    whose packets are dropped) and the other two healthy: after the primary's connection
//!    drops, the store must find the primary again through the other sentinels. Both
//!    clients.
//! 4. The builder refuses `Durability` settings that cannot work (no replica, a `WAIT`
//!    as long as the call timeout) before connecting (a dead URL: no timeout instead of
//!    the reason), with both clients.

#![allow(clippy::unwrap_used)] // a failed call is a failed test

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::proxy::FaultProxy;
use integration_tests::{free_port, in_an_hour, wait_until};
use redis::Commands;
use session_core::{Error, Record, SessionId, SessionStore};
use session_redis::{Durability, RedisStore};

/// A cluster-mode `redis-server` of the test's own, killed and its directory removed on drop.
struct ClusterNode {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl ClusterNode {
    /// Starts one on `port` (its bus on `bus`), announcing `announce` as its client port.
    fn start(port: u16, bus: u16, announce: u16) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "replication-attack-{}-{port}",
            SessionId::generate().expose()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
            .args(["--cluster-port", &bus.to_string()])
            .args(["--cluster-announce-ip", "127.0.0.1"])
            .args(["--cluster-announce-port", &announce.to_string()])
            .args(["--cluster-announce-bus-port", &bus.to_string()])
            .arg("--cluster-config-file")
            .arg(dir.join("nodes.conf"))
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        let node = Self { port, child, dir };
        let until = Instant::now() + Duration::from_secs(10);
        while node.conn_opt().is_none() {
            assert!(
                Instant::now() < until,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    fn conn_opt(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut con).ok()?;
        Some(con)
    }

    fn conn(&self) -> redis::Connection {
        self.conn_opt().unwrap()
    }

    fn id(&self) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.conn())
            .unwrap()
    }

    fn cmd(&self, args: &[&str]) -> redis::Value {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.conn())
            .unwrap_or_else(|err| panic!("{args:?} on {}: {err}", self.port))
    }

    fn info(&self, section: &str, field: &str) -> Option<String> {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.conn())
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_owned())
    }

    /// The port `CLUSTER SLOTS` on this node names as the primary of `slot`.
    fn owner_port(&self, slot: i64) -> Option<i64> {
        let slots: Vec<(i64, i64, (String, i64))> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<Vec<redis::Value>>(&mut self.conn())
            .unwrap()
            .into_iter()
            .filter_map(|range| {
                let redis::Value::Array(fields) = range else {
                    return None;
                };
                let start = redis::from_redis_value::<i64>(fields[0].clone()).ok()?;
                let end = redis::from_redis_value::<i64>(fields[1].clone()).ok()?;
                let redis::Value::Array(primary) = &fields[2] else {
                    return None;
                };
                let host = redis::from_redis_value::<String>(primary[0].clone()).ok()?;
                let port = redis::from_redis_value::<i64>(primary[1].clone()).ok()?;
                Some((start, end, (host, port)))
            })
            .collect();
        slots
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, (_, port))| port)
    }

    /// How many `EVALSHA` calls this node ran to the end (not refused, not failed: a
    /// `NOSCRIPT` is a failed call).
    fn evalsha_runs(&self) -> i64 {
        let Some(stats) = self.info("commandstats", "cmdstat_evalsha") else {
            return 0;
        };
        let field = |name: &str| -> i64 {
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        field("calls") - field("failed_calls") - field("rejected_calls")
    }

    fn keyslot(&self, key: &str) -> i64 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.conn())
            .unwrap()
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three nodes: `a` (slots 0-8191, reached through `proxy`), `b` (8192-16383) and `r`, the
/// replica of `a`.
struct SmallCluster {
    a: ClusterNode,
    b: ClusterNode,
    r: ClusterNode,
    proxy: FaultProxy,
}

impl SmallCluster {
    async fn start() -> Self {
        let a_port = free_port();
        let proxy = FaultProxy::start(&format!("127.0.0.1:{a_port}"))
            .await
            .unwrap();
        let a = ClusterNode::start(a_port, free_port(), proxy.port());
        let b_port = free_port();
        let b = ClusterNode::start(b_port, free_port(), b_port);
        let r_port = free_port();
        let r = ClusterNode::start(r_port, free_port(), r_port);
        a.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "8191"]);
        b.cmd(&["CLUSTER", "ADDSLOTSRANGE", "8192", "16383"]);
        let a_bus_port: String = {
            let config: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("cluster-port")
                .query(&mut a.conn())
                .unwrap();
            config[1].clone()
        };
        for node in [&b, &r] {
            node.cmd(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &a_port.to_string(),
                &a_bus_port,
            ]);
        }
        let cluster = Self { a, b, r, proxy };
        wait_until(
            "the three nodes to know each other",
            Duration::from_secs(10),
            || {
                [&cluster.a, &cluster.b, &cluster.r].iter().all(|node| {
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query(&mut node.conn())
                        .unwrap();
                    info.contains("cluster_known_nodes:3")
                })
            },
        );
        let a_id = cluster.a.id();
        cluster.r.cmd(&["CLUSTER", "REPLICATE", &a_id]);
        wait_until("the replica to sync", Duration::from_secs(10), || {
            cluster
                .r
                .info("replication", "master_link_status")
                .as_deref()
                == Some("up")
        });
        wait_until("the cluster to be ok", Duration::from_secs(10), || {
            [&cluster.a, &cluster.b, &cluster.r].iter().all(|node| {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.conn())
                    .unwrap();
                info.contains("cluster_state:ok")
            })
        });
        cluster
    }
}

/// A session id whose key (`prefix` + id) hashes to a slot `wanted` accepts.
fn id_in(node: &ClusterNode, prefix: &str, wanted: impl Fn(i64) -> bool) -> (SessionId, i64) {
    loop {
        let id = SessionId::generate();
        let slot = node.keyslot(&format!("{prefix}{}", id.expose()));
        if wanted(slot) {
            return (id, slot);
        }
    }
}

async fn failover_with_a_reply_in_flight(durability: Durability) {
    if let Err(reason) = integration_tests::servers::redis_server_version() {
        return session_core::conformance::skip("replication_attack", &reason);
    }
    let cluster = SmallCluster::start().await;
    let prefix = "ra:";
    // Seeded with `b` only: fred learns the rest from CLUSTER SLOTS, and its backchannel
    // (which answers CLUSTER SLOTS on a resync) is `b`, never the held proxy.
    let store = Arc::new(
        RedisStore::builder()
            .cluster_urls([format!("redis://127.0.0.1:{}", cluster.b.port)])
            .fred()
            .pool_size(1)
            .prefix(prefix)
            .timeout(Duration::from_secs(5))
            .durability(durability)
            .connect()
            .await
            .unwrap(),
    );

    // The session on `a`, its update script loaded there by a first update.
    let (id, _) = id_in(&cluster.b, prefix, |slot| slot < 8192);
    let mut record = Record::with_id(id.clone(), in_an_hour());
    record.insert("n", 0).unwrap();
    store.insert(&mut record).await.unwrap();
    record.insert("n", 1).unwrap();
    store.update(&mut record).await.unwrap();
    // An empty slot of `b` that fred still maps to `b` once it has moved: a MOVED there
    // makes fred resync its slot map.
    let (other, moved_slot) = id_in(&cluster.b, prefix, |slot| slot >= 8192);
    assert_eq!(store.get(&other).await.unwrap(), None);

    let marker = format!("in-flight-{}", SessionId::generate().expose());
    let before = record.version();
    let mut changed = record.clone();
    changed.insert("marker", &marker).unwrap();
    cluster.proxy.arm_hold(&[marker.as_bytes()]);
    let update = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let result = store.update(&mut changed).await;
            (result, changed)
        }
    });

    // The update has reached `a` (and ran there); its reply is held.
    let held = Instant::now();
    while !cluster.proxy.holding() {
        assert!(
            held.elapsed() < Duration::from_secs(3),
            "the update never left"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until(
        "the replica to copy the update",
        Duration::from_secs(3),
        || {
            let primary = cluster.a.info("replication", "master_repl_offset");
            let replica = cluster.r.info("replication", "master_repl_offset");
            primary.is_some() && primary == replica
        },
    );
    let replicated: Option<Vec<u8>> = {
        let mut con = cluster.r.conn();
        redis::cmd("READONLY").query::<()>(&mut con).unwrap();
        con.get(format!("{prefix}{}", id.expose())).unwrap()
    };
    let ran = replicated.is_some_and(|v| v.windows(marker.len()).any(|w| w == marker.as_bytes()));
    assert!(
        ran,
        "the update did not run on the primary before the failover"
    );
    assert!(
        !update.is_finished(),
        "the update returned: its reply was not held"
    );

    // Fail `a` over to its replica, and move the empty slot away from `b` (to the new
    // primary), as a rolling maintenance would.
    cluster.r.cmd(&["CLUSTER", "FAILOVER", "TAKEOVER"]);
    let r_port = i64::from(cluster.r.port);
    wait_until("b to see the failover", Duration::from_secs(5), || {
        cluster.b.owner_port(0) == Some(r_port)
    });
    // The new primary has run no script yet: as a replica it applied the scripts' effects.
    let runs_before = cluster.r.evalsha_runs();
    let r_id = cluster.r.id();
    let slot = moved_slot.to_string();
    cluster.b.cmd(&["CLUSTER", "SETSLOT", &slot, "NODE", &r_id]);
    cluster.r.cmd(&["CLUSTER", "SETSLOT", &slot, "NODE", &r_id]);
    wait_until("b to see the slot moved", Duration::from_secs(5), || {
        cluster.b.owner_port(moved_slot) == Some(r_port)
    });

    // A call on the moved slot: `b` answers MOVED, fred resyncs and drops its connection to
    // `a` (no longer a primary), the update's reply still unread.
    let moved_call = tokio::time::timeout(Duration::from_secs(6), store.get(&other)).await;
    let (result, _) = tokio::time::timeout(Duration::from_secs(6), update)
        .await
        .expect("the update outlived its timeout")
        .unwrap();
    let resent = cluster.r.evalsha_runs() - runs_before;
    eprintln!(
        "{durability:?}: call on the moved slot: {moved_call:?}; update with its reply held: \
         {result:?}; update scripts run on the new primary since the failover: {resent}"
    );

    let stored = {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match store.get(&id).await {
                Ok(found) => break found.expect("the session vanished"),
                Err(err) if err.is_retryable() && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("reading back: {err}"),
            }
        }
    };
    let applied = stored.get::<String>("marker").unwrap().as_deref() == Some(marker.as_str());
    assert!(applied, "the replicated update is gone after the failover");
    assert_eq!(
        resent, 0,
        "{durability:?}: the update ran on the old primary (replicated before the failover), yet \
         the store sent it again to the new primary after fred's resync dropped the old \
         primary's connection (fred answers such an in-flight command 'Too many failed write \
         attempts', which fred_client::map_err takes for a never-sent redirection); the update \
         returned {result:?}"
    );
    assert!(
        !result.as_ref().is_err_and(Error::is_conflict),
        "{durability:?}: an update that ran (and was replicated) was sent again after fred's cluster resync \
         dropped its connection, and the second send was reported as a conflict, so a modify \
         retry would apply the change twice: {result:?}"
    );
    assert_eq!(stored.version(), before + 1, "the update was applied twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_cluster_failover_does_not_resend_a_write_whose_reply_was_in_flight() {
    failover_with_a_reply_in_flight(Durability::Primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_cluster_failover_does_not_resend_a_replicated_write_whose_reply_was_in_flight() {
    failover_with_a_reply_in_flight(Durability::Replicated {
        replicas: 1,
        timeout: Duration::from_millis(500),
    })
    .await;
}

/// A store on `cluster` (fred, one connection, seeded with `b`) and a session on the node
/// `on` accepts, its update script loaded there by a first update.
async fn store_and_session(
    cluster: &SmallCluster,
    prefix: &str,
    on: impl Fn(i64) -> bool,
) -> (Arc<RedisStore>, Record) {
    let store = Arc::new(
        RedisStore::builder()
            .cluster_urls([format!("redis://127.0.0.1:{}", cluster.b.port)])
            .fred()
            .pool_size(1)
            .prefix(prefix)
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap(),
    );
    let (id, _) = id_in(&cluster.b, prefix, on);
    let mut record = Record::with_id(id, in_an_hour());
    record.insert("n", 0).unwrap();
    store.insert(&mut record).await.unwrap();
    record.insert("n", 1).unwrap();
    store.update(&mut record).await.unwrap();
    (store, record)
}

/// The update script misses on `b` (a restarted or just-promoted node) while a write's reply
/// is in flight from `a`: fred loads the script on every primary (`SCRIPT LOAD` to all
/// nodes), first draining every connection (`Router::drain_all`). `reset`: `a`'s connection
/// is then reset, which fails the drain, and fred moves every in-flight command of every
/// node to its retry buffer (`Router::disconnect_all`, no attempt check) and answers each
/// "Too many failed write attempts" as it replays them. Otherwise `a` stays silent.
async fn script_reload_with_a_reply_in_flight(reset: bool) {
    if let Err(reason) = integration_tests::servers::redis_server_version() {
        return session_core::conformance::skip("replication_attack", &reason);
    }
    let cluster = SmallCluster::start().await;
    let prefix = "rl:";
    let (store, on_a) = store_and_session(&cluster, prefix, |slot| slot < 8192).await;
    let (id, _) = id_in(&cluster.b, prefix, |slot| slot >= 8192);
    let mut on_b = Record::with_id(id, in_an_hour());
    on_b.insert("n", 0).unwrap();
    store.insert(&mut on_b).await.unwrap();
    on_b.insert("n", 1).unwrap();
    store.update(&mut on_b).await.unwrap();

    let marker = format!("in-flight-{}", SessionId::generate().expose());
    let before = on_a.version();
    let mut changed = on_a.clone();
    changed.insert("marker", &marker).unwrap();
    cluster.proxy.arm_hold(&[marker.as_bytes()]);
    let update_a = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.update(&mut changed).await }
    });
    let key_a = format!("{prefix}{}", on_a.id().expose());
    wait_until("the update to run on a", Duration::from_secs(3), || {
        let value: Option<Vec<u8>> = cluster.a.conn().get(&key_a).unwrap();
        value.is_some_and(|v| v.windows(marker.len()).any(|w| w == marker.as_bytes()))
    });
    assert!(cluster.proxy.holding(), "the update's reply was not held");
    assert!(
        !update_a.is_finished(),
        "the update on a returned: its reply was not held"
    );
    let runs_before = cluster.a.evalsha_runs();

    // `b` loses its scripts (restarted, or a replica just promoted).
    cluster.b.cmd(&["SCRIPT", "FLUSH"]);
    on_b.insert("n", 2).unwrap();
    let update_b = tokio::spawn({
        let store = Arc::clone(&store);
        let mut on_b = on_b.clone();
        async move {
            let started = Instant::now();
            (store.update(&mut on_b).await, started.elapsed())
        }
    });
    if !reset {
        // `b` is healthy: its write must not wait on `a`'s silence.
        let (result, took) = tokio::time::timeout(Duration::from_secs(3), update_b)
            .await
            .expect("the update on b outlived its timeout")
            .unwrap();
        // Long after the silent call's own timeout: is the client still stuck?
        let read_b = tokio::time::timeout(Duration::from_secs(3), store.get(on_b.id())).await;
        eprintln!(
            "update on b (script reloaded) while a is silent: {result:?} in {took:?}; then a \
             read on b: {read_b:?}"
        );
        assert!(
            result.is_ok(),
            "a write to the healthy node b failed after {took:?} ({result:?}), and a read on b \
             after it returned {read_b:?}: b's script reload (fred's SCRIPT LOAD to every \
             primary) first waits for every in-flight reply of every node \
             (Router::drain_all, no timeout) while node a is silent, and fred's one router \
             serves no other call meanwhile"
        );
        update_a.abort();
        return;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.proxy.reset_held();
    let result_a = tokio::time::timeout(Duration::from_secs(3), update_a)
        .await
        .expect("the update on a outlived its timeout")
        .unwrap();
    let result_b = tokio::time::timeout(Duration::from_secs(3), update_b)
        .await
        .expect("the update on b outlived its timeout")
        .unwrap();
    let resent = cluster.a.evalsha_runs() - runs_before;
    eprintln!(
        "update on a (reply in flight, connection reset during b's script reload): \
         {result_a:?}; update on b: {result_b:?}; update scripts run again on a: {resent}"
    );
    assert_eq!(
        resent, 0,
        "the update ran on a, its connection was reset while fred drained it for b's script \
         reload, and the store sent it again (fred answered it 'Too many failed write \
         attempts' after Router::disconnect_all, which fred_client::map_err takes for a \
         never-sent redirection); it returned {result_a:?}"
    );
    let stored = store.get(on_a.id()).await.unwrap().unwrap();
    assert_eq!(stored.version(), before + 1, "the update was applied twice");
    assert!(
        !result_a.as_ref().is_err_and(Error::is_conflict),
        "an update that ran was reported as a conflict: {result_a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_cluster_script_reload_does_not_resend_writes_in_flight_elsewhere() {
    script_reload_with_a_reply_in_flight(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_cluster_script_reload_does_not_wait_on_a_silent_node() {
    script_reload_with_a_reply_in_flight(false).await;
}

/// A process of the test's own (a primary or a sentinel), killed and its directory removed
/// on drop.
struct Proc {
    child: Child,
    dir: PathBuf,
}

impl Proc {
    fn spawn(port: u16, args: impl FnOnce(&PathBuf) -> Command) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "replication-attack-{}-{port}",
            SessionId::generate().expose()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let child = args(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        wait_until("a server to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self { child, dir }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary (no replica) watched by three sentinels, all of the test's own.
struct SentinelTrio {
    primary_port: u16,
    primary: Proc,
    sentinels: Vec<(u16, Proc)>,
}

impl SentinelTrio {
    fn start() -> Self {
        let primary_port = free_port();
        let primary = Proc::spawn(primary_port, |dir| {
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &primary_port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir);
            command
        });
        let sentinels: Vec<(u16, Proc)> = (0..3)
            .map(|_| {
                let port = free_port();
                let proc = Proc::spawn(port, |dir| {
                    let config = dir.join("sentinel.conf");
                    std::fs::write(
                        &config,
                        format!(
                            "port {port}\nbind 127.0.0.1\ndir {}\n\
                             sentinel monitor trio 127.0.0.1 {primary_port} 2\n\
                             sentinel down-after-milliseconds trio 1000\n\
                             sentinel failover-timeout trio 3000\n",
                            dir.display()
                        ),
                    )
                    .unwrap();
                    let mut command = Command::new("redis-server");
                    command.arg(&config).arg("--sentinel");
                    command
                });
                (port, proc)
            })
            .collect();
        let trio = Self {
            primary_port,
            primary,
            sentinels,
        };
        wait_until(
            "the sentinels to know the primary",
            Duration::from_secs(10),
            || {
                trio.sentinels.iter().all(|(port, _)| {
                    redis::Client::open(format!("redis://127.0.0.1:{port}"))
                        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                        .and_then(|mut con| {
                            redis::cmd("SENTINEL")
                                .arg("get-master-addr-by-name")
                                .arg("trio")
                                .query::<Option<(String, u16)>>(&mut con)
                        })
                        .ok()
                        .flatten()
                        .is_some_and(|(_, port)| port == primary_port)
                })
            },
        );
        trio
    }

    fn url(&self) -> String {
        let mut ports = self.sentinels.iter().map(|(port, _)| port);
        let first = ports.next().unwrap();
        let nodes: String = ports
            .map(|port| format!("&node=127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://127.0.0.1:{first}?sentinelServiceName=trio{nodes}")
    }
}

async fn hung_first_sentinel(fred: bool) {
    if let Err(reason) = integration_tests::servers::redis_server_version() {
        return session_core::conformance::skip("replication_attack", &reason);
    }
    let trio = SentinelTrio::start();
    let builder = RedisStore::builder()
        .url(trio.url())
        .prefix("hs:")
        .timeout(Duration::from_secs(1));
    let store = if fred {
        builder.fred()
    } else {
        builder.redis_rs()
    }
    .connect()
    .await
    .unwrap();
    let mut record = Record::new(in_an_hour());
    record.insert("n", 1).unwrap();
    store.insert(&mut record).await.unwrap();

    // The first sentinel hangs; the primary drops every client connection (a restart, a
    // network blip): the store must ask the other sentinels where the primary is.
    trio.sentinels[0].1.signal("-STOP");
    let admin = redis::Client::open(format!("redis://127.0.0.1:{}", trio.primary_port)).unwrap();
    let mut admin = admin.get_connection().unwrap();
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query::<i64>(&mut admin)
        .unwrap();

    let started = Instant::now();
    let mut last = None;
    let recovered = loop {
        match store.get(record.id()).await {
            Ok(Some(_)) => break true,
            other => last = Some(other),
        }
        if started.elapsed() > Duration::from_secs(6) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = started.elapsed();
    trio.sentinels[0].1.signal("-CONT");
    let client = if fred { "fred" } else { "redis-rs" };
    eprintln!("{client}: hung first sentinel: recovered {recovered} after {took:?}; last {last:?}");
    assert!(
        recovered,
        "{client}: with the first sentinel hung and the primary and two sentinels healthy, \
         the store did not find the primary again within {took:?} (last: {last:?})"
    );
    drop(trio.primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_sentinel_finds_the_primary_with_the_first_sentinel_hung() {
    hung_first_sentinel(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_sentinel_finds_the_primary_with_the_first_sentinel_hung() {
    hung_first_sentinel(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_refuses_durability_that_cannot_work() {
    let bad = [
        Durability::Replicated {
            replicas: 0,
            timeout: Duration::from_millis(100),
        },
        Durability::Replicated {
            replicas: 1,
            timeout: Duration::ZERO,
        },
        Durability::Replicated {
            replicas: 1,
            timeout: Duration::from_secs(2),
        },
    ];
    // Nothing listens there: a settings check that ran after connecting would time out
    // (retryable) instead of saying what is wrong.
    let dead = format!("redis://127.0.0.1:{}", free_port());
    for durability in bad {
        for fred in [true, false] {
            let builder = RedisStore::builder()
                .url(dead.clone())
                .timeout(Duration::from_secs(1))
                .durability(durability);
            let builder = if fred {
                builder.fred()
            } else {
                builder.redis_rs()
            };
            let started = Instant::now();
            let err = builder.connect().await.unwrap_err();
            assert!(
                matches!(err, Error::Config(_)),
                "{durability:?} (fred: {fred}): {err}"
            );
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{durability:?}"
            );
        }
    }
}

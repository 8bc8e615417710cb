//! Attacks on session-redis's `Durability::Replicated` promises, on servers the test starts
//! itself (never the shared ones of `scripts/services`, which other tests use):
//!
//! 1. Reads answer while no replica confirms: a read that the store runs as a script (the
//!    express-session format's `get`, `list_by_owner`) must not wait for replicas, nor be
//!    reported as an unconfirmed write. It did both (found here): every script went the
//!    durable way, so with no replica an express `get` and every `list_by_owner` failed
//!    with "the write was applied on the primary but only 0 of the 1 replicas required
//!    confirmed it", and with writers busy an express `get` timed out waiting for a turn.
//! 2. A caller that gives up (its future dropped at any point: waiting for its turn, its
//!    write in flight) gives its turn back: afterwards the connection still serves writes.
//! 3. Every acknowledged write is on the replica: writes flow while replication is held
//!    back now and then (a proxy between primary and replica), then replication is cut for
//!    good and the replica promoted; every write the store acknowledged must be there.
//! 4. A write whose connection is killed while its `WAIT` blocks is reported as failed (not
//!    as done, not as a conflict) and runs once: the client never sends it again.
//! 5. A write whose turn does not come within the call timeout is never sent.
//! 6. On a Cluster, one primary without its replica does not stall writes to the others.
//!
//! Every store call is also checked to end within its timeout (plus a generous margin).

#![allow(clippy::unwrap_used)] // a failed call is a failed test

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use integration_tests::proxy::FaultProxy;
use integration_tests::{free_port, in_an_hour, wait_until};
use session_core::{Error, Record, SessionId, SessionStore, StoreOptions};
use session_redis::{Client, Durability, RedisStore};

const CLIENTS: [Client; 2] = [Client::Fred, Client::RedisRs];

fn unique_prefix() -> String {
    format!("da:{}:sess:", &SessionId::generate().expose()[..12])
}

fn conn_at(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    Some(con)
}

/// `field` of `INFO section` of the server on `port`, if it answers.
fn info_at(port: u16, section: &str, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut conn_at(port)?)
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
}

/// A `redis-server` of the test's own, killed and its directory removed on drop.
struct Server {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Server {
    /// Starts one on a free port with `extra` arguments; a port another process took in
    /// the meantime is tried again with a fresh one.
    fn start(extra: &[String]) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "durability-attack-{}-{port}",
                &SessionId::generate().expose()[..12]
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(extra)
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on the PATH");
            let pid = child.id().to_string();
            let until = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken: try another
                }
                if info_at(port, "server", "process_id").is_some_and(|p| p == pid) {
                    return Self { port, child, dir };
                }
                assert!(
                    Instant::now() < until,
                    "redis-server on {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("no free port for redis-server in 5 attempts");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn conn(&self) -> redis::Connection {
        conn_at(self.port).unwrap()
    }

    fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.conn())
            .unwrap_or_else(|err| panic!("{args:?} on {}: {err}", self.port))
    }

    fn info_opt(&self, section: &str, field: &str) -> Option<String> {
        info_at(self.port, section, field)
    }

    /// How many times `command` (lower case) ran to the end here since the last
    /// `CONFIG RESETSTAT` (refused and failed calls not counted).
    fn runs(&self, command: &str) -> i64 {
        let Some(stats) = self.info_opt("commandstats", &format!("cmdstat_{command}")) else {
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

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary and its replica, which replicates through a [`FaultProxy`] (paused to hold
/// replication back, severed to cut it for good).
struct Pair {
    primary: Server,
    replica: Server,
    proxy: FaultProxy,
}

impl Pair {
    async fn start() -> Self {
        let primary = Server::start(&[]);
        let proxy = FaultProxy::start(&format!("127.0.0.1:{}", primary.port))
            .await
            .unwrap();
        let replica = Server::start(&[
            "--replicaof".into(),
            "127.0.0.1".into(),
            proxy.port().to_string(),
        ]);
        let pair = Self {
            primary,
            replica,
            proxy,
        };
        pair.wait_in_sync();
        pair
    }

    /// Waits until the replica confirms a write of the primary's.
    fn wait_in_sync(&self) {
        wait_until(
            "the replica to confirm writes",
            Duration::from_secs(30),
            || {
                let mut con = self.primary.conn();
                let _: () = redis::cmd("SET")
                    .arg("da:probe")
                    .arg(1)
                    .query(&mut con)
                    .unwrap();
                let acked: i64 = redis::cmd("WAIT").arg(1).arg(100).query(&mut con).unwrap();
                acked == 1
            },
        );
    }
}

/// What is sure about one session once an operation on it was acknowledged or failed.
#[derive(Debug, Default, Clone)]
struct Known {
    /// The highest version an acknowledged create or update gave it.
    acked_version: Option<u64>,
    /// Its destroy was acknowledged.
    destroyed: bool,
    /// A destroy of it failed (it may or may not have happened).
    maybe_destroyed: bool,
}

async fn store(
    url: &str,
    client: Client,
    call: Duration,
    wait: Duration,
    express: bool,
) -> RedisStore {
    let mut builder = RedisStore::builder()
        .url(url)
        .client(client)
        .durability(Durability::Replicated {
            replicas: 1,
            timeout: wait,
        })
        .prefix(unique_prefix())
        .options(StoreOptions {
            timeout: call,
            ..StoreOptions::default()
        });
    if express {
        builder = builder.express_session();
    }
    builder
        .connect()
        .await
        .unwrap_or_else(|err| panic!("{client:?}: cannot connect to {url}: {err}"))
}

/// Runs `call` with a bound of the store's timeout plus a margin; `Err(())` when the
/// store let it run past that (a hung call).
async fn bounded<T>(
    call_timeout: Duration,
    call: impl std::future::Future<Output = T>,
) -> Result<T, ()> {
    tokio::time::timeout(call_timeout + Duration::from_secs(3), call)
        .await
        .map_err(drop)
}

// ---------------------------------------------------------------------------------------
// 1. Reads answer while no replica confirms.

/// A read the store runs as a script (express-session's `get` reads the value and its
/// expiry at once; `list_by_owner` reads the index and the sessions at once on one
/// server) is a read: on a primary with no replica, where every write fails its `WAIT`,
/// it must still answer, as `GET` does. Before the fix it went through the durable path:
/// it waited for a turn and for the whole `WAIT`, then failed with "the write was applied
/// on the primary but only 0 of the 1 replicas required confirmed it".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_reads_answer_while_no_replica_confirms() {
    let call = Duration::from_secs(2);
    let wait = Duration::from_millis(200);
    for client in CLIENTS {
        let server = Server::start(&[]);
        let mut failures = Vec::new();
        for express in [true, false] {
            let store = store(&server.url(), client, call, wait, express).await;
            let mut record = Record::new(in_an_hour());
            record.set_owner(Some("owner-1".into()));
            record.insert("n", 1).unwrap();
            // No replica: applied on the primary, reported as unconfirmed.
            let created = bounded(call, store.create(&mut record)).await.unwrap();
            assert!(
                created.is_err(),
                "{client:?}: no replica confirmed: {created:?}"
            );
            let got = bounded(call, store.get(record.id())).await;
            match got {
                Ok(Ok(Some(found))) if found.id() == record.id() => {}
                other => failures.push(format!("express {express}: get: {other:?}")),
            }
            let listed = bounded(call, store.list_by_owner("owner-1")).await;
            match listed {
                Ok(Ok(list)) if list.len() == 1 => {}
                other => failures.push(format!("express {express}: list_by_owner: {other:?}")),
            }
        }
        assert!(
            failures.is_empty(),
            "{client:?}: reads failed on a primary with no replica: {failures:#?}"
        );
    }
}

/// The same while writers keep the connection's turns busy with `WAIT`s that run out:
/// an express-session read must answer every time, like a `GET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_reads_go_on_while_writers_wait_for_replicas() {
    let call = Duration::from_secs(1);
    let wait = Duration::from_millis(200);
    for client in CLIENTS {
        let server = Server::start(&[]);
        let store = Arc::new(store(&server.url(), client, call, wait, true).await);
        let mut record = Record::new(in_an_hour());
        let _ = store.create(&mut record).await;
        // Loads the read script while the connection is idle: a first read's NOSCRIPT
        // costs two more round trips, each behind the WAITs queued then (not judged here).
        let _ = store.get(record.id()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let mut record = Record::new(in_an_hour());
                        let _ = store.create(&mut record).await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (mut answered, mut failed) = (0, Vec::new());
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            match bounded(call, store.get(record.id())).await {
                Ok(Ok(Some(_))) => answered += 1,
                other => failed.push(format!("{other:?}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(
            failed.is_empty() && answered > 0,
            "{client:?}: {} of {} express reads failed while writers waited for a replica: \
             {:?}",
            failed.len(),
            failed.len() + answered,
            &failed[..failed.len().min(5)]
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. Cancelled callers give their turns back.

/// Writers whose futures are dropped at every point (before their first poll finishes,
/// while waiting for a turn, with the write and its `WAIT` in flight) while the replica
/// confirms nothing: once replication flows again, the store must serve writes. A turn
/// kept by a caller that went away would leave the connection with fewer turns, and with
/// all of them gone no write would ever be sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_writers_give_their_turns_back() {
    // Two turns per connection (2 s / (2 x 400 ms)).
    let call = Duration::from_secs(2);
    let wait = Duration::from_millis(400);
    for client in CLIENTS {
        let pair = Pair::start().await;
        let store = Arc::new(store(&pair.primary.url(), client, call, wait, false).await);
        // Warm up: scripts loaded, connections made.
        let mut warm = Record::new(in_an_hour());
        store.create(&mut warm).await.unwrap();
        pair.proxy.pause_now().await;
        let cancelled = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (store, cancelled, warm) = (store.clone(), cancelled.clone(), warm.clone());
                tokio::spawn(async move {
                    let until = Instant::now() + Duration::from_secs(3);
                    let mut n: u64 = i;
                    while Instant::now() < until {
                        n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        // 0 to 700 ms: no poll past the first, a turn's wait, a WAIT.
                        let after = Duration::from_millis((n >> 33) % 700);
                        let mut record = Record::new(in_an_hour());
                        let update = {
                            let mut warm = warm.clone();
                            let store = store.clone();
                            async move { store.update(&mut warm).await }
                        };
                        let outcome = if n.is_multiple_of(3) {
                            tokio::select! {
                                done = update => Some(done.map(drop)),
                                () = tokio::time::sleep(after) => None,
                            }
                        } else {
                            tokio::time::timeout(after, store.create(&mut record))
                                .await
                                .ok()
                        };
                        if outcome.is_none() {
                            cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(
            cancelled.load(Ordering::Relaxed) > 20,
            "too few callers gave up"
        );
        pair.proxy.pause(false);
        pair.wait_in_sync();
        // More writers at once than the connection(s) have turns, each given several tries
        // (a loaded machine may miss one WAIT): all must get through.
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut errors = Vec::new();
                    for _ in 0..5 {
                        let mut record = Record::new(in_an_hour());
                        match bounded(call, store.create(&mut record)).await {
                            Ok(Ok(())) => return Ok(()),
                            other => errors.push(format!("{other:?}")),
                        }
                    }
                    Err(errors)
                })
            })
            .collect();
        let mut stuck = Vec::new();
        for writer in writers {
            if let Err(errors) = writer.await.unwrap() {
                stuck.push(errors);
            }
        }
        assert!(
            stuck.is_empty(),
            "{client:?}: after {} cancelled callers, {} of 8 writers got no write through \
             in 5 tries with replication flowing again: {:?}",
            cancelled.load(Ordering::Relaxed),
            stuck.len(),
            stuck.first()
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. Every acknowledged write is on the replica.

async fn writer(
    store: Arc<RedisStore>,
    stop: Arc<AtomicBool>,
    call: Duration,
) -> Vec<(SessionId, Known)> {
    let mut known = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut record = Record::new(in_an_hour());
        record.insert("n", 0).unwrap();
        let mut facts = Known::default();
        let id = record.id().clone();
        let created = bounded(call, store.create(&mut record))
            .await
            .expect("hung create");
        if created.is_ok() {
            facts.acked_version = Some(record.version());
            for n in 1..=2 {
                record.insert("n", n).unwrap();
                match bounded(call, store.update(&mut record))
                    .await
                    .expect("hung update")
                {
                    Ok(()) => facts.acked_version = Some(record.version()),
                    Err(_) => break, // unknown from here: the session is left as it is
                }
            }
            if record.get::<i64>("n").unwrap() == Some(2) && known.len().is_multiple_of(2) {
                match bounded(call, store.destroy(&id))
                    .await
                    .expect("hung destroy")
                {
                    Ok(()) => facts.destroyed = true,
                    Err(_) => facts.maybe_destroyed = true,
                }
            }
        }
        // A create that failed may have happened: the id is the record's (create may have
        // picked another), nothing is known either way.
        known.push((record.id().clone(), facts));
    }
    known
}

/// Writers create, update and destroy sessions while replication is held back now and
/// then; then, writes still flowing, replication is cut for good (what the primary sent
/// since the last release never arrives) and the replica is promoted. Every write the
/// store acknowledged must be on it: created and updated sessions at least at their
/// acknowledged version, destroyed ones gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_the_promotion_of_the_replica() {
    // Three turns per connection.
    let call = Duration::from_secs(1);
    let wait = Duration::from_millis(150);
    for client in CLIENTS {
        let pair = Pair::start().await;
        let store = Arc::new(store(&pair.primary.url(), client, call, wait, false).await);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..6)
            .map(|_| tokio::spawn(writer(store.clone(), stop.clone(), call)))
            .collect();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pair.proxy.pause(true);
            tokio::time::sleep(Duration::from_millis(400)).await;
            pair.proxy.pause(false);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        pair.proxy.pause(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        pair.proxy.sever();
        stop.store(true, Ordering::Relaxed);
        let mut known = Vec::new();
        for writer in writers {
            known.extend(writer.await.unwrap());
        }
        let _: () = pair.replica.cmd(&["REPLICAOF", "NO", "ONE"]);
        let promoted = RedisStore::builder()
            .url(pair.replica.url())
            .client(client)
            .prefix(store.prefix())
            .connect()
            .await
            .unwrap();
        let mut lost = Vec::new();
        let acked = known
            .iter()
            .filter(|(_, k)| k.acked_version.is_some())
            .count();
        for (id, facts) in &known {
            let Some(version) = facts.acked_version else {
                continue;
            };
            let found = promoted.get(id).await.unwrap();
            match (&found, facts.destroyed, facts.maybe_destroyed) {
                (Some(_), true, _) => lost.push(format!("{id:?}: destroyed, back")),
                (None, false, false) => {
                    lost.push(format!("{id:?}: v{version} acknowledged, missing"))
                }
                (Some(r), false, false) if r.version() < version => lost.push(format!(
                    "{id:?}: v{version} acknowledged, v{} on the replica",
                    r.version()
                )),
                _ => {}
            }
        }
        assert!(
            acked > 10,
            "{client:?}: too few writes acknowledged ({acked}) to judge"
        );
        assert!(
            lost.is_empty(),
            "{client:?}: {} of {acked} acknowledged sessions not as acknowledged on the \
             promoted replica: {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    }
}

// ---------------------------------------------------------------------------------------
// 4. A write whose connection dies while its WAIT blocks runs once.

/// Kills every client connection of `server` but the test's own, once one of them is
/// blocked in `WAIT`; how many it killed.
fn kill_clients_in_wait(server: &Server) -> i64 {
    let mut list = String::new();
    wait_until("a write's WAIT to block", Duration::from_secs(5), || {
        list = server.cmd(&["CLIENT", "LIST", "TYPE", "normal"]);
        list.contains("cmd=wait")
    });
    let mut killed = 0;
    for line in list.lines() {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_owned()
        };
        if field("cmd") != "client|list" {
            let n: i64 = server.cmd(&["CLIENT", "KILL", "ID", &field("id")]);
            killed += n;
        }
    }
    killed
}

/// An update, then a create, each alone, whose `WAIT` blocks (replication held back) when
/// the store's connections to the primary are killed: the write ran, its reply is lost.
/// Each call must fail (nothing was confirmed), the update not as a conflict (a
/// compare-and-swap sent again finds its own version), and each write must have run
/// once: a client or store that sends it again after reconnecting runs the update twice
/// (its second run finds its own version) and the create twice (its second run finds its
/// own key; were it confirmed, `create` would make another session under a fresh id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_cut_off_mid_wait_run_once() {
    let call = Duration::from_secs(5);
    let wait = Duration::from_millis(1_500);
    for client in CLIENTS {
        let pair = Pair::start().await;
        let store = Arc::new(store(&pair.primary.url(), client, call, wait, false).await);
        let mut record = Record::new(in_an_hour());
        store.create(&mut record).await.unwrap();
        record.insert("n", 1).unwrap();
        store.update(&mut record).await.unwrap(); // loads the update script
        pair.proxy.pause_now().await;
        let _: () = pair.primary.cmd(&["CONFIG", "RESETSTAT"]);
        let mut wrong = Vec::new();

        record.insert("n", 2).unwrap();
        let update = tokio::spawn({
            let store = store.clone();
            async move { bounded(call, store.update(&mut record)).await }
        });
        let killed = kill_clients_in_wait(&pair.primary);
        match update.await.unwrap() {
            Err(()) => wrong.push("update: hung past its timeout".to_owned()),
            Ok(Ok(())) => wrong.push("update: acknowledged, no replica confirmed".to_owned()),
            Ok(Err(err @ Error::Conflict { .. })) => {
                wrong.push(format!("update: reported a conflict: {err}"));
            }
            Ok(Err(_)) => {}
        }
        let updates = pair.primary.runs("evalsha");
        // The update script's own SET is counted as a SET too: counted from here.
        let sets_before = pair.primary.runs("set");

        let create = tokio::spawn({
            let store = store.clone();
            async move { bounded(call, store.create(&mut Record::new(in_an_hour()))).await }
        });
        let killed = killed + kill_clients_in_wait(&pair.primary);
        match create.await.unwrap() {
            Err(()) => wrong.push("create: hung past its timeout".to_owned()),
            Ok(Ok(())) => wrong.push("create: acknowledged, no replica confirmed".to_owned()),
            Ok(Err(_)) => {}
        }
        let creates = pair.primary.runs("set") - sets_before;
        pair.proxy.pause(false);
        assert!(killed >= 2, "{client:?}: no connection was killed");
        assert!(
            wrong.is_empty() && updates == 1 && creates == 1,
            "{client:?}: an update and a create, each cut off mid-WAIT: the update ran \
             {updates} times, the create {creates} times (once each); calls: {wrong:?}"
        );
    }
}

/// Writes whose turn does not come within the call timeout are never sent: with one turn
/// per connection (a `WAIT` of 1.5 s in calls of 2 s) and replication held back, six
/// creates at once can get at most two writes out (the first at once, the second when
/// the first's `WAIT` ends at 1.5 s; the third's turn would come at 3 s, after its caller
/// gave up). A write sent after its caller gave up would be applied although no one is
/// told about it, and would keep its connection's `WAIT`s queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_whose_turn_does_not_come_are_never_sent() {
    let call = Duration::from_secs(2);
    let wait = Duration::from_millis(1_500);
    for client in CLIENTS {
        let pair = Pair::start().await;
        let store = Arc::new(store(&pair.primary.url(), client, call, wait, false).await);
        store.create(&mut Record::new(in_an_hour())).await.unwrap();
        pair.proxy.pause_now().await;
        let _: () = pair.primary.cmd(&["CONFIG", "RESETSTAT"]);
        let creates: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    bounded(call, store.create(&mut Record::new(in_an_hour()))).await
                })
            })
            .collect();
        let mut wrong = Vec::new();
        for create in creates {
            match create.await.unwrap() {
                Ok(Err(_)) => {}
                other => wrong.push(format!("{other:?}")),
            }
        }
        // A write still waiting for its turn would be sent by now.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let sent = pair.primary.runs("set");
        pair.proxy.pause(false);
        assert!(
            wrong.is_empty() && sent <= 2,
            "{client:?}: 6 creates with one turn of 1.5 s in calls of 2 s: {sent} sent (at \
             most 2), calls that did not fail: {wrong:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. Cluster: one primary without replicas does not stall the others.

/// A cluster-mode node of the test's own, and its cluster bus port.
fn cluster_node() -> (Server, u16) {
    let bus = free_port();
    let node = Server::start(&[
        "--cluster-enabled".into(),
        "yes".into(),
        "--cluster-node-timeout".into(),
        "5000".into(),
        "--cluster-port".into(),
        bus.to_string(),
        "--cluster-config-file".into(),
        "nodes.conf".into(),
    ]);
    (node, bus)
}

fn node_id(node: &Server) -> String {
    node.cmd(&["CLUSTER", "MYID"])
}

/// Primaries `a` (slots 0-8191) and `b` (the rest), each with a replica.
struct TwoShards {
    a: Server,
    b: Server,
    _ra: Server,
    rb: Server,
}

impl TwoShards {
    fn start() -> Self {
        let ((a, a_bus), (b, _), (ra, _), (rb, _)) = (
            cluster_node(),
            cluster_node(),
            cluster_node(),
            cluster_node(),
        );
        let _: () = a.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "8191"]);
        let _: () = b.cmd(&["CLUSTER", "ADDSLOTSRANGE", "8192", "16383"]);
        for node in [&b, &ra, &rb] {
            let _: () = node.cmd(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &a.port.to_string(),
                &a_bus.to_string(),
            ]);
        }
        let all = |f: &dyn Fn(&str) -> bool| {
            [&a, &b, &ra, &rb].iter().all(|node| {
                let info: String = node.cmd(&["CLUSTER", "INFO"]);
                f(&info)
            })
        };
        wait_until(
            "the nodes to know each other",
            Duration::from_secs(20),
            || all(&|info| info.contains("cluster_known_nodes:4")),
        );
        let _: () = ra.cmd(&["CLUSTER", "REPLICATE", &node_id(&a)]);
        let _: () = rb.cmd(&["CLUSTER", "REPLICATE", &node_id(&b)]);
        for replica in [&ra, &rb] {
            wait_until("a replica to sync", Duration::from_secs(20), || {
                replica
                    .info_opt("replication", "master_link_status")
                    .as_deref()
                    == Some("up")
            });
        }
        wait_until("the cluster to be ok", Duration::from_secs(20), || {
            all(&|info| info.contains("cluster_state:ok"))
        });
        Self { a, b, _ra: ra, rb }
    }

    /// A fresh id whose key (`prefix` + id) is in `a`'s slots (`true`) or `b`'s.
    fn id_on(&self, prefix: &str, on_a: bool) -> SessionId {
        loop {
            let id = SessionId::generate();
            let slot: i64 =
                self.a
                    .cmd(&["CLUSTER", "KEYSLOT", &format!("{prefix}{}", id.expose())]);
            if (slot < 8192) == on_a {
                return id;
            }
        }
    }
}

/// With `b`'s replica gone, every write to `b`'s slots waits its whole `WAIT` and fails;
/// a dozen writers keep `b`'s turns full. Writes to `a`'s slots, whose replica confirms
/// at once, must go on: their turns are `a`'s connection's, not `b`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_cluster_one_shard_without_replica_does_not_stall_the_other() {
    // Two turns per node connection.
    let call = Duration::from_secs(4);
    let wait = Duration::from_millis(800);
    let mut shards = TwoShards::start();
    let url = format!("{},{}", shards.a.url(), shards.b.url());
    let store = Arc::new(store(&url, Client::Fred, call, wait, false).await);
    let prefix = store.prefix().to_owned();
    // Warm up both shards (scripts, connections) while both replicas answer.
    for on_a in [true, false] {
        let mut record = Record::with_id(shards.id_on(&prefix, on_a), in_an_hour());
        store.create(&mut record).await.unwrap();
    }
    shards.rb.kill();
    wait_until("b to lose its replica", Duration::from_secs(20), || {
        shards
            .b
            .info_opt("replication", "connected_slaves")
            .as_deref()
            == Some("0")
    });
    let stop = Arc::new(AtomicBool::new(false));
    let b_confirmed = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..12)
        .map(|_| {
            let mut record = Record::with_id(shards.id_on(&prefix, false), in_an_hour());
            let (store, stop, confirmed) = (store.clone(), stop.clone(), b_confirmed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if store.set(&mut record).await.is_ok() {
                        confirmed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut on_a: Vec<Record> = (0..4)
        .map(|_| Record::with_id(shards.id_on(&prefix, true), in_an_hour()))
        .collect();
    let mut failed = Vec::new();
    let mut done = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for record in &mut on_a {
            let started = Instant::now();
            match bounded(call, store.set(record)).await {
                Ok(Ok(())) => done += 1,
                other => failed.push(format!("after {:?}: {other:?}", started.elapsed())),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(
        b_confirmed.load(Ordering::Relaxed),
        0,
        "b has no replica to confirm"
    );
    assert!(
        failed.is_empty() && done > 0,
        "{} of {} writes to the shard with its replica failed while the other shard had \
         none: {:?}",
        failed.len(),
        failed.len() + done,
        &failed[..failed.len().min(5)]
    );
}

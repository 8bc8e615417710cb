//! Counted costs: what each store operation sends to its server, counted exactly and
//! pinned in [`EXPECTED`], so a change that adds a command, a round trip or a statement
//! fails here. These numbers don't depend on machine noise, unlike the benchmark's timings.
//!
//! - **Redis** (standalone, fred and redis-rs): the commands the server receives from the
//!   store's connection, read from a `MONITOR` connection. Each operation's window is closed
//!   by an `ECHO` marker sent from a third connection once the operation returned: Redis runs
//!   commands one at a time, so everything the store sent before its reply lies before the
//!   marker. Commands Lua scripts run inside the server are not counted (they cost no round
//!   trip). A store command is one round trip here: the store awaits each before the next.
//! - **PostgreSQL, MySQL, SQLite** (sqlx): the statements sqlx runs, counted client-side from
//!   its per-statement events (target `sqlx::query`), so the count holds on any server.
//!   Not counted: sqlx's `Parse`/`Describe` of a statement it has not prepared on that
//!   connection yet (a warm-up round runs every operation first), a connection's ping, and on
//!   SQLite a transaction's `BEGIN`/`COMMIT` (sqlx runs those outside its statement log). The
//!   pools hold one connection, so no window sees a new connection's set-up statements
//!   (SQLite's `PRAGMA`s showed up in a window when a second connection opened there).
//! - **MongoDB**: the commands the driver starts, from its command monitoring on a client the
//!   test builds (`MongoStore::from_client`), on FerretDB twice: as the store configures
//!   itself there (`mongo-locks`: a lease lock, an `insert` and a `delete` in the lock
//!   collection, around every write to an existing session), and forced onto MongoDB's
//!   single guarded writes (`mongo`), whose counts are what a MongoDB server receives.
//! - The memory store sends nothing anywhere; it has no row here.
//!
//! Every operation runs twice: a warm-up round (scripts loaded into Redis, statements
//! prepared), then the counted round on fresh sessions. `touch` must send no session data:
//! no command of a touch may carry the payload's marker.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use integration_tests::{Backend, Skip, server_url};
use session_core::{Expiry, Record, SessionId, SessionStore, modify, now};
use session_mongo::mongodb;

/// How long a meter waits for its marker (Redis) before the test fails.
const MARKER_WAIT: Duration = Duration::from_secs(5);

/// What each operation costs, per backend: the commands (Redis, MongoDB) or statements
/// (SQL, by first keyword) one call sends, in order. One row per operation of [`OPS`].
///
/// Sessions of the bench (`create`, `get`, `rmw`, `rmw-cas`, `touch`) have no owner; the
/// `(owned)` rows show what an owner costs on top (Redis keeps a per-owner index).
const EXPECTED: &[(&str, &str, &[&str])] = &[
    // Redis (standalone): the owner index is raised before the session changes by every
    // write of an owned session, inside the write's own script (one server: a cluster
    // needs a round trip more); scripts run inside the server and count once.
    ("redis", "create", &["SET"]), // SET NX PXAT
    ("redis", "get", &["GET"]),
    ("redis", "rmw", &["GET", "EVALSHA"]), // GET, set script
    ("redis", "rmw-cas", &["GET", "EVALSHA"]), // GET, compare-and-swap script
    ("redis", "touch", &["EVALSHA"]),      // touch script: rewrites expires_at on the server
    ("redis", "cycle_id", &["GET", "EVALSHA"]), // read, then the rename script
    ("redis", "destroy", &["GETDEL"]),
    ("redis", "create (owned)", &["EVALSHA"]), // index, then SET NX PXAT, in one script
    ("redis", "rmw-cas (owned)", &["GET", "EVALSHA"]), // GET, index + CAS in one script
    // The caller doesn't know the owner: the script finds it and raises its index before
    // moving the expiry (an index entry never ends before its session).
    ("redis", "touch (owned)", &["EVALSHA"]),
    ("redis", "cycle_id (owned)", &["GET", "EVALSHA"]), // the rename script moves the index entry
    ("redis", "destroy_by_owner (3)", &["EVALSHA", "EVALSHA"]), // list the index, revoke script
    // Redis under `Durability::Replicated` (the Sentinel set's primary): every write is
    // followed by its WAIT in the same pipeline (one round trip, two commands); reads are
    // not, also those made with a script: destroy_by_owner's listing waits for no replica
    // (its revoke script's WAIT confirms whatever the listing pruned on the way).
    ("redis-replicated", "create", &["SET", "WAIT"]),
    ("redis-replicated", "get", &["GET"]),
    ("redis-replicated", "rmw", &["GET", "EVALSHA", "WAIT"]),
    ("redis-replicated", "rmw-cas", &["GET", "EVALSHA", "WAIT"]),
    ("redis-replicated", "touch", &["EVALSHA", "WAIT"]),
    ("redis-replicated", "cycle_id", &["GET", "EVALSHA", "WAIT"]),
    ("redis-replicated", "destroy", &["GETDEL", "WAIT"]),
    ("redis-replicated", "create (owned)", &["EVALSHA", "WAIT"]),
    (
        "redis-replicated",
        "rmw-cas (owned)",
        &["GET", "EVALSHA", "WAIT"],
    ),
    ("redis-replicated", "touch (owned)", &["EVALSHA", "WAIT"]),
    (
        "redis-replicated",
        "cycle_id (owned)",
        &["GET", "EVALSHA", "WAIT"],
    ),
    (
        "redis-replicated",
        "destroy_by_owner (3)",
        &["EVALSHA", "EVALSHA", "WAIT"],
    ),
    // PostgreSQL: one statement per call; the read of a read-modify-write is its own.
    ("postgres", "create", &["INSERT"]), // INSERT ... ON CONFLICT (an expired row gives way)
    ("postgres", "get", &["SELECT"]),
    ("postgres", "rmw", &["SELECT", "INSERT"]), // get, then set's upsert
    ("postgres", "rmw-cas", &["SELECT", "UPDATE"]), // get, then UPDATE ... WHERE version
    ("postgres", "touch", &["UPDATE"]),         // expires_at only, capped at the deadline
    ("postgres", "cycle_id", &["UPDATE"]), // UPDATE of the key (a live target: unique violation)
    ("postgres", "destroy", &["DELETE"]),
    ("postgres", "create (owned)", &["INSERT"]),
    ("postgres", "rmw-cas (owned)", &["SELECT", "UPDATE"]),
    ("postgres", "touch (owned)", &["UPDATE"]),
    ("postgres", "cycle_id (owned)", &["UPDATE"]),
    ("postgres", "destroy_by_owner (3)", &["WITH"]), // one DELETE ... RETURNING, counted
    // MySQL: as PostgreSQL, but set updates the live row (inserting only when there is none).
    ("mysql", "create", &["INSERT"]),
    ("mysql", "get", &["SELECT"]),
    ("mysql", "rmw", &["SELECT", "UPDATE"]),
    ("mysql", "rmw-cas", &["SELECT", "UPDATE"]),
    ("mysql", "touch", &["UPDATE"]),
    ("mysql", "cycle_id", &["UPDATE"]),
    ("mysql", "destroy", &["DELETE"]),
    ("mysql", "create (owned)", &["INSERT"]),
    ("mysql", "rmw-cas (owned)", &["SELECT", "UPDATE"]),
    ("mysql", "touch (owned)", &["UPDATE"]),
    ("mysql", "cycle_id (owned)", &["UPDATE"]),
    ("mysql", "destroy_by_owner (3)", &["DELETE"]),
    // SQLite: as PostgreSQL, but a rename first deletes an expired row under the new id
    // (both in one BEGIN IMMEDIATE transaction, whose BEGIN/COMMIT sqlx doesn't log).
    ("sqlite", "create", &["INSERT"]),
    ("sqlite", "get", &["SELECT"]),
    ("sqlite", "rmw", &["SELECT", "INSERT"]),
    ("sqlite", "rmw-cas", &["SELECT", "UPDATE"]),
    ("sqlite", "touch", &["UPDATE"]),
    ("sqlite", "cycle_id", &["DELETE", "UPDATE"]),
    ("sqlite", "destroy", &["DELETE"]),
    ("sqlite", "create (owned)", &["INSERT"]),
    ("sqlite", "rmw-cas (owned)", &["SELECT", "UPDATE"]),
    ("sqlite", "touch (owned)", &["UPDATE"]),
    ("sqlite", "cycle_id (owned)", &["DELETE", "UPDATE"]),
    ("sqlite", "destroy_by_owner (3)", &["DELETE"]),
    // MongoDB's path (single guarded writes): set reads the stored version first, so a
    // version is never reused; a rename copies, then deletes the original if unchanged.
    ("mongo", "create", &["insert"]),
    ("mongo", "get", &["find"]),
    ("mongo", "rmw", &["find", "find", "update"]), // get; set: read the version, write
    ("mongo", "rmw-cas", &["find", "update"]),     // get, guarded replace
    ("mongo", "touch", &["update"]),
    ("mongo", "cycle_id", &["find", "insert", "delete"]),
    ("mongo", "destroy", &["delete"]),
    ("mongo", "create (owned)", &["insert"]),
    ("mongo", "rmw-cas (owned)", &["find", "update"]),
    ("mongo", "touch (owned)", &["update"]),
    ("mongo", "cycle_id (owned)", &["find", "insert", "delete"]),
    ("mongo", "destroy_by_owner (3)", &["delete", "delete"]), // deleteMany passes until one finds none
    // FerretDB (lease locks): every write to an existing session takes the session's lock
    // (insert into the lock collection) and releases it (delete), reading the session by
    // `_id` under it; a revocation holds the owner's lock and ends sessions one by one.
    ("mongo-locks", "create", &["insert"]),
    ("mongo-locks", "get", &["find"]),
    (
        "mongo-locks",
        "rmw",
        &["find", "insert", "find", "update", "delete"],
    ),
    (
        "mongo-locks",
        "rmw-cas",
        &["find", "insert", "find", "update", "delete"],
    ),
    (
        "mongo-locks",
        "touch",
        &["insert", "find", "update", "delete"],
    ),
    // lock, read, copy, delete the original, unlock
    (
        "mongo-locks",
        "cycle_id",
        &["insert", "find", "insert", "delete", "delete"],
    ),
    ("mongo-locks", "destroy", &["delete"]),
    ("mongo-locks", "create (owned)", &["insert"]),
    (
        "mongo-locks",
        "rmw-cas (owned)",
        &["find", "insert", "find", "update", "delete"],
    ),
    (
        "mongo-locks",
        "touch (owned)",
        &["insert", "find", "update", "delete"],
    ),
    // the owner's lock too: lock, read, owner lock, copy, delete, unlock both
    (
        "mongo-locks",
        "cycle_id (owned)",
        &[
            "insert", "find", "insert", "insert", "delete", "delete", "delete",
        ],
    ),
    // owner lock, list; per session: lock, read, delete, unlock; a pass finding none; unlock
    (
        "mongo-locks",
        "destroy_by_owner (3)",
        &[
            "insert", "find", "insert", "find", "delete", "delete", "insert", "find", "delete",
            "delete", "insert", "find", "delete", "delete", "find", "delete",
        ],
    ),
];

/// The operations, in the order they run (and appear in [`EXPECTED`]).
const OPS: [&str; 12] = [
    "create",
    "get",
    "rmw",
    "rmw-cas",
    "touch",
    "cycle_id",
    "destroy",
    "create (owned)",
    "rmw-cas (owned)",
    "touch (owned)",
    "cycle_id (owned)",
    "destroy_by_owner (3)",
];

/// One command or statement an operation sent: its name and its full text (arguments, SQL
/// or command document), searched for the session payload.
#[derive(Debug, Clone)]
struct Sent {
    name: String,
    text: String,
}

/// Counts what a store sends between [`Meter::start`] and [`Meter::stop`].
trait Meter {
    /// Forgets everything sent so far; counting starts.
    async fn start(&mut self);
    /// What was sent since [`Meter::start`].
    async fn stop(&mut self) -> Vec<Sent>;
}

/// The data every session holds: a marker no command but a write may carry, and filler.
fn payload(marker: &str) -> session_core::Data {
    let mut data = session_core::Data::new();
    data.insert("marker".into(), marker.into());
    for key in ["k00", "k01", "k02", "k03"] {
        data.insert(key.into(), "x".repeat(40).into());
    }
    data
}

fn new_session(marker: &str, owner: Option<&str>) -> Record {
    let mut record = Expiry::idle(time::Duration::minutes(10)).new_record();
    record.set_data(payload(marker));
    record.set_owner(owner.map(str::to_owned));
    record
}

/// A change like the bench's: one field gets a new value.
fn change(record: &mut Record) {
    record
        .data_mut()
        .insert("k00".into(), "y".repeat(40).into());
}

/// Runs every operation of [`OPS`] once on fresh sessions, each measured on its own.
async fn run_ops<M: Meter>(
    store: &dyn SessionStore,
    meter: &mut M,
    marker: &str,
) -> Vec<Vec<Sent>> {
    let owner = format!("owner-{}", &SessionId::generate().expose()[..12]);
    let mut sent = Vec::new();
    let later = || now() + time::Duration::minutes(20);

    // Anonymous sessions, as the bench makes them.
    let mut record = new_session(marker, None);
    meter.start().await;
    store.create(&mut record).await.unwrap();
    sent.push(meter.stop().await);
    let id = record.id().clone();

    meter.start().await;
    let read = store.get(&id).await.unwrap();
    sent.push(meter.stop().await);
    assert!(read.is_some(), "get found no session");

    meter.start().await;
    let mut read = store.get(&id).await.unwrap().unwrap();
    change(&mut read);
    store.set(&mut read).await.unwrap();
    sent.push(meter.stop().await);

    meter.start().await;
    let modified = modify(store, &id, 128, change).await.unwrap();
    sent.push(meter.stop().await);
    assert!(modified.is_some(), "rmw-cas found no session");

    meter.start().await;
    let touched = store.touch(&id, later()).await.unwrap();
    sent.push(meter.stop().await);
    assert!(touched, "touch found no session");

    meter.start().await;
    let moved = store.cycle_id(&id).await.unwrap();
    sent.push(meter.stop().await);
    let id = moved.expect("cycle_id found no session");

    meter.start().await;
    store.destroy(&id).await.unwrap();
    sent.push(meter.stop().await);
    assert!(store.get(&id).await.unwrap().is_none(), "destroy left it");

    // Owned sessions.
    let mut record = new_session(marker, Some(&owner));
    meter.start().await;
    store.create(&mut record).await.unwrap();
    sent.push(meter.stop().await);
    let id = record.id().clone();

    meter.start().await;
    let modified = modify(store, &id, 128, change).await.unwrap();
    sent.push(meter.stop().await);
    assert!(modified.is_some(), "rmw-cas (owned) found no session");

    meter.start().await;
    let touched = store.touch(&id, later()).await.unwrap();
    sent.push(meter.stop().await);
    assert!(touched, "touch (owned) found no session");

    meter.start().await;
    let moved = store.cycle_id(&id).await.unwrap();
    sent.push(meter.stop().await);
    moved.expect("cycle_id (owned) found no session");

    for _ in 0..2 {
        store
            .create(&mut new_session(marker, Some(&owner)))
            .await
            .unwrap();
    }
    meter.start().await;
    let removed = store.destroy_by_owner(&owner).await.unwrap();
    sent.push(meter.stop().await);
    assert_eq!(removed, 3, "destroy_by_owner removed {removed} of 3");
    sent
}

/// Runs the warm-up round, then the counted one, and checks it against [`EXPECTED`]'s rows
/// for `backend`; the message lists every operation, measured and expected.
async fn check<M: Meter>(backend: &str, label: &str, store: &dyn SessionStore, meter: &mut M) {
    let marker = format!("payload-marker-{}", &SessionId::generate().expose()[..16]);
    run_ops(store, meter, &marker).await;
    let measured = run_ops(store, meter, &marker).await;

    let mut report = format!("counted costs on {label} (measured, expected):\n");
    let mut wrong = Vec::new();
    for (op, sent) in OPS.iter().zip(&measured) {
        let names: Vec<&str> = sent.iter().map(|s| s.name.as_str()).collect();
        let expected = EXPECTED
            .iter()
            .find(|(b, o, _)| *b == backend && o == op)
            .map(|(_, _, names)| *names);
        let _ = writeln!(
            report,
            "  {op:<22} {:>2} {names:?}   expected {expected:?}",
            names.len()
        );
        if expected != Some(names.as_slice()) {
            wrong.push(*op);
        }
        if op.starts_with("touch") {
            for s in sent {
                assert!(
                    !s.text.contains(&marker),
                    "{label}: {op} sent session data in {}: {}",
                    s.name,
                    s.text
                );
            }
        }
    }
    session_core::conformance::note(&report);
    assert!(
        wrong.is_empty(),
        "{label}: costs changed for {wrong:?}\n{report}"
    );
}

fn skip(what: &str, Skip(reason): Skip) {
    session_core::conformance::skip(what, &reason);
}

// ---------------------------------------------------------------------------------------
// Redis: MONITOR

/// Commands from the store's connection(s), as `MONITOR` shows them.
struct RedisMeter {
    lines: std::pin::Pin<Box<dyn futures::Stream<Item = String> + Send>>,
    marker_conn: redis::aio::MultiplexedConnection,
    /// A token in every marker, unique to this meter.
    token: String,
    markers: u64,
    /// The session key prefix: a command naming it comes from the store.
    prefix: String,
    /// The client addresses of the store's connections (learned from commands naming the
    /// prefix): every command from them counts, whether it names a key of ours or not.
    store_addrs: HashSet<String>,
}

impl RedisMeter {
    async fn new(url: &str, prefix: &str) -> Self {
        let client = redis::Client::open(url).unwrap();
        let monitor = client.get_async_monitor().await.unwrap();
        Self {
            lines: Box::pin(monitor.into_on_message::<String>()),
            marker_conn: client.get_multiplexed_async_connection().await.unwrap(),
            token: format!("costs-marker-{}", &SessionId::generate().expose()[..12]),
            markers: 0,
            prefix: prefix.to_owned(),
            store_addrs: HashSet::new(),
        }
    }

    /// Sends a marker and returns every monitored line before it.
    async fn until_marker(&mut self) -> Vec<String> {
        self.markers += 1;
        let marker = format!("{}-{}", self.token, self.markers);
        let _: String = redis::cmd("ECHO")
            .arg(&marker)
            .query_async(&mut self.marker_conn)
            .await
            .unwrap();
        let quoted = format!("\"{marker}\"");
        let mut lines = Vec::new();
        loop {
            let line = tokio::time::timeout(MARKER_WAIT, self.lines.next())
                .await
                .expect("MONITOR did not show the marker in time")
                .expect("the MONITOR connection closed");
            if line.contains(&quoted) {
                return lines;
            }
            lines.push(line);
        }
    }
}

/// A `MONITOR` line, `<time> [<db> <addr>] "CMD" "arg"...`: the client address (`lua` for
/// a command a script ran) and the rest.
fn monitor_parts(line: &str) -> Option<(&str, &str)> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let addr = line[open + 1..close].split_whitespace().nth(1)?;
    Some((addr, line[close + 1..].trim()))
}

impl Meter for RedisMeter {
    async fn start(&mut self) {
        self.until_marker().await;
    }

    async fn stop(&mut self) -> Vec<Sent> {
        let lines = self.until_marker().await;
        let parsed: Vec<(&str, &str)> = lines.iter().filter_map(|l| monitor_parts(l)).collect();
        for (addr, rest) in &parsed {
            if *addr != "lua" && rest.contains(&self.prefix) {
                self.store_addrs.insert((*addr).to_owned());
            }
        }
        parsed
            .into_iter()
            .filter(|(addr, _)| self.store_addrs.contains(*addr))
            .map(|(_, rest)| Sent {
                name: rest
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_ascii_uppercase(),
                text: rest.to_owned(),
            })
            .collect()
    }
}

/// Counts `client`'s calls on `backend`'s server against [`EXPECTED`]'s `row` rows:
/// standalone Redis as configured by default (`redis`), or the primary the sentinels name
/// under `Durability::Replicated` (`redis-replicated`: each write pipelined with its `WAIT`).
async fn redis_costs(client: session_redis::Client, label: &str, row: &str) {
    let backend = match row {
        "redis" => Backend::Redis,
        _ => Backend::RedisSentinel,
    };
    let url = match server_url(backend) {
        Ok(url) => url,
        Err(skipped) => return skip(&format!("costs on {label}"), skipped),
    };
    let prefix = format!("costs{}:", &SessionId::generate().expose()[..12]);
    let builder = session_redis::RedisStore::builder()
        .url(&url)
        .client(client)
        .prefix(&prefix);
    let (builder, server) = match backend {
        Backend::RedisSentinel => (
            builder.durability(session_redis::Durability::Replicated {
                replicas: 1,
                timeout: Duration::from_secs(1),
            }),
            sentinel_primary(&url).await,
        ),
        _ => (builder, url.clone()),
    };
    let store = builder.connect().await.unwrap();
    let mut meter = RedisMeter::new(&server, &prefix).await;
    check(row, label, &store, &mut meter).await;
}

#[tokio::test]
async fn redis_fred() {
    redis_costs(session_redis::Client::Fred, "redis (fred)", "redis").await;
}

#[tokio::test]
async fn redis_rs() {
    redis_costs(session_redis::Client::RedisRs, "redis (redis-rs)", "redis").await;
}

/// The `redis://` URL of the primary that the first sentinel of `url` names.
async fn sentinel_primary(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let (sentinel, query) = rest.split_once('?').unwrap();
    let service = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sentinelServiceName="))
        .unwrap();
    let client = redis::Client::open(format!("redis://{sentinel}")).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let (host, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(service)
        .query_async(&mut con)
        .await
        .unwrap();
    format!("redis://{host}:{port}")
}

#[tokio::test]
async fn redis_replicated_fred() {
    let label = "redis replicated (fred)";
    redis_costs(session_redis::Client::Fred, label, "redis-replicated").await;
}

#[tokio::test]
async fn redis_replicated_redis_rs() {
    let label = "redis replicated (redis-rs)";
    redis_costs(session_redis::Client::RedisRs, label, "redis-replicated").await;
}

/// On a Cluster, fred sends a write's `WAIT` to the node of the write's key, on the same
/// connection (a `WAIT` anywhere else confirms nothing): every write a primary receives
/// from the store is followed there, from the same client address, by a `WAIT`.
#[tokio::test]
async fn redis_cluster_replicated_waits_where_it_writes() {
    let url = match server_url(Backend::RedisCluster) {
        Ok(url) => url,
        Err(skipped) => return skip("WAIT routing on a Redis Cluster", skipped),
    };
    let prefix = format!("costs{}:", &SessionId::generate().expose()[..12]);
    let store = session_redis::RedisStore::builder()
        .url(&url)
        .fred()
        .prefix(&prefix)
        .durability(session_redis::Durability::Replicated {
            replicas: 1,
            timeout: Duration::from_secs(1),
        })
        .connect()
        .await
        .unwrap();
    let mut meters = Vec::new();
    for node in url.split(',') {
        meters.push(RedisMeter::new(node.trim(), &prefix).await);
    }
    let marker = format!("payload-marker-{}", &SessionId::generate().expose()[..16]);
    for meter in &mut meters {
        meter.start().await;
    }
    // Sessions spread over every slot range: each primary gets some.
    let mut ids = Vec::new();
    for _ in 0..12 {
        let mut record = new_session(&marker, None);
        store.create(&mut record).await.unwrap();
        ids.push(record.id().clone());
    }
    for id in &ids {
        assert!(
            store
                .touch(id, now() + time::Duration::minutes(20))
                .await
                .unwrap()
        );
        store.destroy(id).await.unwrap();
    }
    let mut writes = 0;
    for meter in &mut meters {
        let sent = meter.stop().await;
        for (i, command) in sent.iter().enumerate() {
            if command.name == "WAIT" {
                continue;
            }
            writes += 1;
            assert_eq!(
                sent.get(i + 1).map(|next| next.name.as_str()),
                Some("WAIT"),
                "{} was not followed by a WAIT on its node: {sent:?}",
                command.name
            );
        }
    }
    assert_eq!(
        writes, 36,
        "every create, touch and destroy was seen on some primary"
    );
}

// ---------------------------------------------------------------------------------------
// SQL: sqlx's statement events

/// What the process-wide subscriber records: `None` while no test counts.
static STATEMENTS: Mutex<Option<Vec<Sent>>> = Mutex::new(None);

/// One SQL test counts at a time (the subscriber is process-wide: SQLite runs statements on
/// a worker thread of its own, out of reach of a per-thread subscriber).
static SQL_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Records the SQL of every `sqlx::query` event; every other event and span is ignored.
struct StatementLog;

impl tracing::Subscriber for StatementLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut sql = StatementText::default();
        event.record(&mut sql);
        // `summary` is the statement's first words; `db.statement` the whole of a longer one.
        let text = if sql.statement.trim().is_empty() {
            sql.summary
        } else {
            sql.statement.trim().to_owned()
        };
        let name = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if let Some(log) = STATEMENTS.lock().unwrap().as_mut() {
            log.push(Sent { name, text });
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[derive(Default)]
struct StatementText {
    summary: String,
    statement: String,
}

impl tracing::field::Visit for StatementText {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.statement = value.to_owned(),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Counts sqlx's statements while holding [`SQL_TURN`].
struct SqlMeter {
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl SqlMeter {
    async fn new() -> Self {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            tracing::subscriber::set_global_default(StatementLog)
                .expect("no other tracing subscriber in this test binary");
        });
        Self {
            _turn: SQL_TURN.lock().await,
        }
    }
}

impl Meter for SqlMeter {
    async fn start(&mut self) {
        *STATEMENTS.lock().unwrap() = Some(Vec::new());
    }

    async fn stop(&mut self) -> Vec<Sent> {
        STATEMENTS.lock().unwrap().take().unwrap_or_default()
    }
}

/// A table name no other store uses.
fn unique_table() -> String {
    integration_tests::unique_name("costs")
}

#[tokio::test]
async fn postgres() {
    let url = match server_url(Backend::Postgres) {
        Ok(url) => url,
        Err(skipped) => return skip("costs on postgres", skipped),
    };
    let mut meter = SqlMeter::new().await;
    let store = session_postgres::PostgresStore::builder()
        .schema("costs")
        .table(unique_table())
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    check("postgres", "postgres", &store, &mut meter).await;
    let drop = format!("DROP TABLE IF EXISTS {}", store.table());
    session_postgres::sqlx::query(&drop)
        .execute(store.pool())
        .await
        .ok();
}

#[tokio::test]
async fn mysql() {
    let url = match server_url(Backend::Mysql) {
        Ok(url) => url,
        Err(skipped) => return skip("costs on mysql", skipped),
    };
    let mut meter = SqlMeter::new().await;
    let store = session_mysql::MysqlStore::builder()
        .table(unique_table())
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    check("mysql", "mysql", &store, &mut meter).await;
    let drop = format!("DROP TABLE IF EXISTS {}", store.table());
    session_mysql::sqlx::query(&drop)
        .execute(store.pool())
        .await
        .ok();
}

#[tokio::test]
async fn sqlite() {
    let mut meter = SqlMeter::new().await;
    let store = session_sqlite::SqliteStore::builder()
        .max_connections(1)
        .connect(&integration_tests::sqlite_test_url("costs"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    check("sqlite", "sqlite", &store, &mut meter).await;
}

// ---------------------------------------------------------------------------------------
// MongoDB: the driver's command monitoring

/// Commands the store's client started; `None` while not counting.
#[derive(Clone, Default)]
struct MongoMeter(Arc<Mutex<Option<Vec<Sent>>>>);

impl Meter for MongoMeter {
    async fn start(&mut self) {
        *self.0.lock().unwrap() = Some(Vec::new());
    }

    async fn stop(&mut self) -> Vec<Sent> {
        self.0.lock().unwrap().take().unwrap_or_default()
    }
}

async fn mongo_costs(backend: &str, label: &str, write_guard: session_mongo::WriteGuard) {
    use mongodb::event::{EventHandler, command::CommandEvent};

    let url = match server_url(Backend::Mongo) {
        Ok(url) => url,
        Err(skipped) => return skip(&format!("costs on {label}"), skipped),
    };
    let database = integration_tests::mongo_test_database(&url, "costs").await;
    let mut meter = MongoMeter::default();
    let log = meter.clone();
    let mut options = mongodb::options::ClientOptions::parse(&url).await.unwrap();
    options.command_event_handler = Some(EventHandler::callback(move |event: CommandEvent| {
        if let CommandEvent::Started(started) = event
            && let Some(sent) = log.0.lock().unwrap().as_mut()
        {
            sent.push(Sent {
                name: started.command_name.clone(),
                text: format!("{:?}", started.command),
            });
        }
    }));
    let client = mongodb::Client::with_options(options).unwrap();
    let config = session_mongo::MongoConfig {
        database: Some(database.into()),
        collection: Some(unique_table()),
        expiry: session_mongo::ExpiryMode::Disabled,
        write_guard,
        ..Default::default()
    };
    let store = session_mongo::MongoStore::from_client(&client, config)
        .await
        .unwrap();
    check(backend, label, &store, &mut meter).await;
    store.collection().drop().await.ok();
}

/// FerretDB as the store finds it: lease locks around every write to an existing session.
#[tokio::test]
async fn mongo_ferretdb() {
    let label = "mongo (FerretDB, lease locks)";
    mongo_costs("mongo-locks", label, session_mongo::WriteGuard::Auto).await;
}

/// The path a real MongoDB takes (single guarded writes), counted on FerretDB: one caller
/// at a time, so FerretDB's non-atomic filtered writes don't matter here.
#[tokio::test]
async fn mongo_server_guard() {
    let label = "mongo (guarded writes, MongoDB's path)";
    mongo_costs("mongo", label, session_mongo::WriteGuard::Server).await;
}

//! Workers whose every call is recorded for the linearizability checker ([`crate::history`]).
//!
//! Each worker belongs to an owner (a partition of the history, checked on its own) and
//! makes random calls on that owner's sessions: `insert`, `get`, `update` with the version
//! it last read, `set`, `touch`, `destroy`, `rename` to a fresh id, `list_by_owner` and now
//! and then `destroy_by_owner`, on ids that are live, dead, moved away or never used. Every
//! written value carries a unique token, so a read says which write it saw. After a number
//! of calls the owner's partition is closed and the worker moves on to a new owner, which
//! keeps each partition small enough to check quickly however long a run is.
//!
//! Some partitions are hot ([`Partitions::hot_rounds`]): their workers call only the newest
//! id and don't pause between calls, so calls on one session overlap even on an in-process
//! store whose calls take microseconds (a race inside one call needs that to show).

use crate::in_an_hour;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use session_core::{Record, Rename, SessionId, SessionStore};

use crate::history::History;

/// How a group of workers shares one owner.
#[derive(Debug, Clone, Copy)]
pub struct Partitions {
    /// Owners worked on at once.
    pub owners: usize,
    /// Workers per owner.
    pub workers: usize,
    /// Calls per worker before its owner's partition closes and a new one starts.
    pub calls_per_partition: usize,
    /// Whether workers also call `list_by_owner` and `destroy_by_owner`, which see several
    /// sessions as of one instant (not on a Redis Cluster or MongoDB, whose docs say so).
    pub owner_calls: bool,
    /// Whether a `rename` is one step, so other workers may call its target while it runs.
    /// When not (a Redis Cluster: a copy, then a delete), the target joins the calls only
    /// once the move returned, as with `cycle_id`'s fresh ids, which nobody knows earlier.
    pub moves_atomic: bool,
    /// Of every `hot_rounds + 1` partitions a group of workers goes through, this many are
    /// hot (0: none).
    pub hot_rounds: usize,
}

impl Default for Partitions {
    fn default() -> Self {
        Self {
            owners: 2,
            workers: 3,
            calls_per_partition: 120,
            owner_calls: true,
            moves_atomic: true,
            hot_rounds: 1,
        }
    }
}

/// One owner's sessions, shared by its workers.
struct Owner {
    name: String,
    /// Every id used in the partition, newest last.
    ids: std::sync::Mutex<Vec<SessionId>>,
    /// Workers call only the newest id, without pausing.
    hot: bool,
    /// A call on this owner's sessions had an unknown outcome: no more listings and
    /// revocations, which would observe every such call at once (each doubling the orders
    /// the checker must try).
    tainted: AtomicBool,
    /// A revocation had an unknown outcome (it may land at any later point and touches
    /// every session): the partition ends.
    closed: AtomicBool,
}

impl Owner {
    fn new(round: usize, slot: usize, hot: bool) -> Self {
        let tag = SessionId::generate();
        Self {
            name: format!("lin-{slot}-{round}-{}", &tag.expose()[..8]),
            ids: std::sync::Mutex::default(),
            hot,
            tainted: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    fn add(&self, id: SessionId) {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).push(id);
    }

    /// Stops calling `id`: a call on it failed without telling whether it took effect. Later
    /// calls on such an id would each double the orders the checker must try (the write may
    /// land before or after any of them), so the workers move on, as a client with a broken
    /// session would start a new one. A write that answered wrongly (a conflict for a write
    /// that happened) is a definite answer and keeps its id in play.
    fn retire(&self, id: &SessionId) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|known| known != id);
    }

    /// A listed id as the workers know it: behind `HashedIds` a listing names sessions by
    /// their hashed ids.
    fn plain(&self, listed: &SessionId) -> String {
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter()
            .find(|id| *id == listed || id.hashed() == *listed)
            .unwrap_or(listed)
            .expose()
            .to_owned()
    }

    /// One of the recent ids (the ones still worth calling).
    fn pick(&self) -> Option<SessionId> {
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let window = if self.hot { 1 } else { 8 };
        let recent = &ids[ids.len().saturating_sub(window)..];
        (!recent.is_empty()).then(|| recent[fastrand::usize(..recent.len())].clone())
    }
}

/// Runs workers until `stop` is set, recording into `history`.
pub async fn run(
    store: Arc<dyn SessionStore>,
    history: Arc<History>,
    partitions: Partitions,
    stop: Arc<AtomicBool>,
) {
    let mut tasks = Vec::new();
    for slot in 0..partitions.owners {
        let (store, history, stop) = (store.clone(), history.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                let hot = round % (partitions.hot_rounds + 1) != 0;
                let owner = Arc::new(Owner::new(round, slot, hot));
                let workers: Vec<_> = (0..partitions.workers)
                    .map(|n| {
                        let worker = Worker {
                            store: store.clone(),
                            history: history.clone(),
                            owner: owner.clone(),
                            client: slot * 100 + n,
                            owner_calls: partitions.owner_calls,
                            moves_atomic: partitions.moves_atomic,
                            seen: HashMap::new(),
                            seq: 0,
                            unknown: 0,
                        };
                        let stop = stop.clone();
                        tokio::spawn(worker.run(partitions.calls_per_partition, stop))
                    })
                    .collect();
                for worker in workers {
                    let _ = worker.await;
                }
                round += 1;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

struct Worker {
    store: Arc<dyn SessionStore>,
    history: Arc<History>,
    owner: Arc<Owner>,
    client: usize,
    owner_calls: bool,
    moves_atomic: bool,
    /// The record this worker last read or wrote under each id (for versions).
    seen: HashMap<SessionId, Record>,
    seq: u64,
    /// Calls of unknown outcome so far.
    unknown: u64,
}

impl Worker {
    async fn run(mut self, calls: usize, stop: Arc<AtomicBool>) {
        for _ in 0..calls {
            if stop.load(Ordering::Relaxed) || self.owner.closed.load(Ordering::Relaxed) {
                break;
            }
            let unknown_before = self.unknown;
            self.step().await;
            // A little think time, so the workers interleave instead of one racing ahead; and
            // after a failure, a pause as a client's retry would take (each call of unknown
            // outcome multiplies the orders the checker must try).
            let pause = if self.unknown > unknown_before {
                fastrand::u64(150..300)
            } else if self.owner.hot {
                tokio::task::yield_now().await;
                continue;
            } else {
                fastrand::u64(1..6)
            };
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
    }

    fn token(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}", self.client, self.seq)
    }

    fn record_for(&mut self, id: &SessionId) -> Record {
        let token = self.token();
        let mut record = self
            .seen
            .get(id)
            .cloned()
            .unwrap_or_else(|| Record::with_id(id.clone(), in_an_hour()));
        record.set_owner(Some(self.owner.name.clone()));
        record.insert("token", &token).ok();
        record
    }

    async fn step(&mut self) {
        let Some(id) = self.owner.pick().filter(|_| fastrand::u8(..10) != 0) else {
            return self.insert().await;
        };
        match fastrand::u8(..100) {
            0..10 => self.insert().await,
            10..35 => self.get(&id).await,
            35..55 => self.update(&id).await,
            55..62 => self.set(&id).await,
            62..70 => self.touch(&id).await,
            70..77 => self.destroy(&id).await,
            77..86 => self.rename(&id).await,
            86..97 if self.owner_calls() => self.list().await,
            97.. if self.owner_calls() => self.revoke().await,
            _ => self.get(&id).await,
        }
    }

    fn call(&self, op: Value) -> crate::history::Call {
        self.history.call(&self.owner.name, self.client, op)
    }

    /// Records that `call` failed without telling whether it took effect.
    fn unknown(&mut self, call: crate::history::Call) {
        call.unknown(&self.history);
        self.unknown += 1;
        self.owner.tainted.store(true, Ordering::Relaxed);
    }

    fn owner_calls(&self) -> bool {
        self.owner_calls && !self.owner.tainted.load(Ordering::Relaxed)
    }

    async fn insert(&mut self) {
        let id = SessionId::generate();
        self.owner.add(id.clone());
        let mut record = self.record_for(&id);
        let token = record.get::<String>("token").ok().flatten();
        let call = self.call(json!({"kind": "insert", "id": id.expose(), "token": token}));
        match self.store.insert(&mut record).await {
            Ok(ok) => {
                call.done(&self.history, json!({ "ok": ok }));
                if ok {
                    self.seen.insert(id, record);
                }
            }
            Err(_) => {
                self.unknown(call);
                self.owner.retire(&id);
            }
        }
    }

    async fn get(&mut self, id: &SessionId) {
        let call = self.call(json!({"kind": "get", "id": id.expose()}));
        match self.store.get(id).await {
            Ok(None) => call.done(&self.history, json!({ "found": false })),
            Ok(Some(record)) => {
                let token = record.get::<String>("token").ok().flatten();
                call.done(
                    &self.history,
                    json!({"found": true, "version": record.version(), "token": token}),
                );
                self.seen.insert(id.clone(), record);
            }
            // A failed read has no effect: left out of the history.
            Err(_) => {}
        }
    }

    async fn update(&mut self, id: &SessionId) {
        if !self.seen.contains_key(id) {
            return self.get(id).await;
        }
        // The token of the value this update's record was read with: a store may refuse
        // an update over another value stored at the same version (an ABA).
        let read = self.seen[id].get::<String>("token").ok().flatten();
        let mut record = self.record_for(id);
        let token = record.get::<String>("token").ok().flatten();
        let call = self.call(json!({
            "kind": "update", "id": id.expose(), "version": record.version(), "token": token,
            "read": read,
        }));
        match self.store.update(&mut record).await {
            Ok(()) => {
                call.done(&self.history, json!({ "ok": true }));
                self.seen.insert(id.clone(), record);
            }
            Err(err) if err.is_conflict() => call.done(&self.history, json!({ "ok": false })),
            Err(_) => {
                self.unknown(call);
                self.owner.retire(id);
            }
        }
    }

    async fn set(&mut self, id: &SessionId) {
        let mut record = self.record_for(id);
        let token = record.get::<String>("token").ok().flatten();
        let call = self.call(json!({
            "kind": "set", "id": id.expose(), "version": record.version(), "token": token,
        }));
        match self.store.set(&mut record).await {
            Ok(()) => {
                call.done(&self.history, json!({ "version": record.version() }));
                self.seen.insert(id.clone(), record);
            }
            Err(_) => {
                self.unknown(call);
                self.owner.retire(id);
            }
        }
    }

    async fn touch(&mut self, id: &SessionId) {
        let call = self.call(json!({"kind": "touch", "id": id.expose()}));
        let later = in_an_hour() + time::Duration::minutes(30);
        // A touch changes no version or value: a failed one is left out.
        if let Ok(live) = self.store.touch(id, later).await {
            call.done(&self.history, json!({ "live": live }));
        }
    }

    async fn destroy(&mut self, id: &SessionId) {
        let call = self.call(json!({"kind": "destroy", "id": id.expose()}));
        match self.store.destroy(id).await {
            Ok(()) => call.done(&self.history, json!({})),
            Err(_) => {
                self.unknown(call);
                self.owner.retire(id);
            }
        }
    }

    async fn rename(&mut self, from: &SessionId) {
        let to = SessionId::generate();
        if self.moves_atomic {
            self.owner.add(to.clone());
        }
        let call = self.call(json!({"kind": "rename", "from": from.expose(), "to": to.expose()}));
        match self.store.rename(from, &to).await {
            Ok(outcome) => {
                let result = match outcome {
                    Rename::Moved => "moved",
                    Rename::SourceMissing => "source_missing",
                    Rename::TargetTaken => "target_taken",
                };
                call.done(&self.history, json!({ "result": result }));
                if !self.moves_atomic {
                    self.owner.add(to.clone());
                }
                if let (Rename::Moved, Some(mut record)) = (outcome, self.seen.remove(from)) {
                    record.set_id(to.clone());
                    self.seen.insert(to, record);
                }
            }
            Err(_) => {
                self.unknown(call);
                self.owner.retire(from);
                self.owner.retire(&to);
            }
        }
    }

    async fn list(&mut self) {
        let call = self.call(json!({"kind": "list", "owner": self.owner.name}));
        // A failed read has no effect: left out of the history.
        if let Ok(records) = self.store.list_by_owner(&self.owner.name).await {
            let ids: Vec<String> = records.iter().map(|r| self.owner.plain(r.id())).collect();
            call.done(&self.history, json!({ "ids": ids }));
        }
    }

    async fn revoke(&mut self) {
        let call = self.call(json!({"kind": "revoke", "owner": self.owner.name}));
        match self.store.destroy_by_owner(&self.owner.name).await {
            Ok(count) => call.done(&self.history, json!({ "count": count })),
            Err(_) => {
                self.unknown(call);
                self.owner.closed.store(true, Ordering::Relaxed);
            }
        }
    }
}

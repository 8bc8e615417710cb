//! What the benchmark drives: the [`Target`] trait, and its one generic implementation for
//! our stores, [`Ours`], over any [`SessionStore`].

use std::time::Duration as StdDuration;

use anyhow::{Result, anyhow, bail};
use async_trait::async_trait;
use serde::Serialize;
use session_core::{Expiry, SessionId, SessionStore, modify};
use time::Duration;

use crate::workload::{Change, Data};

/// Who wrote a target: us, the raw client baseline, or a peer crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One of our stores.
    Ours,
    /// The minimum equivalent work done directly with the client library.
    Raw,
    /// A store from crates.io that users would otherwise pick.
    Peer,
}

/// A target's name, backend and what it can do.
#[derive(Debug, Clone)]
pub struct Info {
    /// The name in the output, e.g. `session-redis (fred)`.
    pub name: String,
    /// The backend: `memory`, `redis`, `postgres`, `mongo`.
    pub backend: &'static str,
    /// Ours, raw or peer.
    pub kind: Kind,
    /// Whether [`Target::rmw_cas`] and [`Target::read_lazy_touch`] are implemented.
    pub cas_and_touch: bool,
}

impl Info {
    /// Info for a target without compare-and-swap or touch.
    pub fn new(name: impl Into<String>, backend: &'static str, kind: Kind) -> Self {
        Self {
            name: name.into(),
            backend,
            kind,
            cas_and_touch: false,
        }
    }
}

/// One store (or baseline) under test. Every operation reads and decodes or encodes the whole
/// session, as a web request would.
#[async_trait]
pub trait Target: Send + Sync + 'static {
    /// The handle of a stored session.
    type Id: Clone + Send + Sync + 'static;

    /// Name, backend and capabilities.
    fn info(&self) -> Info;

    /// Stores a new session holding `data`, expiring `ttl` from now.
    async fn create(&self, data: Data, ttl: Duration) -> Result<Self::Id>;

    /// Reads and decodes the session; a missing session is an error.
    async fn get(&self, id: &Self::Id) -> Result<()>;

    /// Reads the session, applies `change`, writes it back (last writer wins).
    async fn rmw(&self, id: &Self::Id, change: &Change) -> Result<()>;

    /// Like [`Self::rmw`] with a compare-and-swap write, retried on conflict.
    async fn rmw_cas(&self, _id: &Self::Id, _change: &Change) -> Result<()> {
        bail!("{} has no compare-and-swap", self.info().name)
    }

    /// Reads the session under `expiry`'s lazy-touch policy, touching it when the policy says
    /// so; returns whether a touch was written.
    async fn read_lazy_touch(&self, _id: &Self::Id, _expiry: &Expiry) -> Result<bool> {
        bail!("{} has no touch", self.info().name)
    }

    /// Removes the session.
    async fn delete(&self, id: &Self::Id) -> Result<()>;
}

/// How many compare-and-swap attempts `rmw-cas` makes: one per concurrent writer suffices.
const CAS_ATTEMPTS: usize = 128;

/// Any of our stores, driven through [`SessionStore`].
pub struct Ours<S> {
    store: S,
    info: Info,
}

impl<S: SessionStore + 'static> Ours<S> {
    /// Wraps `store` under `name` on `backend`.
    pub fn new(store: S, name: impl Into<String>, backend: &'static str) -> Self {
        let mut info = Info::new(name, backend, Kind::Ours);
        info.cas_and_touch = true;
        Self { store, info }
    }
}

fn missing() -> anyhow::Error {
    anyhow!("session missing")
}

#[async_trait]
impl<S: SessionStore + 'static> Target for Ours<S> {
    type Id = SessionId;

    fn info(&self) -> Info {
        self.info.clone()
    }

    async fn create(&self, data: Data, ttl: Duration) -> Result<SessionId> {
        let mut record = Expiry::idle(ttl).new_record();
        record.set_data(data);
        self.store.create(&mut record).await?;
        Ok(record.id().clone())
    }

    async fn get(&self, id: &SessionId) -> Result<()> {
        self.store.get(id).await?.ok_or_else(missing).map(drop)
    }

    async fn rmw(&self, id: &SessionId, change: &Change) -> Result<()> {
        let mut record = self.store.get(id).await?.ok_or_else(missing)?;
        change.apply_map(record.data_mut());
        self.store.set(&mut record).await?;
        Ok(())
    }

    async fn rmw_cas(&self, id: &SessionId, change: &Change) -> Result<()> {
        modify(&self.store, id, CAS_ATTEMPTS, |record| {
            change.apply_map(record.data_mut())
        })
        .await?
        .ok_or_else(missing)
        .map(drop)
    }

    async fn read_lazy_touch(&self, id: &SessionId, expiry: &Expiry) -> Result<bool> {
        let record = self.store.get(id).await?.ok_or_else(missing)?;
        let Some(target) = expiry.touch_target(&record) else {
            return Ok(false);
        };
        let live = self.store.touch(id, target).await?;
        live.then_some(true).ok_or_else(missing)
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        Ok(self.store.destroy(id).await?)
    }
}

/// The time-to-live of a `ttl` as std, for clients that take one.
pub fn std_ttl(ttl: Duration) -> StdDuration {
    StdDuration::try_from(ttl).unwrap_or(StdDuration::ZERO)
}

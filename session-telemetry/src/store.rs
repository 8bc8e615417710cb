//! [`InstrumentedStore`]: a span, metrics and lifecycle events around every call of any store.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use session_core::{Record, Rename, Result, SessionId, SessionStore};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::events::{EventStream, SessionEvent};
use crate::metrics::{self, Handles, Operation, Outcome};

/// How many events a subscriber may fall behind before it misses some, by default.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// The largest event capacity: every slot is allocated up front.
pub const MAX_EVENT_CAPACITY: usize = 1 << 16;

/// Wraps any [`SessionStore`] and reports every call: a `tracing` span, metrics through the
/// `metrics` facade, and [`SessionEvent`]s to subscribers. It changes nothing about what the
/// store does: every call goes to the inner store once, as it was made.
pub struct InstrumentedStore<S> {
    inner: S,
    system: &'static str,
    handles: Handles,
    server_address: Option<String>,
    server_port: Option<u16>,
    payload_one_in: u64,
    writes: AtomicU64,
    events: broadcast::Sender<SessionEvent>,
}

/// Configures an [`InstrumentedStore`]; from [`InstrumentedStore::builder`].
#[derive(Debug)]
pub struct Builder<S> {
    inner: S,
    system: &'static str,
    server_address: Option<String>,
    server_port: Option<u16>,
    payload_one_in: u32,
    event_capacity: usize,
}

impl<S: SessionStore> Builder<S> {
    /// The backend, as OpenTelemetry's `db.system.name` names it: `redis`, `postgresql`,
    /// `mongodb`, `sqlite`, `mysql`, `mariadb`, or `memory` (default `other`). It is the
    /// `db_system` label of every metric.
    pub fn system(mut self, system: &'static str) -> Self {
        self.system = system;
        self
    }

    /// The server's host and port, for the spans' `server.address` and `server.port`.
    /// Give a host, never a URL: a URL may hold a password.
    pub fn server(mut self, address: impl Into<String>, port: Option<u16>) -> Self {
        self.server_address = Some(address.into());
        self.server_port = port;
        self
    }

    /// Records the [payload size](crate::metrics::PAYLOAD_SIZE) of one write in `one_in`
    /// (default 0: none; 1: every write). Each measured write costs a pass over the data
    /// counting its JSON size, whether or not a recorder is installed; measured on
    /// session-bench, every write costs Redis' rmw@64 over 10%, so sample (the demo
    /// measures one write in 16): the histogram's count is then the writes' over `one_in`,
    /// its distribution theirs.
    pub fn payload_sizes(mut self, one_in: u32) -> Self {
        self.payload_one_in = one_in;
        self
    }

    /// How many events a subscriber may fall behind before it misses some (default
    /// [`DEFAULT_EVENT_CAPACITY`]): `capacity` rounded up to a power of two, between 1 and
    /// [`MAX_EVENT_CAPACITY`] (every slot is allocated when the store is built).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.clamp(1, MAX_EVENT_CAPACITY).next_power_of_two();
        self
    }

    /// The store. Describes the metrics to the installed recorder.
    pub fn build(self) -> InstrumentedStore<S> {
        metrics::describe();
        InstrumentedStore {
            inner: self.inner,
            system: self.system,
            handles: Handles::new(self.system),
            server_address: self.server_address,
            server_port: self.server_port,
            payload_one_in: self.payload_one_in.into(),
            writes: AtomicU64::new(0),
            events: broadcast::channel(self.event_capacity).0,
        }
    }
}

impl<S: SessionStore> InstrumentedStore<S> {
    /// `inner` with every call reported, with the default settings.
    pub fn new(inner: S) -> Self {
        Self::builder(inner).build()
    }

    /// Configures the wrapper of `inner`.
    pub fn builder(inner: S) -> Builder<S> {
        Builder {
            inner,
            system: "other",
            server_address: None,
            server_port: None,
            payload_one_in: 0,
            event_capacity: DEFAULT_EVENT_CAPACITY,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub(crate) fn event_sender(&self) -> broadcast::Sender<SessionEvent> {
        self.events.clone()
    }

    pub(crate) fn system(&self) -> &'static str {
        self.system
    }

    /// The events of calls made from now on through this store (and its clones' `Arc`).
    pub fn subscribe(&self) -> EventStream {
        EventStream::new(self.events.subscribe())
    }

    /// The call's span. Its fields follow OpenTelemetry's database conventions; the session
    /// shows by fingerprint, filled in only when a subscriber listens (it costs a hash).
    fn span(&self, operation: Operation, id: Option<&SessionId>) -> Span {
        let operation = operation.name();
        let span = tracing::info_span!(
            "session_store",
            otel.name = operation,
            otel.kind = "client",
            otel.status_code = Empty,
            db.system.name = self.system,
            db.operation.name = operation,
            server.address = Empty,
            server.port = Empty,
            session.fingerprint = Empty,
            outcome = Empty,
            error.type = Empty,
        );
        if !span.is_disabled() {
            if let Some(address) = &self.server_address {
                span.record("server.address", address.as_str());
            }
            if let Some(port) = self.server_port {
                span.record("server.port", port);
            }
            if let Some(id) = id {
                span.record(
                    "session.fingerprint",
                    tracing::field::display(id.fingerprint()),
                );
            }
        }
        span
    }

    /// Runs one call of the inner store inside its span, then records its outcome.
    async fn observe<T>(
        &self,
        operation: Operation,
        id: Option<&SessionId>,
        call: impl Future<Output = Result<T>>,
        outcome: impl FnOnce(&T) -> Outcome,
    ) -> Result<T> {
        self.observe_in(self.span(operation, id), operation, call, outcome)
            .await
    }

    /// [`Self::observe`] in a span made beforehand: a write's span takes the record's id
    /// before the call borrows the record (no copy of the id per call).
    async fn observe_in<T>(
        &self,
        span: Span,
        operation: Operation,
        call: impl Future<Output = Result<T>>,
        outcome: impl FnOnce(&T) -> Outcome,
    ) -> Result<T> {
        let mut pending = Pending {
            handles: &self.handles,
            operation,
            started: Instant::now(),
            span: &span,
            done: false,
        };
        let result = call.instrument(span.clone()).await;
        pending.done = true;
        let took = pending.started.elapsed();
        let outcome = match &result {
            Ok(value) => outcome(value),
            Err(err) => Outcome::of_error(err),
        };
        if !span.is_disabled() {
            span.record("outcome", outcome.as_str());
            if let (Outcome::Error, Err(err)) = (outcome, &result) {
                span.record("error.type", err.kind());
                span.record("otel.status_code", "ERROR");
            }
        }
        self.handles
            .call(operation, outcome, took, result.as_ref().err());
        result
    }

    /// Measures the payload of one write in `payload_one_in`.
    fn payload(&self, operation: Operation, record: &Record) {
        if self.payload_one_in > 0
            && self
                .writes
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(self.payload_one_in)
        {
            self.handles.payload(operation, record.data());
        }
    }

    /// Sends an event when someone listens (building it only then).
    fn emit(&self, event: impl FnOnce() -> SessionEvent) {
        if self.events.receiver_count() > 0 {
            // No receiver left since the check: nobody to tell.
            let _ = self.events.send(event());
        }
    }

    fn created(&self, record: &Record) {
        metrics::sessions(metrics::CREATED, self.system, 1);
        self.emit(|| SessionEvent::Created {
            id: record.id().clone(),
            owner: record.owner().map(str::to_owned),
        });
    }

    fn rotated(&self, from: &SessionId, to: &SessionId) {
        metrics::sessions(metrics::ROTATED, self.system, 1);
        self.emit(|| SessionEvent::Rotated {
            from: from.clone(),
            to: to.clone(),
        });
    }

    fn revoked(&self, owner: &str, count: u64, everywhere: bool) {
        let reason = if everywhere { "owner" } else { "limit" };
        metrics::revoked(self.system, reason, count);
        if count > 0 {
            self.emit(|| SessionEvent::Revoked {
                owner: owner.to_owned(),
                count,
                everywhere,
            });
        }
    }
}

/// A call in flight: dropped before it is done (its caller gave up on it), it is recorded
/// with the outcome `cancelled`, so the slowest calls don't vanish from the metrics.
struct Pending<'a> {
    handles: &'a Handles,
    operation: Operation,
    started: Instant,
    span: &'a Span,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            let outcome = Outcome::Cancelled;
            self.span.record("outcome", outcome.as_str());
            self.handles
                .call(self.operation, outcome, self.started.elapsed(), None);
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for InstrumentedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedStore")
            .field("inner", &self.inner)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

fn found<T>(value: &Option<T>) -> Outcome {
    if value.is_some() {
        Outcome::Ok
    } else {
        Outcome::Miss
    }
}

fn ok<T>(_: &T) -> Outcome {
    Outcome::Ok
}

#[async_trait]
impl<S: SessionStore> SessionStore for InstrumentedStore<S> {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        self.observe(Operation::Get, Some(id), self.inner.get(id), found)
            .await
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        let span = self.span(Operation::Insert, Some(record.id()));
        let stored = self
            .observe_in(
                span,
                Operation::Insert,
                self.inner.insert(record),
                |stored| {
                    if *stored {
                        Outcome::Ok
                    } else {
                        Outcome::Conflict
                    }
                },
            )
            .await?;
        if stored {
            self.payload(Operation::Insert, record);
            self.created(record);
        }
        Ok(stored)
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        let span = self.span(Operation::Set, Some(record.id()));
        self.observe_in(span, Operation::Set, self.inner.set(record), ok)
            .await?;
        self.payload(Operation::Set, record);
        Ok(())
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let span = self.span(Operation::Update, Some(record.id()));
        self.observe_in(span, Operation::Update, self.inner.update(record), ok)
            .await?;
        self.payload(Operation::Update, record);
        Ok(())
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.observe(
            Operation::Touch,
            Some(id),
            self.inner.touch(id, expires_at),
            |live| {
                if *live { Outcome::Ok } else { Outcome::Miss }
            },
        )
        .await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.observe(Operation::Destroy, Some(id), self.inner.destroy(id), ok)
            .await?;
        metrics::sessions(metrics::DESTROYED, self.system, 1);
        self.emit(|| SessionEvent::Destroyed { id: id.clone() });
        Ok(())
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        let renamed = self
            .observe(
                Operation::Rename,
                Some(from),
                self.inner.rename(from, to),
                |renamed| match renamed {
                    Rename::Moved => Outcome::Ok,
                    Rename::SourceMissing => Outcome::Miss,
                    Rename::TargetTaken => Outcome::Conflict,
                },
            )
            .await?;
        if renamed == Rename::Moved {
            self.rotated(from, to);
        }
        Ok(renamed)
    }

    async fn delete_expired(&self) -> Result<u64> {
        let count = self
            .observe(
                Operation::DeleteExpired,
                None,
                self.inner.delete_expired(),
                ok,
            )
            .await?;
        metrics::sessions(metrics::PURGED, self.system, count);
        if count > 0 {
            self.emit(|| SessionEvent::Purged { count });
        }
        Ok(count)
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.observe(
            Operation::ListByOwner,
            None,
            self.inner.list_by_owner(owner),
            ok,
        )
        .await
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        let count = self
            .observe(
                Operation::DestroyByOwner,
                None,
                self.inner.destroy_by_owner(owner),
                ok,
            )
            .await?;
        self.revoked(owner, count, true);
        Ok(count)
    }

    async fn count(&self) -> Result<u64> {
        self.observe(Operation::Count, None, self.inner.count(), ok)
            .await
    }

    fn timeout(&self) -> Duration {
        self.inner.timeout()
    }

    async fn create(&self, record: &mut Record) -> Result<()> {
        let span = self.span(Operation::Create, Some(record.id()));
        self.observe_in(span, Operation::Create, self.inner.create(record), ok)
            .await?;
        self.payload(Operation::Create, record);
        self.created(record);
        Ok(())
    }

    async fn cycle_id(&self, id: &SessionId) -> Result<Option<SessionId>> {
        let fresh = self
            .observe(Operation::CycleId, Some(id), self.inner.cycle_id(id), found)
            .await?;
        if let Some(fresh) = &fresh {
            self.rotated(id, fresh);
        }
        Ok(fresh)
    }

    async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
        let count = self
            .observe(
                Operation::LimitOwner,
                None,
                self.inner.limit_owner(owner, keep),
                ok,
            )
            .await?;
        self.revoked(owner, count, false);
        Ok(count)
    }
}

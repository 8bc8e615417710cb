//! Telemetry for any session store: [`InstrumentedStore`] wraps a
//! [`SessionStore`](session_core::SessionStore) (ours or a third party's) and reports every
//! call as
//!
//! - a `tracing` span following OpenTelemetry's database conventions (`db.system.name`,
//!   `db.operation.name`, `server.address`, `server.port`, `error.type`, plus `outcome` and
//!   the session's fingerprint, never its id or data);
//! - metrics through the `metrics` facade ([`metrics`] lists every name; next to free when
//!   no recorder is installed);
//! - [`SessionEvent`]s (`Created`, `Rotated`, `Destroyed`, `Revoked`, `Purged`) to every
//!   [subscriber](InstrumentedStore::subscribe), for cleaning up what the app keeps per
//!   session (close a websocket at logout).
//!
//! ```
//! use futures::StreamExt;
//! use session_core::{Record, SessionStore, now};
//! use session_memory::MemoryStore;
//! use session_telemetry::{Delivery, InstrumentedStore, SessionEvent};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> session_core::Result<()> {
//! // Install a recorder first (e.g. metrics-exporter-prometheus), then build the store.
//! let store = InstrumentedStore::builder(MemoryStore::new())
//!     .system("memory")
//!     .build();
//! let mut events = store.subscribe();
//!
//! let mut session = Record::new(now() + time::Duration::minutes(30));
//! store.create(&mut session).await?;
//! store.destroy(session.id()).await?;
//!
//! let Some(Delivery::Event(SessionEvent::Created { id, .. })) = events.next().await else {
//!     panic!("expected the creation first");
//! };
//! assert_eq!(&id, session.id());
//! assert!(matches!(
//!     events.next().await,
//!     Some(Delivery::Event(SessionEvent::Destroyed { .. }))
//! ));
//! # Ok(()) }
//! ```
//!
//! # Why a wrapper
//!
//! Telemetry lives in a wrapper rather than in every backend, so it is written once, works on
//! third-party stores, and costs nothing to a user who doesn't wrap. What a wrapper can't see
//! is counted where it happens: [`session_core::modify`]'s retries and give-ups
//! ([`session_core::MODIFY_RETRIES`], [`session_core::MODIFY_GIVE_UPS`]).
//!
//! # What events cover
//!
//! Events report the calls made through this wrapper in this process that returned success,
//! each once, in the order the calls returned, to every subscriber that keeps up (one that
//! falls behind the [capacity](Builder::event_capacity) is told how many it missed). They
//! don't report failed or cancelled calls (which may or may not have taken effect: a
//! `destroy` whose reply was lost sends no `Destroyed`), nor other processes' calls.
//!
//! Sessions that end by expiring are reported by the backend, where it implements
//! [`ExpiryFeed`](session_core::ExpiryFeed): [`InstrumentedStore::report_expiries`] turns
//! its reports into [`SessionEvent::Expired`]. Each backend's docs (and the README's
//! "Expiry events" table) state its guarantee: which process hears, how late, at least once.

mod events;
mod expiries;
pub mod metrics;
mod store;

pub use events::{Delivery, EventStream, SessionEvent};
pub use expiries::ExpiryReporter;
pub use store::{Builder, DEFAULT_EVENT_CAPACITY, InstrumentedStore, MAX_EVENT_CAPACITY};

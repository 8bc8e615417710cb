//! Lifecycle events of the sessions this process's instrumented store changed.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use session_core::SessionId;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// Something that happened to sessions through an
/// [`InstrumentedStore`](crate::InstrumentedStore) of this process.
///
/// Events carry ids and owners, never session data. An id is a bearer secret: log it by
/// [`SessionId::fingerprint`] (its `Debug` shows only that).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session was stored under a free id (`insert` that stored, `create`).
    Created {
        /// Its id.
        id: SessionId,
        /// Its owner, if it has one.
        owner: Option<String>,
    },
    /// `cycle_id` moved a session to a fresh id.
    Rotated {
        /// The id it had (dead now).
        from: SessionId,
        /// The id it lives under.
        to: SessionId,
    },
    /// `destroy` removed whatever was under the id (logout).
    Destroyed {
        /// The id.
        id: SessionId,
    },
    /// Live sessions of an owner were ended: "log out everywhere" (`destroy_by_owner`) or a
    /// login beyond the allowed number (`limit_owner`).
    Revoked {
        /// The owner.
        owner: String,
        /// How many live sessions were ended.
        count: u64,
        /// Whether every session of the owner was ended (`destroy_by_owner`), or only the
        /// oldest beyond a limit (`limit_owner`).
        everywhere: bool,
    },
    /// The backend reported a session that ended by itself: expired (or, on the memory
    /// store, evicted for space). Only while
    /// [`report_expiries`](crate::InstrumentedStore::report_expiries) runs; each backend
    /// states its guarantee (at least once, within a bound), so one may arrive twice.
    Expired {
        /// Its id.
        id: SessionId,
        /// Its owner, where the backend still knew it.
        owner: Option<String>,
    },
    /// `delete_expired` removed expired records.
    Purged {
        /// How many.
        count: u64,
    },
}

/// The events of one subscriber, from
/// [`InstrumentedStore::subscribe`](crate::InstrumentedStore::subscribe): a [`Stream`] of
/// [`Delivery`]. A subscriber that falls more than the store's event capacity behind is
/// told how many events it missed, then goes on with the newest.
#[derive(Debug)]
pub struct EventStream {
    inner: BroadcastStream<SessionEvent>,
}

/// What an [`EventStream`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next event.
    Event(SessionEvent),
    /// This many events were dropped because the subscriber fell behind (raise the
    /// store's [event capacity](crate::Builder::event_capacity), or read faster).
    Missed(u64),
}

impl EventStream {
    pub(crate) fn new(receiver: broadcast::Receiver<SessionEvent>) -> Self {
        Self {
            inner: BroadcastStream::new(receiver),
        }
    }
}

impl Stream for EventStream {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|item| {
            item.map(|delivered| match delivered {
                Ok(event) => Delivery::Event(event),
                Err(BroadcastStreamRecvError::Lagged(missed)) => Delivery::Missed(missed),
            })
        })
    }
}

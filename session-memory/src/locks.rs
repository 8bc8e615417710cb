//! The memory store's locks: one per stripe of session ids for the calls on one session,
//! all of them for the calls spanning sessions, and a counter that lets a read skip them.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Mutex, MutexGuard, PoisonError};

use session_core::SessionId;

/// How many stripes. A call on one session locks its id's stripe only, so calls on
/// different sessions rarely meet; a call spanning sessions locks them all, in order.
const STRIPES: usize = 64;

/// One stripe's lock, alone on its cache line: neighbouring stripes taken by different
/// threads would otherwise pass the line back and forth as if they shared one lock.
#[repr(align(128))]
#[derive(Default)]
struct Stripe(Mutex<()>);

/// See the module docs.
pub(crate) struct Locks {
    stripes: Box<[Stripe]>,
    /// Odd while a call spanning sessions changes the store (`rename`, `destroy_by_owner`),
    /// bumped again when it is done: a read that saw it even and unchanged around its look
    /// at the cache saw none of such a call's steps, nor half of them.
    spans: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Locks {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            spans: AtomicU64::new(0),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

/// The store held alone: every stripe (see [`Locks::all`]).
pub(crate) struct Alone<'a> {
    _stripes: Vec<MutexGuard<'a, ()>>,
}

/// The store held alone by a call that changes several sessions: reads wait for it or look
/// again (see [`Locks::read`]). The count is bumped back to even before the stripes unlock
/// (a field drops after `drop` runs), also when the call returns early or panics.
pub(crate) struct Changing<'a> {
    spans: &'a AtomicU64,
    _alone: Alone<'a>,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.spans.fetch_add(1, Ordering::SeqCst);
    }
}

impl Locks {
    /// The lock of `id`'s stripe, for a call on that session alone. Nothing panics while
    /// holding one with a state to break (the guarded value is `()`), so a poisoned lock is
    /// taken as it is.
    pub(crate) fn one(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(id) as usize % STRIPES;
        lock(&self.stripes[stripe].0)
    }

    /// Every stripe, always in the same order (so two callers never deadlock), for a call
    /// that reads several sessions as of one instant (`list_by_owner`).
    pub(crate) fn all(&self) -> Alone<'_> {
        Alone {
            _stripes: self.stripes.iter().map(|stripe| lock(&stripe.0)).collect(),
        }
    }

    /// Every stripe, for a call that changes several sessions (`rename`, `destroy_by_owner`):
    /// marks the change under way for [`Self::read`] until the guard drops.
    pub(crate) fn changing(&self) -> Changing<'_> {
        let alone = self.all();
        self.spans.fetch_add(1, Ordering::SeqCst);
        // Orders the count before the change's steps: a read that sees a step sees the count.
        fence(Ordering::Release);
        Changing {
            spans: &self.spans,
            _alone: alone,
        }
    }

    /// What `look` finds of `id`, as of one instant also for the calls that change several
    /// sessions: a read that overlapped such a call (the count odd or moved) looks again
    /// under `id`'s stripe, which waits for the call to end. Without a lock otherwise, so
    /// reads share no cache line with each other. A read of one session needs no more:
    /// each write of one session is one step in moka.
    pub(crate) fn read<T>(&self, id: &SessionId, look: impl Fn() -> T) -> T {
        let before = self.spans.load(Ordering::Acquire);
        if before.is_multiple_of(2) {
            let found = look();
            // Orders the look before the second load: had the look seen any step of a
            // change, the load sees that change's count.
            fence(Ordering::Acquire);
            if self.spans.load(Ordering::Relaxed) == before {
                return found;
            }
        }
        let _stripe = self.one(id);
        look()
    }
}

fn lock(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

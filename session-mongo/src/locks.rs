//! The lease locks of [`WriteGuard::Locks`](crate::WriteGuard) (FerretDB 1.x, whose filtered
//! writes are not atomic): one document per locked session in `<collection>_locks`, taken by
//! an insert that a unique index makes atomic, released by deleting it.
//!
//! A locked section runs in a task of its own. A caller that gives up (its timeout, a
//! dropped request) does not stop it, so the section's writes finish as one and its lock is
//! released when it ends: a lock is left to its lease only when the section itself overran
//! (the server hung), because then a write of it may still land.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{DateTime, doc};
use session_core::{Error, Result, SessionId, unix_millis};

use crate::document::now_bson;
use crate::errors::{BACKEND, backend_error, is_duplicate_key};
use crate::store::MongoStore;

/// A lease lock's state, from [`MongoStore::lock`].
#[derive(Debug, PartialEq, Eq)]
enum Lock {
    /// Taken under this token (the lock document's `_id`).
    Held(SessionId),
    /// Another writer holds it (only when not waiting).
    Busy,
}

/// This process's turn in the queue of writers to one session; leaving the queue removes
/// it from the store's map when nobody else waits.
struct Turn<'a> {
    store: &'a MongoStore,
    id: &'a str,
    queue: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut queues = self.store.queues.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this turn hold the queue: nobody else is waiting.
        if Arc::strong_count(&self.queue) == 2 {
            queues.remove(self.id);
        }
    }
}

impl MongoStore {
    /// How long a lock holds before another writer may break it: twice the call timeout.
    fn lease(&self) -> Duration {
        self.options
            .timeout
            .saturating_mul(2)
            .max(Duration::from_secs(1))
    }

    /// Runs `op` holding the lock of `id`, waiting for it (the store's timeout bounds the
    /// wait). Without locks, just runs `op`.
    pub(crate) async fn locked<T, F, Fut>(&self, id: &str, op: F) -> Result<T>
    where
        F: FnOnce(MongoStore) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        match self.with_lock(id, true, op).await? {
            Some(done) => Ok(done),
            None => Err(Error::transient(BACKEND, "a session lock stayed busy")),
        }
    }

    /// Like [`Self::locked`], but `None` at once when another writer holds the lock.
    pub(crate) async fn try_locked<T, F, Fut>(&self, id: &str, op: F) -> Result<Option<T>>
    where
        F: FnOnce(MongoStore) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.with_lock(id, false, op).await
    }

    async fn with_lock<T, F, Fut>(&self, id: &str, wait: bool, op: F) -> Result<Option<T>>
    where
        F: FnOnce(MongoStore) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        if self.locks.is_none() {
            return op(self.clone()).await.map(Some);
        }
        let (store, id) = (self.clone(), id.to_owned());
        tokio::spawn(async move { store.run_locked(&id, wait, op).await })
            .await
            .map_err(|err| Error::transient(BACKEND, err))?
    }

    /// The locked section: this process's queue for `id`, then the lease lock, then `op`.
    async fn run_locked<T, F, Fut>(&self, id: &str, wait: bool, op: F) -> Result<Option<T>>
    where
        F: FnOnce(MongoStore) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let turn = self.turn(id);
        let _queued = if wait {
            Arc::clone(&turn.queue).lock_owned().await
        } else {
            match Arc::clone(&turn.queue).try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => return Ok(None),
            }
        };
        let timeout = self.options.timeout;
        let lock = match tokio::time::timeout(timeout, self.lock(id, wait)).await {
            Ok(lock) => lock?,
            Err(_) => return Err(timed_out("lock", timeout)),
        };
        let Lock::Held(token) = lock else {
            return Ok(None);
        };
        match tokio::time::timeout(timeout, op(self.clone())).await {
            Ok(result) => {
                self.unlock(token).await;
                result.map(Some)
            }
            // A write of `op` may still land: the lease, not us, ends the lock.
            Err(_) => Err(timed_out("a locked write", timeout)),
        }
    }

    fn turn<'a>(&'a self, id: &'a str) -> Turn<'a> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let queue = Arc::clone(queues.entry(id.to_owned()).or_default());
        Turn {
            store: self,
            id,
            queue,
        }
    }

    /// Whether a writer of this process holds or waits for `id`'s lock right now.
    pub(crate) fn queued(&self, id: &str) -> bool {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Takes the lease lock of `id`. While another writer holds it, waits, or returns
    /// [`Lock::Busy`] when `wait` is false.
    async fn lock(&self, id: &str, wait: bool) -> Result<Lock> {
        let Some(locks) = &self.locks else {
            return Err(Error::Config("no lock collection".into()));
        };
        let lease_ms = i64::try_from(self.lease().as_millis()).unwrap_or(i64::MAX);
        let mut pause = Duration::from_millis(1);
        loop {
            let token = SessionId::generate();
            let now = unix_millis(session_core::now());
            let lock = doc! {
                "_id": token.expose(),
                "lock_of": id,
                "until": DateTime::from_millis(now.saturating_add(lease_ms)),
            };
            match locks.insert_one(lock).await {
                Ok(_) => return Ok(Lock::Held(token)),
                Err(err) if is_duplicate_key(&err) => {}
                Err(err) => return Err(backend_error(err)),
            }
            // A lease that ran out belongs to a writer that crashed or overran. The server
            // deletes the stale lock by its own (token) `_id`, never a fresh one.
            let stale = doc! { "lock_of": id, "until": { "$lte": now_bson() } };
            if locks
                .delete_one(stale)
                .await
                .map_err(backend_error)?
                .deleted_count
                == 1
            {
                continue;
            }
            if !wait {
                return Ok(Lock::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(8));
        }
    }

    /// Releases a lock (best effort: a lost release expires with its lease).
    async fn unlock(&self, token: SessionId) {
        if let Some(locks) = &self.locks
            && let Err(err) = locks.delete_one(doc! { "_id": token.expose() }).await
        {
            tracing::warn!(error = %err, "releasing a session lock failed; its lease will expire");
        }
    }

    /// Deletes the leases of writers that crashed or overran (by their own `_id`, so never
    /// a fresh one).
    pub(crate) async fn purge_stale_locks(&self) -> Result<()> {
        if let Some(locks) = &self.locks {
            locks
                .delete_many(doc! { "until": { "$lte": now_bson() } })
                .await
                .map_err(backend_error)?;
        }
        Ok(())
    }
}

fn timed_out(operation: &'static str, after: Duration) -> Error {
    Error::Timeout {
        backend: BACKEND,
        operation,
        after,
    }
}

//! How many copies of a write must exist before the store reports it done.
//!
//! Redis replicates asynchronously: a primary acknowledges a write before any replica has
//! it, and a failover that promotes a replica which had not copied it yet loses it. With
//! [`Durability::Replicated`] every write is followed, on the same connection and in the
//! same pipeline, by `WAIT replicas timeout`, and is reported done only once that many
//! replicas have acknowledged it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_core::{Error, Result};
use tokio::sync::Semaphore;

/// When a write counts as done; see [`RedisStoreBuilder::durability`](crate::RedisStoreBuilder::durability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Done once the primary has applied it (the default, and Redis' own behaviour). A
    /// failover in the moment between the primary's reply and a replica's copy (usually
    /// well under a millisecond, longer when the replica lags) loses the write although the
    /// caller was told it succeeded: a session can come back after a destroy, or lose a
    /// change.
    #[default]
    Primary,
    /// Done once the primary has applied it **and** at least `replicas` replicas have
    /// acknowledged it (`WAIT`), within `timeout`. A failover that promotes one of those
    /// replicas keeps the write. Each write costs one more command in the same round trip,
    /// plus the replicas' copy time.
    ///
    /// When fewer replicas confirm within `timeout`, the call fails with a retryable
    /// [`Error::Backend`]: the write **was applied on the primary** and may or may not
    /// survive a failover, so read the session again before deciding what to do. (This is
    /// what `WAIT` can promise: it does not undo the write.) So a write that failed this way
    /// can be seen by reads and still vanish at a failover; only acknowledged writes are
    /// kept.
    ///
    /// `WAIT` holds its connection on the server until it returns, and calls pipelined
    /// behind it on that connection (reads included) wait too. So the store lets one write
    /// and its `WAIT` at a time onto each connection (on a Cluster, each node's); the other
    /// writes wait their turn in the store, not on the connection, and one whose turn does
    /// not come within the call timeout is never sent. While fewer replicas than required
    /// answer, every write takes the whole `timeout`, writes to that node go one per
    /// `timeout`, and a read waits behind at most one of them. Keep `timeout` short, and
    /// give fred more connections
    /// ([`RedisStoreBuilder::pool_size`](crate::RedisStoreBuilder::pool_size)) when writes
    /// are frequent.
    Replicated {
        /// How many replicas must acknowledge each write (at least 1).
        replicas: u32,
        /// How long to wait for them; shorter than the store's call timeout.
        timeout: Duration,
    },
}

impl Durability {
    /// `(replicas, timeout in ms)` for `WAIT`, or `None` for [`Durability::Primary`].
    pub(crate) fn wait(self) -> Option<(i64, i64)> {
        match self {
            Self::Primary => None,
            Self::Replicated { replicas, timeout } => Some((
                i64::from(replicas),
                i64::try_from(timeout.as_millis())
                    .unwrap_or(i64::MAX)
                    .max(1),
            )),
        }
    }

    /// Refuses settings that cannot work: no replica asked for, or a wait that the store's
    /// own call timeout would cut short.
    pub(crate) fn check(self, call_timeout: Duration) -> Result<()> {
        match self {
            Self::Primary => Ok(()),
            Self::Replicated { replicas: 0, .. } => Err(Error::Config(
                "Durability::Replicated needs at least 1 replica (Durability::Primary waits \
                 for none)"
                    .into(),
            )),
            Self::Replicated { timeout, .. } if timeout.is_zero() || timeout >= call_timeout => {
                Err(Error::Config(format!(
                    "Durability::Replicated's timeout ({timeout:?}) must be above zero and \
                     below the store's call timeout ({call_timeout:?}), which covers the write \
                     and its WAIT (WAIT 0 would wait for ever)"
                )))
            }
            Self::Replicated { .. } => Ok(()),
        }
    }
}

/// One durable write (a write and its `WAIT`, pipelined) at a time on each connection, its
/// turn kept until its reply is in.
///
/// `WAIT` holds its connection on the server until the replicas answer or its timeout ends,
/// and everything behind it on that connection waits too. Both clients write a pipeline out
/// even after its caller gave up (the caller's timeout drops only the wait for the reply),
/// so without turns, while a node lacks the replicas the `WAIT`s ask for, every write that
/// timed out and was tried again left one more full `WAIT` in that connection's queue:
/// callers retrying faster than one `WAIT` timeout each grew the queue without bound, and
/// every call on that connection, reads included, timed out until a replica came back (a
/// Cluster whose promoted primary had no replica yet served nothing on its slots for the
/// 20 s a test waited). With turns, a read waits behind at most one `WAIT` (shorter than the
/// call timeout, see [`Durability::check`]), and a write whose turn does not come within
/// the call timeout is never sent.
#[derive(Debug, Default)]
pub(crate) struct Turns(Mutex<HashMap<String, Arc<Semaphore>>>);

impl Turns {
    /// Runs `write` in the turn of `connection` (a name for the connection it goes out on):
    /// waits for the turn, then runs `write` in a task of its own that keeps the turn until
    /// `write` is done, even if the caller stops waiting first.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        connection: String,
        write: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        let turn = {
            let mut turns = self.0.lock().unwrap_or_else(|p| p.into_inner());
            turns
                .entry(connection)
                .or_insert_with(|| Arc::new(Semaphore::new(1)))
                .clone()
        };
        // Never closed, so never an error.
        let turn = turn.acquire_owned().await.map_err(|err| {
            Error::transient(crate::conn::BACKEND, format!("a write's turn: {err}"))
        })?;
        tokio::spawn(async move {
            let done = write.await;
            drop(turn);
            done
        })
        .await
        .map_err(|err| Error::permanent(crate::conn::BACKEND, format!("a write's task: {err}")))
    }
}

/// Checks `WAIT`'s reply (`acked`, the replicas that confirmed) against the `wanted` count.
pub(crate) fn confirmed(acked: i64, wanted: i64, timeout_ms: i64) -> Result<()> {
    if acked >= wanted {
        return Ok(());
    }
    Err(Error::transient(
        crate::conn::BACKEND,
        format!(
            "the write was applied on the primary but only {acked} of the {wanted} replicas \
             required confirmed it within {timeout_ms} ms (Durability::Replicated); it may be \
             lost if the primary fails now: read the session again before retrying"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_config_errors() {
        let call = Duration::from_secs(1);
        for bad in [
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
                timeout: call,
            },
        ] {
            assert!(matches!(bad.check(call), Err(Error::Config(_))), "{bad:?}");
        }
        let good = Durability::Replicated {
            replicas: 2,
            timeout: Duration::from_millis(250),
        };
        assert!(good.check(call).is_ok());
        assert_eq!(good.wait(), Some((2, 250)));
        assert_eq!(Durability::Primary.wait(), None);
    }

    #[test]
    fn too_few_confirmations_are_a_retryable_error() {
        assert!(confirmed(1, 1, 100).is_ok());
        assert!(confirmed(2, 1, 100).is_ok());
        let err = confirmed(0, 1, 100).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("0 of the 1"), "{err}");
    }
}

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
    /// Reads never wait for replicas, also those the store makes with a script (an
    /// express-session `get`, `list_by_owner`): what such a script writes in passing (a
    /// creation time stamped on a session Node wrote, expired members pruned from an
    /// owner's index) is not confirmed, and a failover may undo it (the next read does it
    /// again).
    ///
    /// `WAIT` holds its connection on the server until it returns, and calls pipelined
    /// behind it on that connection (reads included) wait too. So the store lets only as
    /// many writes with their `WAIT` onto each connection (on a Cluster, each node's) as
    /// take half the call timeout when every `WAIT` runs out (the call timeout divided by
    /// twice `timeout`, at least one); the other writes wait their turn in the store, not on
    /// the connection, and one whose turn does not come within the call timeout is never
    /// sent. While fewer replicas than required answer, every write takes the whole
    /// `timeout` and a read waits behind at most half the call timeout of them. Keep
    /// `timeout` short, and give fred more connections
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

/// A bounded number of durable writes (a write and its `WAIT`, pipelined) at once on each
/// connection, each keeping its turn until its reply is in.
///
/// `WAIT` holds its connection on the server until the replicas answer or its timeout ends,
/// and everything behind it on that connection waits too. Both clients write a pipeline out
/// even after its caller gave up (the caller's timeout drops only the wait for the reply),
/// so without turns, while a node lacks the replicas the `WAIT`s ask for, every write that
/// timed out and was tried again left one more full `WAIT` in that connection's queue:
/// callers retrying faster than one `WAIT` timeout each grew the queue without bound, and
/// every call on that connection, reads included, timed out until a replica came back (a
/// Cluster whose promoted primary had no replica yet served nothing on its slots for the
/// 20 s a test waited). With turns, the `WAIT`s queued on a connection take at most half
/// the call timeout, so a read behind them still answers in time, and a write whose turn
/// does not come within the call timeout is never sent. (One turn per connection would do
/// as much, but cost healthy writes much of their pipelining: 16 writers of 3200 writes
/// took 1.7 times as long on fred, 2.2 times on redis-rs, measured on a loaded machine.)
#[derive(Debug)]
pub(crate) struct Turns {
    /// Writes at once on one connection.
    per_connection: usize,
    turns: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Turns {
    /// Turns for `durability`'s writes in calls of `call_timeout`: as many at once on a
    /// connection as all their `WAIT`s, timing out one after the other, take half the call
    /// timeout (at least one, at most 64).
    pub(crate) fn new(durability: Durability, call_timeout: Duration) -> Self {
        let per_connection = match durability {
            Durability::Replicated { timeout, .. } => {
                let wait = timeout.as_millis().max(1);
                usize::try_from(call_timeout.as_millis() / 2 / wait)
                    .unwrap_or(usize::MAX)
                    .clamp(1, 64)
            }
            Durability::Primary => 1,
        };
        Self {
            per_connection,
            turns: Mutex::default(),
        }
    }

    /// Runs `write` in a turn of `connection` (a name for the connection it goes out on):
    /// waits for a turn, then runs `write` in a task of its own that keeps the turn until
    /// `write` is done, even if the caller stops waiting first.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        connection: String,
        write: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        let turns = {
            let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
            turns
                .entry(connection)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_connection)))
                .clone()
        };
        // Never closed, so never an error.
        let turn = turns.acquire_owned().await.map_err(|err| {
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
    fn a_connection_takes_as_many_writes_as_half_the_call_timeout_of_waits() {
        let turns = |wait_ms, call_ms| {
            let durability = Durability::Replicated {
                replicas: 1,
                timeout: Duration::from_millis(wait_ms),
            };
            Turns::new(durability, Duration::from_millis(call_ms)).per_connection
        };
        assert_eq!(turns(500, 5_000), 5);
        assert_eq!(turns(200, 1_000), 2);
        assert_eq!(turns(300, 1_000), 1);
        assert_eq!(turns(800, 1_000), 1);
        assert_eq!(turns(1, 60_000), 64);
        assert_eq!(
            Turns::new(Durability::Primary, Duration::from_secs(5)).per_connection,
            1
        );
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

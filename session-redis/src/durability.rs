//! How many copies of a write must exist before the store reports it done.
//!
//! Redis replicates asynchronously: a primary acknowledges a write before any replica has
//! it, and a failover that promotes a replica which had not copied it yet loses it. With
//! [`Durability::Replicated`] every write is followed, on the same connection and in the
//! same pipeline, by `WAIT replicas timeout`, and is reported done only once that many
//! replicas have acknowledged it.

use std::time::Duration;

use session_core::{Error, Result};

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
    /// behind it on that connection (reads included) wait too: while fewer replicas than
    /// required answer, every write takes the whole `timeout` and the calls queued behind
    /// it are delayed as long. Keep `timeout` short, and give fred more connections
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

//! Options every store shares: payload limit, timeout, what to do with corrupt records.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::record::Record;

/// What a store does when a stored record no longer decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CorruptPolicy {
    /// Return [`Error::Decode`] naming the session (the default).
    ///
    /// A record that no longer decodes is almost always a deployment problem (a downgrade,
    /// a bug, a hand edit) that hits many sessions at once. Failing loudly shows it on the
    /// first request, and the record stays untouched so it can be repaired; treating it as
    /// absent would log users out silently and hide the bug.
    #[default]
    Error,
    /// Treat the record as absent: `get` returns `None` and a `tracing` warning names the
    /// session by its fingerprint. The record itself is left in place (it expires as usual),
    /// so nothing is destroyed; the user simply gets a new session.
    TreatAsMissing,
}

/// Options every store takes, with defaults fit for production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Largest session data a store accepts (default 1 MiB), measured as the data's JSON
    /// encoding ([`codec::data_json`](crate::codec::data_json)), the same on every backend
    /// whatever it stores besides; a larger write fails with [`Error::PayloadTooLarge`] and
    /// writes nothing.
    pub max_payload_bytes: usize,
    /// How long one store call may take before it fails with [`Error::Timeout`]
    /// (default 5 s).
    pub timeout: Duration,
    /// What to do with a record that no longer decodes.
    pub corrupt: CorruptPolicy,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            timeout: Duration::from_secs(5),
            corrupt: CorruptPolicy::Error,
        }
    }
}

impl StoreOptions {
    /// Fails with [`Error::PayloadTooLarge`] when `size` exceeds the maximum.
    pub fn check_size(&self, id: &SessionId, size: usize) -> Result<()> {
        if size > self.max_payload_bytes {
            return Err(Error::PayloadTooLarge {
                id: id.clone(),
                size,
                max: self.max_payload_bytes,
            });
        }
        Ok(())
    }

    /// Applies the corrupt-record policy to a decode result.
    pub fn on_corrupt(&self, decoded: Result<Record>) -> Result<Option<Record>> {
        match (decoded, self.corrupt) {
            (Ok(record), _) => Ok(Some(record)),
            (Err(Error::Decode { id, reason }), CorruptPolicy::TreatAsMissing) => {
                tracing::warn!(
                    session = %id.fingerprint(),
                    %reason,
                    "stored session is corrupt; treating it as absent"
                );
                Ok(None)
            }
            (Err(err), _) => Err(err),
        }
    }

    /// Runs one backend call under the configured timeout.
    pub async fn within_timeout<T>(
        &self,
        backend: &'static str,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                backend,
                operation,
                after: self.timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_check_names_sizes() {
        let options = StoreOptions {
            max_payload_bytes: 10,
            ..StoreOptions::default()
        };
        let id = SessionId::generate();
        assert!(options.check_size(&id, 10).is_ok());
        let err = options.check_size(&id, 11).unwrap_err();
        assert!(matches!(
            err,
            Error::PayloadTooLarge {
                size: 11,
                max: 10,
                ..
            }
        ));
    }

    #[test]
    fn corrupt_policy_decides() {
        let id = SessionId::generate();
        let strict = StoreOptions::default();
        assert!(strict.on_corrupt(Err(Error::decode(&id, "x"))).is_err());
        let lenient = StoreOptions {
            corrupt: CorruptPolicy::TreatAsMissing,
            ..strict
        };
        assert!(
            lenient
                .on_corrupt(Err(Error::decode(&id, "x")))
                .unwrap()
                .is_none()
        );
        assert!(
            lenient
                .on_corrupt(Err(Error::transient("x", "down")))
                .is_err()
        );
    }

    #[tokio::test]
    async fn timeouts_are_typed() {
        let options = StoreOptions {
            timeout: Duration::from_millis(10),
            ..Default::default()
        };
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        let err = options
            .within_timeout("test", "get", slow)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Timeout {
                operation: "get",
                ..
            }
        ));
        assert!(err.is_retryable());
    }
}

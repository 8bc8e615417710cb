//! The one error type every store returns.

use std::error::Error as StdError;
use std::time::Duration;

use crate::id::{InvalidId, SessionId};

/// A boxed error from a backend's client library, kept whole so its source chain survives.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Shorthand for results of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a session store can report.
///
/// Ask [`Error::is_retryable`] whether trying the same call again may succeed; there is no
/// need to match on a backend's own error types.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend failed: connection refused or dropped, server error, pool closed.
    #[error("the {backend} session backend failed{}: {source}", retry_hint(*retryable))]
    Backend {
        /// Which backend, for example `"redis"`.
        backend: &'static str,
        /// Whether the same call may succeed later (a dropped connection: yes; a
        /// permission error: no).
        retryable: bool,
        /// The client library's error, with its own source chain.
        #[source]
        source: BoxError,
    },

    /// The session's data could not be encoded for storage.
    #[error("session {} could not be encoded: {reason}", id.fingerprint())]
    Encode {
        /// The session being written.
        id: SessionId,
        /// What could not be represented, for example an integer the backend can't hold.
        reason: String,
    },

    /// A stored record could not be decoded: a bug, a manual edit, or a downgrade.
    #[error(
        "stored session {} is corrupt and was left as it is ({reason}); \
         fix or delete the record, or choose CorruptPolicy::TreatAsMissing",
        id.fingerprint()
    )]
    Decode {
        /// The session whose record is corrupt.
        id: SessionId,
        /// What is wrong with it.
        reason: String,
    },

    /// A versioned write lost: the session changed (or ended) since it was read.
    #[error(
        "session {} changed or ended since it was read; read it again and retry \
         (session_core::modify does this)",
        id.fingerprint()
    )]
    Conflict {
        /// The session that was written.
        id: SessionId,
    },

    /// A string that is not a valid session id; nothing reached the backend.
    #[error(transparent)]
    InvalidId(#[from] InvalidId),

    /// The session's data is larger than the store allows; nothing was written.
    #[error(
        "session {}'s data is {size} bytes as JSON, over the store's maximum of {max}; nothing \
         was written: store less in the session or raise StoreOptions::max_payload_bytes",
        id.fingerprint()
    )]
    PayloadTooLarge {
        /// The session being written.
        id: SessionId,
        /// Its data's size in bytes, as JSON.
        size: usize,
        /// The configured maximum.
        max: usize,
    },

    /// The backend did not answer within the configured timeout.
    #[error(
        "the {backend} session backend did not answer `{operation}` within {after:?}; \
         the server may be down or overloaded (retryable)"
    )]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// The store operation that timed out.
        operation: &'static str,
        /// The configured timeout.
        after: Duration,
    },

    /// The store was configured wrongly (a bad URL, table name, or option).
    #[error("invalid session store configuration: {0}")]
    Config(String),
}

fn retry_hint(retryable: bool) -> &'static str {
    if retryable { " (retryable)" } else { "" }
}

impl Error {
    /// A backend failure that may go away (a dropped connection, a failover).
    pub fn transient(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            retryable: true,
            source: source.into(),
        }
    }

    /// A backend failure that retrying won't fix (a permission error, a bad query).
    pub fn permanent(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            retryable: false,
            source: source.into(),
        }
    }

    /// A corrupt stored record.
    pub fn decode(id: &SessionId, reason: impl std::fmt::Display) -> Self {
        Self::Decode {
            id: id.clone(),
            reason: reason.to_string(),
        }
    }

    /// Whether trying the same call again may succeed: true for timeouts and transient
    /// backend failures, false for conflicts (read again instead), bad input and corrupt
    /// records.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. }
                | Self::Backend {
                    retryable: true,
                    ..
                }
        )
    }

    /// Whether this is a lost compare-and-swap (see [`SessionStore::update`](crate::SessionStore::update)).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// A short, stable name for the error's kind, for metrics labels and the OpenTelemetry
    /// `error.type` attribute: `backend`, `encode`, `decode`, `conflict`, `invalid_id`,
    /// `payload_too_large`, `timeout` or `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Backend { .. } => "backend",
            Self::Encode { .. } => "encode",
            Self::Decode { .. } => "decode",
            Self::Conflict { .. } => "conflict",
            Self::InvalidId(_) => "invalid_id",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Timeout { .. } => "timeout",
            Self::Config(_) => "config",
        }
    }

    /// The session the error is about, when there is one.
    pub fn session_id(&self) -> Option<&SessionId> {
        match self {
            Self::Encode { id, .. }
            | Self::Decode { id, .. }
            | Self::Conflict { id }
            | Self::PayloadTooLarge { id, .. } => Some(id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_is_decided_by_kind() {
        let id = SessionId::generate();
        assert!(Error::transient("redis", "connection reset").is_retryable());
        assert!(!Error::permanent("redis", "NOPERM").is_retryable());
        let timeout = Error::Timeout {
            backend: "redis",
            operation: "get",
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_retryable());
        assert!(!Error::decode(&id, "not json").is_retryable());
        assert!(!Error::Conflict { id: id.clone() }.is_retryable());
        assert!(Error::Conflict { id: id.clone() }.is_conflict());
        assert_eq!(Error::Conflict { id }.kind(), "conflict");
        assert_eq!(Error::Config("x".into()).kind(), "config");
    }

    #[test]
    fn messages_name_the_session_by_fingerprint_only() {
        let id = SessionId::generate();
        let text = Error::decode(&id, "expected an object").to_string();
        assert!(text.contains(&id.fingerprint().to_string()));
        assert!(!text.contains(id.expose()));
        assert_eq!(Error::decode(&id, "x").session_id(), Some(&id));
    }

    #[test]
    fn backend_errors_keep_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = Error::transient("postgres", io);
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("reset by peer"));
    }
}

//! Driver errors as session-core errors: retryable or not, with advice where a
//! configuration caused them.

use mongodb::error::{ErrorKind, WriteFailure};
use session_core::{Error, SessionId};

use crate::config::{EXPIRES_INDEX, TTL_INDEX};

/// The backend name in errors.
pub(crate) const BACKEND: &str = "mongo";

/// Server error codes after which the same call may succeed: failovers, shutdowns,
/// interruptions, network-level errors and exceeded time limits.
const RETRYABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Error labels the driver and server use for errors worth retrying.
const RETRYABLE_LABELS: &[&str] = &[
    "RetryableWriteError",
    "TransientTransactionError",
    "RetryableError",
    "SystemOverloadedError",
];

/// Whether a driver error may go away by itself.
pub(crate) fn is_transient(err: &mongodb::error::Error) -> bool {
    if RETRYABLE_LABELS
        .iter()
        .any(|label| err.contains_label(label))
    {
        return true;
    }
    match err.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::DnsResolve { .. } => true,
        ErrorKind::Command(command) => RETRYABLE_CODES.contains(&command.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => {
            RETRYABLE_CODES.contains(&concern.code)
        }
        _ => false,
    }
}

/// A driver error as a store error, retryable or not, with the driver error as its source.
pub(crate) fn backend_error(err: mongodb::error::Error) -> Error {
    if is_transient(&err) {
        Error::transient(BACKEND, err)
    } else {
        Error::permanent(BACKEND, err)
    }
}

/// A write's error as a store error: a value the server refuses to store (`BadValue`, code 2:
/// FerretDB 1.x refuses arrays inside arrays) is an [`Error::Encode`] naming the session,
/// since retrying can't help and the data is at fault; the rest as [`backend_error`].
pub(crate) fn write_error(id: &SessionId, err: mongodb::error::Error) -> Error {
    if let ErrorKind::Write(WriteFailure::WriteError(write)) = err.kind.as_ref()
        && write.code == 2
    {
        return Error::Encode {
            id: id.clone(),
            reason: format!("the server refused the data: {}", write.message),
        };
    }
    backend_error(err)
}

pub(crate) fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    matches!(
        err.kind.as_ref(),
        ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == 11000
    )
}

/// Errors from creating indexes, with advice for the two a configuration causes.
pub(crate) fn index_error(err: mongodb::error::Error, native: bool) -> Error {
    let code = match err.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        _ => None,
    };
    match code {
        // NotImplemented, InvalidIndexSpecificationOption, CannotCreateIndex
        Some(238 | 197 | 67) if native => Error::Config(format!(
            "the server refused the TTL index ExpiryMode::Native needs ({err}); on servers \
             without TTL indexes (FerretDB 1.x) use ExpiryMode::Interval(..)"
        )),
        // IndexOptionsConflict, IndexKeySpecsConflict, IndexAlreadyExists
        Some(85 | 86 | 68) => Error::Config(format!(
            "an index on `expires_at` of another expiry mode exists ({err}); after changing \
             the mode, drop the index `{}` first",
            if native { EXPIRES_INDEX } else { TTL_INDEX }
        )),
        _ => backend_error(err),
    }
}

pub(crate) fn is_namespace_missing(err: &mongodb::error::Error) -> bool {
    matches!(err.kind.as_ref(), ErrorKind::Command(command) if command.code == 26)
}

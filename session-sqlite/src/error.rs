//! sqlx errors as session-core errors: retryable or not, source kept.

use session_core::{Error, SessionId};

/// The backend name errors carry.
pub(crate) const BACKEND: &str = "sqlite";

/// SQLite's primary result codes this crate tells apart (the low byte of an extended code).
mod code {
    pub const BUSY: i32 = 5;
    pub const LOCKED: i32 = 6;
    pub const NOMEM: i32 = 7;
    pub const IOERR: i32 = 10;
    pub const FULL: i32 = 13;
    pub const PROTOCOL: i32 = 15;
    pub const TOOBIG: i32 = 18;
}

/// Classifies an sqlx error: a database another connection holds locked (`SQLITE_BUSY`,
/// `SQLITE_LOCKED`, once the busy timeout ran out), a pool timeout, a closed pool, I/O
/// trouble, a full disk or a crashed connection worker may pass; the rest won't.
pub(crate) fn backend(err: sqlx::Error) -> Error {
    if is_transient(&err) {
        Error::transient(BACKEND, err)
    } else {
        Error::permanent(BACKEND, err)
    }
}

/// Like [`backend`], but a value SQLite refuses to store (`SQLITE_TOOBIG`: data longer
/// than the library's maximum string length, reachable with a payload limit above it) is an
/// [`Error::Encode`] naming the session, since retrying can't help and the data is at fault.
/// (Every other value is bound with the column's own type, so `STRICT` never refuses one.)
pub(crate) fn write(id: &SessionId, err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err
        && primary_code(&err) == Some(code::TOOBIG)
    {
        return Error::Encode {
            id: id.clone(),
            reason: db.message().to_owned(),
        };
    }
    backend(err)
}

/// The primary result code of a database error (sqlx reports the extended one).
fn primary_code(err: &sqlx::Error) -> Option<i32> {
    match err {
        sqlx::Error::Database(db) => db.code()?.parse::<i32>().ok().map(|c| c & 0xff),
        _ => None,
    }
}

fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => primary_code(err).is_some_and(transient_code),
        _ => false,
    }
}

/// Result codes worth retrying: the database locked by another connection (5, 6), out of
/// memory (7), an I/O error (10), a full disk (13), a WAL locking race (15).
fn transient_code(code: i32) -> bool {
    matches!(
        code,
        code::BUSY | code::LOCKED | code::NOMEM | code::IOERR | code::FULL | code::PROTOCOL
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(backend(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(backend(sqlx::Error::PoolClosed).is_retryable());
        assert!(backend(sqlx::Error::WorkerCrashed).is_retryable());
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        assert!(backend(sqlx::Error::Io(io)).is_retryable());
        assert!(!backend(sqlx::Error::RowNotFound).is_retryable());
        // Extended codes: SQLITE_BUSY_SNAPSHOT (517), SQLITE_LOCKED_SHAREDCACHE (262),
        // SQLITE_IOERR_FSYNC (1034).
        for code in [5, 6, 517, 262, 7, 10, 1034, 13, 15] {
            assert!(transient_code(code & 0xff), "{code}");
        }
        // SQLITE_ERROR, SQLITE_READONLY, SQLITE_CORRUPT, SQLITE_CANTOPEN, SQLITE_CONSTRAINT,
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_TOOBIG.
        for code in [1, 8, 11, 14, 19, 2067, 18] {
            assert!(!transient_code(code & 0xff), "{code}");
        }
    }
}

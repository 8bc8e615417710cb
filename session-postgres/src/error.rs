//! sqlx errors as session-core errors: retryable or not, source kept.

use session_core::{Error, SessionId};

/// The backend name errors carry.
pub(crate) const BACKEND: &str = "postgres";

/// Classifies an sqlx error: connection trouble, pool timeouts, a closed pool, server
/// shutdowns, serialization failures and deadlocks may pass; the rest won't.
pub(crate) fn backend(err: sqlx::Error) -> Error {
    if is_transient(&err) {
        Error::transient(BACKEND, err)
    } else {
        Error::permanent(BACKEND, err)
    }
}

/// Like [`backend`], but a value PostgreSQL refuses to store (SQLSTATE class 22, data
/// exception: for example a `\u0000` in a string, which `jsonb` can't hold) is an
/// [`Error::Encode`] naming the session, since retrying can't help and the data is at fault.
pub(crate) fn write(id: &SessionId, err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err
        && db.code().is_some_and(|code| code.starts_with("22"))
    {
        return Error::Encode {
            id: id.clone(),
            reason: db.message().to_owned(),
        };
    }
    backend(err)
}

fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs worth retrying: connection exceptions (08, but not a protocol violation), serialization failure and deadlock
/// (40001, 40P01), insufficient resources (53), operator intervention such as a server
/// shutting down or not yet accepting connections (57P01..57P05), a cancelled statement
/// (57014), lock not available (55P03).
fn transient_sqlstate(code: &str) -> bool {
    (code.starts_with("08") && code != "08P01") // 08P01: protocol violation, a bug
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "40001" | "40P01" | "57014" | "55P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(backend(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(backend(sqlx::Error::PoolClosed).is_retryable());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(backend(sqlx::Error::Io(io)).is_retryable());
        assert!(!backend(sqlx::Error::RowNotFound).is_retryable());
        for code in ["08006", "40001", "40P01", "57P01", "53300"] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["42P01", "23505", "22P05", "42501", "08P01"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }
}

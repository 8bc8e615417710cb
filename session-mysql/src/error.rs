//! sqlx errors as session-core errors: retryable or not, source kept.

use session_core::{Error, SessionId};
use sqlx::mysql::MySqlDatabaseError;

/// The backend name errors carry.
pub(crate) const BACKEND: &str = "mysql";

/// MySQL's error for a duplicate key (`ER_DUP_ENTRY`).
pub(crate) const DUPLICATE_KEY: u16 = 1062;

/// Classifies an sqlx error: connection trouble, pool timeouts, a closed pool, server
/// shutdowns, deadlocks and lock wait timeouts may pass; the rest won't.
pub(crate) fn backend(err: sqlx::Error) -> Error {
    if is_transient(&err) {
        Error::transient(BACKEND, err)
    } else {
        Error::permanent(BACKEND, err)
    }
}

/// Like [`backend`], but a value the server refuses to store is an [`Error::Encode`]
/// naming the session, since retrying can't help and the data is at fault: SQLSTATE class
/// 22 (data exception: too long, out of range), an incorrect string value (1366, 1300),
/// or a statement longer than `max_allowed_packet` (1153, 1301).
pub(crate) fn write(id: &SessionId, err: sqlx::Error) -> Error {
    if let Some(db) = mysql_error(&err)
        && refuses_data(db.code(), db.number())
    {
        return Error::Encode {
            id: id.clone(),
            reason: db.message().to_owned(),
        };
    }
    backend(err)
}

/// InnoDB's error for a deadlock's victim (`ER_LOCK_DEADLOCK`): the statement was rolled
/// back whole.
const DEADLOCK: u16 = 1213;

/// Whether `err` (from [`backend`] or [`write`]) is a deadlock's victim.
pub(crate) fn is_deadlock(err: &Error) -> bool {
    match err {
        Error::Backend { source, .. } => source
            .downcast_ref::<sqlx::Error>()
            .and_then(number)
            .is_some_and(|number| number == DEADLOCK),
        _ => false,
    }
}

/// The server's error number, when the error is one the server sent.
pub(crate) fn number(err: &sqlx::Error) -> Option<u16> {
    mysql_error(err).map(MySqlDatabaseError::number)
}

fn mysql_error(err: &sqlx::Error) -> Option<&MySqlDatabaseError> {
    match err {
        sqlx::Error::Database(db) => db.try_downcast_ref::<MySqlDatabaseError>(),
        _ => None,
    }
}

fn refuses_data(sqlstate: Option<&str>, number: u16) -> bool {
    sqlstate.is_some_and(|code| code.starts_with("22"))
        || matches!(number, 1153 | 1300 | 1301 | 1366)
}

fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => {
            mysql_error(err).is_some_and(|db| transient_error(db.code(), db.number()))
        }
        _ => false,
    }
}

/// Server errors worth retrying: a connection exception (SQLSTATE class 08), a deadlock
/// victim or serialization failure (1213, SQLSTATE 40001: InnoDB rolled the statement back
/// whole), a lock wait timeout (1205), too many connections (1040, 1203), a server
/// shutting down or a connection killed (1053, 1927, 1317 query interrupted), MySQL's and
/// MariaDB's statement time limits (3024, 1969), a read-only server during a failover
/// (1290, 1836), and lost network packets (1158..=1161).
fn transient_error(sqlstate: Option<&str>, number: u16) -> bool {
    sqlstate.is_some_and(|code| code.starts_with("08") || code == "40001")
        || matches!(
            number,
            1040 | 1053 | 1203 | 1205 | DEADLOCK | 1290 | 1317 | 1836 | 1927 | 1969 | 3024
        )
        || (1158..=1161).contains(&number)
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
        for (state, number) in [
            ("40001", 1213),
            ("HY000", 1205),
            ("08004", 1040),
            ("08S01", 1053),
            ("70100", 1927),
            ("HY000", 1290),
        ] {
            assert!(transient_error(Some(state), number), "{number}");
        }
        for (state, number) in [
            ("42S02", 1146),
            ("23000", 1062),
            ("22001", 1406),
            ("42000", 1064),
            ("28000", 1045),
        ] {
            assert!(!transient_error(Some(state), number), "{number}");
        }
    }

    #[test]
    fn only_deadlocks_are_deadlocks() {
        assert!(!is_deadlock(&backend(sqlx::Error::PoolTimedOut)));
        assert!(!is_deadlock(&Error::transient(BACKEND, "1213")));
    }

    #[test]
    fn refused_data() {
        assert!(refuses_data(Some("22001"), 1406));
        assert!(refuses_data(Some("22003"), 1264));
        assert!(refuses_data(Some("HY000"), 1366));
        assert!(refuses_data(Some("08S01"), 1153));
        assert!(!refuses_data(Some("23000"), 1062));
        assert!(!refuses_data(Some("40001"), 1213));
    }
}

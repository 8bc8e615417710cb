//! The metrics every instrumented store records, by name, and how one call is counted.
//!
//! Names follow Prometheus' conventions (base units in the name, `_total` on counters);
//! the `db_system` and `operation` labels carry OpenTelemetry's `db.system.name` and
//! `db.operation.name`. The README's metrics table lists the same.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Histogram, Unit, counter, describe_counter, describe_histogram, histogram};
use session_core::Error;

/// Histogram, seconds: one store call, labelled `db_system`, `operation`, `outcome`.
pub const OPERATION_DURATION: &str = "session_store_operation_duration_seconds";
/// Counter: failed calls (conflicts not included), labelled `db_system`, `operation`,
/// `error_type` ([`Error::kind`]) and `retryable`.
pub const ERRORS: &str = "session_store_errors_total";
/// Counter: calls that lost to another session or writer (`update`'s compare-and-swap,
/// `insert` of a taken id, `rename` onto a live session), labelled `db_system`, `operation`.
pub const CONFLICTS: &str = "session_store_conflicts_total";
/// Histogram, bytes: session data as JSON, on writes that stored (`insert`, `set`,
/// `update`, `create`), labelled `db_system`, `operation`; recorded only when the store was
/// built with [`payload_sizes`](crate::Builder::payload_sizes) (sampled).
pub const PAYLOAD_SIZE: &str = "session_store_payload_bytes";
/// Counter: sessions created (`insert` that stored, `create`), labelled `db_system`.
pub const CREATED: &str = "session_store_sessions_created_total";
/// Counter: successful `destroy` calls, labelled `db_system`.
pub const DESTROYED: &str = "session_store_sessions_destroyed_total";
/// Counter: sessions moved to a fresh id by `cycle_id`, labelled `db_system`.
pub const ROTATED: &str = "session_store_sessions_rotated_total";
/// Counter: expired records removed by `delete_expired`, labelled `db_system`.
pub const PURGED: &str = "session_store_sessions_purged_total";
/// Counter: sessions the backend reported expired (or evicted), labelled `db_system`; only
/// while [`InstrumentedStore::report_expiries`](crate::InstrumentedStore::report_expiries)
/// runs. Counts reports: a backend that reports at least once may count one twice.
pub const EXPIRED: &str = "session_store_sessions_expired_total";
/// Counter: live sessions ended by owner, labelled `db_system` and `reason`: `owner`
/// (`destroy_by_owner`, "log out everywhere") or `limit` (`limit_owner`).
pub const REVOKED: &str = "session_store_sessions_revoked_total";

/// A store method, the `operation` label (its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Get,
    Insert,
    Set,
    Update,
    Touch,
    Destroy,
    Rename,
    DeleteExpired,
    ListByOwner,
    DestroyByOwner,
    Count,
    Create,
    CycleId,
    LimitOwner,
}

const OPERATIONS: usize = 14;
const OUTCOMES: usize = 5;

impl Operation {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Insert => "insert",
            Self::Set => "set",
            Self::Update => "update",
            Self::Touch => "touch",
            Self::Destroy => "destroy",
            Self::Rename => "rename",
            Self::DeleteExpired => "delete_expired",
            Self::ListByOwner => "list_by_owner",
            Self::DestroyByOwner => "destroy_by_owner",
            Self::Count => "count",
            Self::Create => "create",
            Self::CycleId => "cycle_id",
            Self::LimitOwner => "limit_owner",
        }
    }
}

/// How a call ended, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked.
    Ok,
    /// There was no live session (`get` found none, `touch`, `rename` or `cycle_id` had
    /// nothing to act on).
    Miss,
    /// It lost to another writer or session (see [`CONFLICTS`]).
    Conflict,
    /// It failed (see [`ERRORS`]).
    Error,
    /// Its caller dropped it before it returned (a request timeout, a client gone): it may
    /// or may not have taken effect.
    Cancelled,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Miss => "miss",
            Self::Conflict => "conflict",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The outcome of a failed call.
    pub(crate) fn of_error(err: &Error) -> Self {
        if err.is_conflict() {
            Self::Conflict
        } else {
            Self::Error
        }
    }
}

/// Gives every metric its unit and help text in the installed recorder. The store builder
/// calls it; call it again if you install a recorder after building the store.
pub fn describe() {
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Session store calls by operation and outcome."
    );
    describe_counter!(ERRORS, "Failed session store calls by error kind.");
    describe_counter!(
        CONFLICTS,
        "Session store calls that lost a compare-and-swap or found the id taken."
    );
    describe_histogram!(PAYLOAD_SIZE, Unit::Bytes, "Session data size as JSON.");
    describe_counter!(CREATED, "Sessions created.");
    describe_counter!(DESTROYED, "Sessions destroyed one by one (logout).");
    describe_counter!(ROTATED, "Sessions moved to a fresh id.");
    describe_counter!(PURGED, "Expired sessions removed by a purge.");
    describe_counter!(REVOKED, "Live sessions ended by owner.");
    describe_counter!(EXPIRED, "Sessions the backend reported expired.");
    describe_counter!(
        session_core::MODIFY_RETRIES,
        "Lost compare-and-swaps that session_core::modify read again after."
    );
    describe_counter!(
        session_core::MODIFY_GIVE_UPS,
        "session_core::modify calls that gave up after their attempts."
    );
}

/// One store's metric handles, each registered with the recorder on first use: a call then
/// records into its handle without building a key or looking it up again.
pub(crate) struct Handles {
    system: &'static str,
    durations: [[OnceLock<Histogram>; OUTCOMES]; OPERATIONS],
    payloads: [OnceLock<Histogram>; OPERATIONS],
}

impl Handles {
    pub(crate) fn new(system: &'static str) -> Self {
        Self {
            system,
            durations: Default::default(),
            payloads: Default::default(),
        }
    }

    /// Records one call's duration, outcome and error.
    pub(crate) fn call(
        &self,
        operation: Operation,
        outcome: Outcome,
        took: Duration,
        error: Option<&Error>,
    ) {
        let (system, name) = (self.system, operation.name());
        self.durations[operation as usize][outcome.index()]
            .get_or_init(|| {
                histogram!(OPERATION_DURATION, "db_system" => system, "operation" => name, "outcome" => outcome.as_str())
            })
            .record(took.as_secs_f64());
        match outcome {
            Outcome::Conflict => {
                counter!(CONFLICTS, "db_system" => system, "operation" => name).increment(1);
            }
            Outcome::Error => {
                if let Some(err) = error {
                    let retryable = if err.is_retryable() { "true" } else { "false" };
                    counter!(ERRORS, "db_system" => system, "operation" => name, "error_type" => err.kind(), "retryable" => retryable)
                        .increment(1);
                }
            }
            Outcome::Ok | Outcome::Miss | Outcome::Cancelled => {}
        }
    }

    /// Records the size of `data` as JSON, counted as it is written out (nothing allocated).
    pub(crate) fn payload(&self, operation: Operation, data: &session_core::Data) {
        let mut size = Count(0);
        if serde_json::to_writer(&mut size, data).is_ok() {
            let (system, name) = (self.system, operation.name());
            self.payloads[operation as usize]
                .get_or_init(
                    || histogram!(PAYLOAD_SIZE, "db_system" => system, "operation" => name),
                )
                .record(size.0 as f64);
        }
    }
}

/// Adds `n` to the lifecycle counter `name`.
pub(crate) fn sessions(name: &'static str, system: &'static str, n: u64) {
    if n > 0 {
        counter!(name, "db_system" => system).increment(n);
    }
}

/// Adds `n` to [`REVOKED`] with its reason.
pub(crate) fn revoked(system: &'static str, reason: &'static str, n: u64) {
    if n > 0 {
        counter!(REVOKED, "db_system" => system, "reason" => reason).increment(n);
    }
}

/// A writer that only counts bytes.
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

//! The public conformance suite: proves a store means what the trait says.
//!
//! A store author implements [`Harness`] (how to build a fresh, empty store) and calls
//! [`conformance_suite!`](crate::conformance_suite) once per module in a test file; every
//! case becomes its own `#[test]`:
//!
//! ```ignore
//! // tests/conformance.rs of a crate with session-core's `conformance` feature in dev-deps
//! struct MyHarness;
//!
//! #[session_core::async_trait]
//! impl session_core::conformance::Harness for MyHarness {
//!     type Store = MyStore;
//!     async fn store(&self, options: session_core::StoreOptions) -> MyStore {
//!         MyStore::new(options) // fresh and empty: cases count sessions
//!     }
//! }
//!
//! session_core::conformance_suite!(MyHarness);
//! ```
//!
//! Each invocation defines one test function per case in the module it is written in, so a
//! second invocation in the same file (another configuration) goes in a module of its own:
//! `mod cluster { use super::*; session_core::conformance_suite!(ClusterHarness); }`.
//!
//! The [store author's guide](crate::guide) lists every case with the promise it checks
//! and the realistic bugs (mutants) it catches; session-core's own tests run the suite
//! against a reference store and every mutant of it.
//!
//! # Cases that could not run
//!
//! A case that needs something the harness can't give is *skipped* (no server:
//! [`Harness::available`]; a hook not implemented: [`Harness::write_corrupt`],
//! [`Harness::slow_store`]): it prints `SKIPPED` straight to the terminal (past the test
//! harness's output capture, so it shows even when the test passes), appends a line to the
//! file named by `SESSION_STORES_SKIP_LOG` when set (`scripts/test` prints a summary of it),
//! and fails the test when the `CI` environment variable is set. A case that does not apply
//! to a store by design (it keeps no bytes that could be corrupt, a weaker guarantee its
//! docs state) passes with a `NOTE` printed the same way; that is never a failure.

pub mod cases;
mod migration;
mod scan;

pub use migration::{Phase, PhasedMigration};
pub use scan::check_scan;

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;

use async_trait::async_trait;

use crate::id::SessionId;
use crate::options::StoreOptions;
use crate::store::SessionStore;

/// Why a case could not run: no server, or a hook the harness doesn't offer.
#[derive(Debug, Clone)]
pub struct Skip(pub String);

/// Why a case does not apply to a store by design (a note, never a failure).
#[derive(Debug, Clone)]
pub struct NotApplicable(pub String);

/// How a case ends when it doesn't pass or fail: skipped, or not applicable.
#[derive(Debug, Clone)]
pub enum Unrun {
    /// It could not run here (a failure under `CI`).
    Skip(Skip),
    /// It does not apply to this store (a note).
    NotApplicable(NotApplicable),
}

impl From<Skip> for Unrun {
    fn from(skip: Skip) -> Self {
        Self::Skip(skip)
    }
}

impl From<NotApplicable> for Unrun {
    fn from(reason: NotApplicable) -> Self {
        Self::NotApplicable(reason)
    }
}

/// How a store builds on its server, for the suite.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The store under test.
    type Store: SessionStore + 'static;

    /// Whether the store's server can be reached; `Err` skips every case with its message
    /// (which should say what to set to run them).
    async fn available(&self) -> Result<(), Skip> {
        Ok(())
    }

    /// Whether this harness's configuration applies to the server at hand: `Err` (saying
    /// why) makes every case pass with a note instead of running, for example a mode the
    /// server doesn't offer (native TTL expiry on a server without TTL indexes). Unlike an
    /// unavailable server this is not a failure under CI, so use it only for that.
    async fn applies(&self) -> Result<(), String> {
        Ok(())
    }

    /// A fresh store that sees no other test's sessions, configured with `options`.
    async fn store(&self, options: StoreOptions) -> Self::Store;

    /// Writes, under `id`, a stored record that can't be decoded, live for at least an hour
    /// (the suite then expects [`Error::Decode`](crate::Error::Decode) and that every method
    /// leaves it alone). The default says the hook is missing (a skip); a store that keeps
    /// no bytes that could be corrupt says so with [`Self::corrupt_records_impossible`].
    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        let _ = (store, id);
        Err(Skip(
            "this harness cannot write corrupt records (Harness::write_corrupt)".into(),
        ))
    }

    /// `Some(why)` when the store cannot hold a record that fails to decode at all (it keeps
    /// live objects, not encoded bytes): the corrupt-record cases then pass with that note.
    fn corrupt_records_impossible(&self) -> Option<&'static str> {
        None
    }

    /// A fresh store configured with `options` whose server (or whose way to it) answers
    /// every call later than `options.timeout`, for the case that checks calls end within
    /// their timeout. The default says the hook is missing (a skip).
    async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
        let _ = options;
        Err(Unrun::Skip(Skip(
            "this harness cannot make its server slow (Harness::slow_store)".into(),
        )))
    }

    /// `Err(why)` when the deployment can't see or change several sessions as of one instant
    /// (a Redis Cluster: sessions on different nodes), as its docs state: the cases that race
    /// `destroy_by_owner` against moves then pass with that note.
    fn spans_sessions_atomically(&self) -> Result<(), &'static str> {
        Ok(())
    }

    /// The id [`SessionStore::list_by_owner`] shows for the session the caller knows as
    /// `id`. A store that keys records by something else, such as
    /// [`HashedIds`](crate::HashedIds) (which lists stored, hashed ids), says so here; the
    /// default is `id` itself.
    fn listed_id(&self, id: &SessionId) -> SessionId {
        id.clone()
    }
}

/// A case body, borrowing the harness.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Unrun>> + Send + 'a>>;

/// A case: its name and body.
pub type Case<H> = (&'static str, for<'a> fn(&'a H) -> CaseFuture<'a>);

/// Runs one case on a fresh multi-threaded runtime; used by
/// [`conformance_suite!`](crate::conformance_suite).
pub fn run<H: Harness>(name: &str, harness: H, case: impl for<'a> FnOnce(&'a H) -> CaseFuture<'a>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => panic!("cannot start a tokio runtime for {name}: {err}"),
    };
    let outcome = runtime.block_on(async {
        harness.available().await?;
        if let Err(reason) = harness.applies().await {
            return Err(Unrun::NotApplicable(NotApplicable(reason)));
        }
        case(&harness).await
    });
    match outcome {
        Ok(()) => {}
        Err(Unrun::Skip(Skip(reason))) => skip(&format!("conformance case {name}"), &reason),
        Err(Unrun::NotApplicable(NotApplicable(reason))) => {
            note(&format!(
                "conformance case {name} does not apply here: {reason}"
            ));
        }
    }
}

/// The cases that spend their time waiting (past an expiry or a deadline) rather than
/// working: [`run_suite`] runs them side by side, each on its own runtime.
const WAITING_CASES: [&str; 10] = [
    "count_follows_creates_destroys_and_expiry",
    "expired_records_are_never_returned",
    "touch_extends_and_changes_nothing_else",
    "touch_may_shorten_and_a_past_time_ends_the_session",
    "touch_never_passes_the_deadline",
    "every_write_keeps_the_deadline",
    "delete_expired_purges_only_expired",
    "expired_ids_are_free",
    "owner_listing_and_revocation",
    "corrupt_records_are_left_alone",
];

/// Cases that wait too (on a server that answers late) but set their store up under the
/// short timeout they test, which a burst of the waiting cases' set-ups overran once on
/// PostgreSQL: [`run_suite`] runs them once the waiting cases are done.
const LATE_CASES: [&str; 1] = ["calls_end_within_the_timeout"];

/// Runs every case of the suite inside one test, on harnesses `make` builds: each case as
/// [`conformance_suite!`](crate::conformance_suite) runs it ([`run`]: a fresh harness and
/// runtime, skips and notes reported the same way), but the cases that mostly wait (for an
/// expiry, a deadline, a slow server) overlap on threads of their own while the others run
/// one after another, so a suite takes seconds instead of the sum of its waits. Panics
/// naming every failed case.
///
/// ```no_run
/// # use session_core::conformance::{run_suite, Harness};
/// # fn demo<H: Harness>(make: impl Fn() -> H + Sync) {
/// run_suite(make);
/// # }
/// ```
pub fn run_suite<H: Harness>(make: impl Fn() -> H + Sync) {
    let (late, cases): (Vec<_>, Vec<_>) = cases::all::<H>()
        .into_iter()
        .partition(|(name, _)| LATE_CASES.contains(name));
    let (waiting, working): (Vec<_>, Vec<_>) = cases
        .into_iter()
        .partition(|(name, _)| WAITING_CASES.contains(name));
    let run_case = |name: &str, case: for<'a> fn(&'a H) -> CaseFuture<'a>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(name, make(), case)))
    };
    let run_case = &run_case;
    let mut failed: Vec<String> = Vec::new();
    std::thread::scope(|scope| {
        let waiting_then_late = scope.spawn(move || {
            let threads: Vec<_> = waiting
                .into_iter()
                .map(|(name, case)| (name, scope.spawn(move || run_case(name, case))))
                .collect();
            let mut outcomes: Vec<_> = threads
                .into_iter()
                .map(|(name, thread)| (name, thread.join().and_then(|outcome| outcome)))
                .collect();
            outcomes.extend(
                late.into_iter()
                    .map(|(name, case)| (name, run_case(name, case))),
            );
            outcomes
        });
        let mut outcomes: Vec<_> = working
            .into_iter()
            .map(|(name, case)| (name, run_case(name, case)))
            .collect();
        match waiting_then_late.join() {
            Ok(more) => outcomes.extend(more),
            Err(panic) => outcomes.push(("(the waiting cases' runner)", Err(panic))),
        }
        for (name, outcome) in outcomes {
            if let Err(panic) = outcome {
                failed.push(format!("{name}: {}", panic_message(panic.as_ref())));
            }
        }
    });
    assert!(
        failed.is_empty(),
        "{} conformance case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(a panic without a message)")
}

/// Reports that `what` could not run: a loud message (past the test harness's capture), a
/// line in `$SESSION_STORES_SKIP_LOG`, and a panic when the `CI` environment variable is set,
/// where a skip counts as a failure. The one place that rule lives, for the suite and for any
/// other test that needs a server.
pub fn skip(what: &str, reason: &str) {
    shout(&format!("SKIPPED {what}: {reason}"));
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{what} was skipped, which fails under CI: {reason}");
    }
}

/// Prints a note that must be seen even when the test passes (past the capture), and logs
/// it like a skip.
pub fn note(text: &str) {
    shout(&format!("NOTE {text}"));
}

fn shout(line: &str) {
    // `eprintln!` would be captured (and hidden) for a passing test; the raw handle is not.
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(log) = std::env::var_os("SESSION_STORES_SKIP_LOG") {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log);
        if let Ok(mut file) = file {
            // One write per line: cases running side by side append to the same log, and
            // `writeln!` may split a line into several writes that interleave.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Calls `$callback!($($args)*; case, case, ...)` with every case of the suite, in order:
/// the one list of cases, for [`conformance_suite!`](crate::conformance_suite) and
/// [`cases::all`].
#[doc(hidden)]
#[macro_export]
macro_rules! __with_conformance_cases {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback! { $($args)*;
            round_trip_keeps_every_kind_of_data,
            insert_stores_every_field,
            create_never_overwrites,
            concurrent_inserts_of_one_id_have_one_winner,
            count_follows_creates_destroys_and_expiry,
            oversized_payloads_write_nothing,
            payload_limit_measures_the_data_json,
            destroy_is_idempotent,
            expired_records_are_never_returned,
            touch_extends_and_changes_nothing_else,
            touch_may_shorten_and_a_past_time_ends_the_session,
            touch_never_passes_the_deadline,
            every_write_keeps_the_deadline,
            delete_expired_purges_only_expired,
            expired_ids_are_free,
            update_is_compare_and_swap,
            update_stores_every_field,
            set_is_last_writer_wins,
            set_never_reuses_a_version,
            set_stores_every_field,
            versions_stop_at_the_maximum,
            cycle_id_keeps_data_and_kills_the_old_id,
            rename_never_overwrites,
            rename_keeps_every_field,
            rename_onto_itself,
            stale_update_after_destroy_resurrects_nothing,
            stale_writes_after_cycle_id_resurrect_nothing,
            concurrent_cycle_ids_move_once,
            owner_listing_and_revocation,
            owners_match_exactly,
            destroy_by_owner_ends_busy_sessions,
            destroy_by_owner_catches_sessions_being_moved,
            owner_limit_ends_the_oldest_sessions,
            owner_limit_racing_cycle_id_keeps_the_newest,
            hashed_ids_work_through_the_trait,
            concurrent_increments_are_never_lost,
            destroy_racing_writers_stays_destroyed,
            corrupt_records_are_decode_errors,
            corrupt_records_can_be_treated_as_missing,
            corrupt_records_are_left_alone,
            large_integers_round_trip_or_fail_loudly,
            nested_arrays_round_trip_or_fail_loudly,
            deep_data_reads_back_or_fails_to_encode,
            calls_end_within_the_timeout,
        }
    };
}

/// Expands to one `#[test]` per conformance case for the given [`Harness`] expression, in
/// the module it is written in (one invocation per module).
///
/// ```ignore
/// session_core::conformance_suite!(MyHarness::new());
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::__with_conformance_cases!(__conformance_cases!($harness));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run(stringify!($case), $harness, |harness| {
                    ::std::boxed::Box::pin($crate::conformance::cases::$case(harness))
                });
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_list {
    ($harness:ty; $($case:ident),* $(,)?) => {
        vec![$(
            (
                stringify!($case),
                (|harness| ::std::boxed::Box::pin($crate::conformance::cases::$case(harness)))
                    as for<'a> fn(&'a $harness) -> $crate::conformance::CaseFuture<'a>,
            ),
        )*]
    };
}

//! The public conformance suite: proves a store means what the trait says.
//!
//! A store author implements [`Harness`] (how to build a fresh, empty store) and calls
//! [`conformance_suite!`](crate::conformance_suite) once in a test file; every case becomes
//! its own `#[test]`:
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
//! Cases that need to write a corrupt record call [`Harness::write_corrupt`]; a harness
//! that doesn't implement it has those cases skipped with a message. A skip (including
//! [`Harness::available`] saying no server is there) fails the test when the `CI`
//! environment variable is set.

pub mod cases;

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::id::SessionId;
use crate::options::StoreOptions;
use crate::store::SessionStore;

/// Why a case could not run: no server, or a hook the harness doesn't offer.
#[derive(Debug, Clone)]
pub struct Skip(pub String);

/// How the suite gets stores to test.
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

    /// Writes, under `id`, a stored record that can't be decoded (the suite then expects
    /// [`Error::Decode`](crate::Error::Decode)). The default says the hook is missing.
    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        let _ = (store, id);
        Err(Skip(
            "this harness cannot write corrupt records (Harness::write_corrupt)".into(),
        ))
    }
}

/// A case body, borrowing the harness.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Skip>> + Send + 'a>>;

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
            eprintln!("NOTE: conformance case {name} does not apply here: {reason}");
            return Ok(());
        }
        case(&harness).await
    });
    if let Err(Skip(reason)) = outcome {
        skip(&format!("conformance case {name}"), &reason);
    }
}

/// Reports that `what` could not run: a loud message, and a panic when the `CI`
/// environment variable is set, where a skip counts as a failure. The one place that rule
/// lives, for the suite and for any other test that needs a server.
pub fn skip(what: &str, reason: &str) {
    eprintln!("SKIPPED {what}: {reason}");
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{what} was skipped, which fails under CI: {reason}");
    }
}

/// Expands to one `#[test]` per conformance case for the given [`Harness`] expression.
///
/// ```ignore
/// session_core::conformance_suite!(MyHarness::new());
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::__conformance_cases!($harness;
            round_trip_keeps_every_kind_of_data,
            create_never_overwrites,
            expired_records_are_never_returned,
            touch_extends_and_reports_missing,
            touch_never_passes_the_deadline,
            destroy_is_idempotent,
            cycle_id_keeps_data_and_kills_the_old_id,
            rename_never_overwrites,
            update_is_compare_and_swap,
            stale_update_after_destroy_resurrects_nothing,
            stale_writes_after_cycle_id_resurrect_nothing,
            set_is_last_writer_wins,
            concurrent_increments_are_never_lost,
            owner_listing_and_revocation,
            delete_expired_purges_only_expired,
            oversized_payloads_write_nothing,
            count_follows_creates_and_destroys,
            corrupt_records_are_decode_errors,
            corrupt_records_can_be_treated_as_missing,
            hashed_ids_work_through_the_trait,
            large_integers_round_trip_or_fail_loudly,
            owner_limit_ends_the_oldest_sessions,
        );
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

//! The conformance suite through [`InstrumentedStore`] over the memory store, with a
//! subscriber listening (so every event is built). The suite over real servers runs in
//! integration-tests/tests/wrappers.rs.

use session_core::conformance::{Harness, NotApplicable, Skip, Unrun};
use session_core::{SessionId, StoreOptions, async_trait, now};
use session_memory::MemoryStore;
use session_telemetry::InstrumentedStore;

struct Instrumented;

#[async_trait]
impl Harness for Instrumented {
    type Store = InstrumentedStore<MemoryStore>;

    async fn store(&self, options: StoreOptions) -> Self::Store {
        let store = InstrumentedStore::builder(MemoryStore::builder().options(options).build())
            .system("memory")
            .build();
        // A subscriber that never reads, kept for the store's life: every event is built and
        // sent (the channel keeps only the newest, so this holds little).
        std::mem::forget(store.subscribe());
        store
    }

    async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
        store
            .inner()
            .write_raw(id, "[1, 2]", now() + time::Duration::hours(1))
            .await;
        Ok(())
    }

    async fn slow_store(&self, _: StoreOptions) -> Result<Self::Store, Unrun> {
        Err(Unrun::NotApplicable(NotApplicable(
            "an in-process store has no server to be slow".into(),
        )))
    }
}

#[test]
fn conformance() {
    session_core::conformance::run_suite(|| Instrumented);
}

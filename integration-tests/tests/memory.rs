//! The conformance suite against the moka memory store.

use session_core::conformance::{Harness, Skip};
use session_core::{SessionId, StoreOptions, async_trait, now};
use session_memory::MemoryStore;

struct Memory;

#[async_trait]
impl Harness for Memory {
    type Store = MemoryStore;

    async fn store(&self, options: StoreOptions) -> MemoryStore {
        MemoryStore::builder().options(options).build()
    }

    async fn write_corrupt(&self, store: &MemoryStore, id: &SessionId) -> Result<(), Skip> {
        store
            .write_raw(
                id,
                "[1, 2, \"not an object\"]",
                now() + time::Duration::hours(1),
            )
            .await;
        Ok(())
    }
}

session_core::conformance_suite!(Memory);

//! The conformance suite against the memory store (and, for `cargo mutants`, the tests that
//! judge every change to this crate).

use session_core::conformance::{Harness, NotApplicable, Skip, Unrun};
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
        let data = "[1, 2, \"not an object\"]";
        store
            .write_raw(id, data, now() + time::Duration::hours(1))
            .await;
        Ok(())
    }

    async fn slow_store(&self, _: StoreOptions) -> Result<MemoryStore, Unrun> {
        Err(Unrun::NotApplicable(NotApplicable(
            "an in-process store has no server to be slow; its calls never wait on I/O".into(),
        )))
    }
}

session_core::conformance_suite!(Memory);

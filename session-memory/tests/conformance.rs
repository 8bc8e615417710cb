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

/// The same suite through [`CachedStore`](session_memory::CachedStore) in front of the memory
/// store, so that `cargo mutants` on this crate judges the cache too.
mod cached {
    use super::*;
    use session_memory::CachedStore;

    struct Cached;

    #[async_trait]
    impl Harness for Cached {
        type Store = CachedStore<MemoryStore>;

        async fn store(&self, options: StoreOptions) -> Self::Store {
            CachedStore::builder(Memory.store(options).await).build()
        }

        async fn write_corrupt(&self, store: &Self::Store, id: &SessionId) -> Result<(), Skip> {
            Memory.write_corrupt(store.inner(), id).await
        }

        async fn slow_store(&self, options: StoreOptions) -> Result<Self::Store, Unrun> {
            Memory
                .slow_store(options)
                .await
                .map(|s| CachedStore::builder(s).build())
        }
    }

    session_core::conformance_suite!(Cached);
}

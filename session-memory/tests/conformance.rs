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

/// [`ScanSessions`](session_core::ScanSessions): every live session, whole, page by page.
#[tokio::test]
async fn scan() {
    session_core::conformance::check_scan(&MemoryStore::new()).await;
}

/// A corrupt entry is counted, not returned, and the scan goes on past it.
#[tokio::test]
async fn scan_counts_a_corrupt_entry_and_goes_on() {
    use session_core::{Record, ScanCursor, ScanSessions, SessionStore};

    let store = MemoryStore::new();
    let bad = SessionId::generate();
    Memory.write_corrupt(&store, &bad).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut record = Record::new(now() + time::Duration::hours(1));
        store.create(&mut record).await.unwrap();
        ids.push(record.id().clone());
    }
    let (mut found, mut corrupt, mut cursor) = (Vec::new(), 0, Some(ScanCursor::start()));
    while let Some(at) = cursor {
        let page = store.scan(&at, 2).await.unwrap();
        found.extend(page.records.into_iter().map(|r| r.id().clone()));
        corrupt += page.corrupt;
        cursor = page.next;
    }
    found.sort_by(|a, b| a.expose().cmp(b.expose()));
    ids.sort_by(|a, b| a.expose().cmp(b.expose()));
    assert_eq!(
        found, ids,
        "the live sessions, once each, and not the corrupt one"
    );
    assert_eq!(corrupt, 1);
}

//! The calls both test binaries make: a script with known outcomes.

use session_core::{Record, Rename, SessionId, SessionStore, now};
use session_memory::MemoryStore;
use session_telemetry::InstrumentedStore;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn session(owner: &str) -> Record {
    let mut record = Record::new(now() + time::Duration::hours(1));
    record.insert("cart", "a secret cart").unwrap();
    record.set_owner(Some(owner.into()));
    record
}

pub fn instrumented() -> InstrumentedStore<MemoryStore> {
    InstrumentedStore::builder(MemoryStore::new())
        .system("memory")
        .server("cache.internal", Some(7000))
        .payload_sizes(1)
        .build()
}

/// A script of calls with known outcomes, the same for every test below.
pub async fn script(store: &InstrumentedStore<MemoryStore>) -> (SessionId, SessionId) {
    let mut a = session("u");
    let mut b = session("u");
    let mut c = session("u");
    store.create(&mut a).await.unwrap();
    store.create(&mut b).await.unwrap();
    assert!(store.insert(&mut c).await.unwrap());
    // An insert of a taken id: a conflict.
    let mut taken = session("u");
    taken.set_id(a.id().clone());
    assert!(!store.insert(&mut taken).await.unwrap());
    // Two hits, one miss.
    store.get(a.id()).await.unwrap().unwrap();
    store.get(b.id()).await.unwrap().unwrap();
    assert!(store.get(&SessionId::generate()).await.unwrap().is_none());
    // An update, then a stale one: a conflict.
    let mut stale = a.clone();
    store.update(&mut a).await.unwrap();
    assert!(store.update(&mut stale).await.unwrap_err().is_conflict());
    // A touch that finds the session, one that doesn't.
    assert!(
        store
            .touch(b.id(), now() + time::Duration::hours(2))
            .await
            .unwrap()
    );
    assert!(!store.touch(&SessionId::generate(), now()).await.unwrap());
    // A rotation and a plain move onto a live session (a conflict).
    let rotated = store.cycle_id(a.id()).await.unwrap().unwrap();
    assert_eq!(
        store.rename(b.id(), c.id()).await.unwrap(),
        Rename::TargetTaken
    );
    // Logout of c; a limit that ends the older of b and `rotated`; log out everywhere.
    store.destroy(c.id()).await.unwrap();
    assert_eq!(store.limit_owner("u", 1).await.unwrap(), 1);
    assert_eq!(store.destroy_by_owner("u").await.unwrap(), 1);
    // A write over the payload limit: an error of kind payload_too_large.
    let mut huge = session("v");
    huge.insert("blob", "x".repeat(5 << 20)).unwrap();
    assert!(store.create(&mut huge).await.is_err());
    (c.id().clone(), rotated)
}

//! The wrapper over the memory store: round trips, the stored format, bound ids, rotation,
//! corrupt records, and renames racing writes and logouts.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::json;
use session_core::{CorruptPolicy, Error, Record, Rename, Result, SessionId, SessionStore, now};
use session_memory::MemoryStore;
use time::{Duration, OffsetDateTime};

use crate::{EncryptedStore, EncryptionKey, FIELD};

fn in_an_hour() -> OffsetDateTime {
    now() + Duration::hours(1)
}

fn encrypted(inner: MemoryStore, keys: &[&EncryptionKey]) -> EncryptedStore<MemoryStore> {
    EncryptedStore::new(inner, keys.iter().map(|k| (*k).clone()).collect()).unwrap()
}

async fn secret_session(store: &impl SessionStore) -> Record {
    let mut record = Record::new(in_an_hour());
    record.insert("token", "hunter2-secret").unwrap();
    record.set_owner(Some("owner-1".into()));
    store.create(&mut record).await.unwrap();
    record
}

#[tokio::test]
async fn data_round_trips_and_is_stored_sealed() {
    let key = EncryptionKey::generate();
    let store = encrypted(MemoryStore::new(), &[&key]);
    let record = secret_session(&store).await;
    assert_eq!(record.version(), 1);
    assert_eq!(store.get(record.id()).await.unwrap().unwrap(), record);

    let raw = store.inner().get(record.id()).await.unwrap().unwrap();
    assert_eq!(raw.data().len(), 1);
    let sealed = raw.data()[FIELD].as_str().unwrap();
    assert!(sealed.starts_with(&format!("v2.{}.", key.id())), "{sealed}");
    assert!(!sealed.contains("hunter2"));
    // Metadata stays plaintext for the backends.
    assert_eq!(raw.owner(), Some("owner-1"));
    assert_eq!(raw.version(), record.version());
    assert_eq!(raw.expires_at(), record.expires_at());
    assert_eq!(store.list_by_owner("owner-1").await.unwrap(), vec![record]);
}

#[tokio::test]
async fn a_ciphertext_moved_under_another_id_is_a_decode_error() {
    let store = encrypted(MemoryStore::new(), &[&EncryptionKey::generate()]);
    let record = secret_session(&store).await;
    let mut raw = store.inner().get(record.id()).await.unwrap().unwrap();
    let other = SessionId::generate();
    raw.set_id(other.clone());
    raw.set_version(0);
    assert!(store.inner().insert(&mut raw).await.unwrap());
    let err = store.get(&other).await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { id, .. } if *id == other),
        "{err}"
    );
    let lenient = store.clone().corrupt_policy(CorruptPolicy::TreatAsMissing);
    assert!(lenient.get(&other).await.unwrap().is_none());
    assert!(store.get(record.id()).await.unwrap().is_some());
}

#[tokio::test]
async fn rotation_reads_old_records_and_writes_with_the_new_key() {
    let old = EncryptionKey::generate();
    let new = EncryptionKey::generate();
    let memory = MemoryStore::new();
    let record = secret_session(&encrypted(memory.clone(), &[&old])).await;

    let rotated = encrypted(memory.clone(), &[&new, &old]);
    let mut back = rotated.get(record.id()).await.unwrap().unwrap();
    assert_eq!(back, record);
    let err = encrypted(memory.clone(), &[&new])
        .get(record.id())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");

    // A write re-seals with the first key; then the new key alone reads it.
    back.insert("n", 1).unwrap();
    rotated.update(&mut back).await.unwrap();
    let raw = memory.get(record.id()).await.unwrap().unwrap();
    assert!(
        raw.data()[FIELD]
            .as_str()
            .unwrap()
            .contains(&new.id().to_string())
    );
    assert_eq!(
        encrypted(memory, &[&new])
            .get(record.id())
            .await
            .unwrap()
            .unwrap(),
        back
    );
}

#[tokio::test]
async fn foreign_or_corrupt_data_is_a_decode_error_not_a_panic() {
    let store = encrypted(MemoryStore::new(), &[&EncryptionKey::generate()]);
    for data in [
        json!({}),
        json!({"enc": "garbage"}),
        json!({"enc": 7}),
        json!({"enc": "v2.AAAAAAAAAAA.AAAA", "x": 1}),
        json!({"plain": "old unencrypted session"}),
    ] {
        let mut raw = Record::new(in_an_hour());
        raw.set_data(data.as_object().unwrap().clone());
        store.inner().set(&mut raw).await.unwrap();
        let err = store.get(raw.id()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Decode { id, .. } if id == raw.id()),
            "{data}: {err}"
        );
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn constructor_errors_and_debug_show_no_key() {
    let memory = MemoryStore::new();
    let none: Vec<[u8; 32]> = Vec::new();
    assert!(matches!(
        EncryptedStore::from_key_bytes(memory.clone(), none),
        Err(Error::Config(_))
    ));
    let err =
        EncryptedStore::from_key_bytes(memory.clone(), [vec![1u8; 32], vec![2u8; 16]]).unwrap_err();
    assert!(
        matches!(&err, Error::Config(reason) if reason.contains("key 1")),
        "{err}"
    );
    let store = EncryptedStore::from_key_bytes(memory, [[0x5a_u8; 32]]).unwrap();
    let shown = format!("{store:?}");
    assert!(shown.contains("EncryptedStore"), "{shown}");
    assert!(
        !shown.contains("5a5a") && !shown.contains("90, 90"),
        "{shown}"
    );
    assert!(!shown.contains("WlpaWlpa"), "{shown}"); // base64 of 0x5a bytes
}

#[tokio::test]
async fn cycle_id_re_encrypts_under_the_new_id_and_leaves_nothing_behind() {
    let store = encrypted(MemoryStore::new(), &[&EncryptionKey::generate()]);
    let record = secret_session(&store).await;
    let new_id = store.cycle_id(record.id()).await.unwrap().unwrap();
    let moved = store.get(&new_id).await.unwrap().unwrap();
    assert_eq!(moved.data(), record.data());
    assert_eq!(
        moved.version(),
        record.version(),
        "rename keeps the version"
    );
    assert_eq!(moved.created_at(), record.created_at());
    assert!(store.inner().get(record.id()).await.unwrap().is_none());
    assert_eq!(store.count().await.unwrap(), 1);
}

/// Runs one racing action against the memory store right after the rename's copy is
/// inserted, i.e. between the rename's read and its compare-and-swap on the old id.
#[derive(Debug, Clone)]
enum Race {
    Write(Record),
    Destroy(SessionId),
    WriteAndRevokeCopy(Record),
}

#[derive(Debug)]
struct Racing {
    inner: MemoryStore,
    race: Mutex<Option<Race>>,
}

#[async_trait]
impl SessionStore for Racing {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        self.inner.get(id).await
    }
    async fn insert(&self, record: &mut Record) -> Result<bool> {
        let inserted = self.inner.insert(record).await?;
        let race = self.race.lock().unwrap().take();
        match race {
            Some(Race::Write(mut racing)) => self.inner.update(&mut racing).await?,
            Some(Race::Destroy(id)) => self.inner.destroy(&id).await?,
            Some(Race::WriteAndRevokeCopy(mut racing)) => {
                self.inner.update(&mut racing).await?;
                self.inner.destroy(record.id()).await?;
            }
            None => {}
        }
        Ok(inserted)
    }
    async fn set(&self, record: &mut Record) -> Result<()> {
        self.inner.set(record).await
    }
    async fn update(&self, record: &mut Record) -> Result<()> {
        self.inner.update(record).await
    }
    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.inner.touch(id, expires_at).await
    }
    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.inner.destroy(id).await
    }
    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        self.inner.rename(from, to).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.inner.list_by_owner(owner).await
    }
    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.inner.destroy_by_owner(owner).await
    }
    async fn count(&self) -> Result<u64> {
        self.inner.count().await
    }
}

async fn racing_rename(
    race: impl FnOnce(&EncryptedStore<MemoryStore>, &Record) -> Race,
) -> (EncryptedStore<Racing>, Record, SessionId, Result<Rename>) {
    let key = EncryptionKey::generate();
    let memory = MemoryStore::new();
    let plain = encrypted(memory.clone(), &[&key]);
    let record = secret_session(&plain).await;
    let racing = Racing {
        inner: memory,
        race: Mutex::new(Some(race(&plain, &record))),
    };
    let store = EncryptedStore::new(racing, vec![key]).unwrap();
    let to = SessionId::generate();
    let result = store.rename(record.id(), &to).await;
    (store, record, to, result)
}

#[tokio::test]
async fn a_write_acknowledged_during_a_rename_is_carried_to_the_new_id() {
    let (store, record, to, result) = racing_rename(|plain, record| {
        let mut racing = record.clone();
        racing.insert("token", "written-during-the-rename").unwrap();
        let sealed = plain.seal(racing.id(), racing.data()).unwrap();
        racing.set_data(sealed);
        Race::Write(racing)
    })
    .await;
    assert_eq!(result.unwrap(), Rename::Moved);
    let moved = store.get(&to).await.unwrap().unwrap();
    assert_eq!(
        moved.get::<String>("token").unwrap().as_deref(),
        Some("written-during-the-rename"),
        "the racing write was lost"
    );
    assert!(store.get(record.id()).await.unwrap().is_none());
    assert!(
        store
            .inner()
            .inner
            .get(record.id())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_logout_during_a_rename_ends_both_ids() {
    let (store, record, to, result) =
        racing_rename(|_, record| Race::Destroy(record.id().clone())).await;
    assert_eq!(result.unwrap(), Rename::SourceMissing);
    assert!(
        store.get(&to).await.unwrap().is_none(),
        "the rename resurrected a logout"
    );
    assert!(store.get(record.id()).await.unwrap().is_none());
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_rename_that_cannot_refresh_its_copy_gives_up_and_keeps_the_old_session() {
    // A write to the old id AND a revocation of the fresh copy (say, through the owner
    // listing) during the rename: it can neither retire the old id nor refresh the copy.
    let (store, record, to, result) = racing_rename(|plain, record| {
        let mut racing = record.clone();
        racing.insert("token", "newer").unwrap();
        let sealed = plain.seal(racing.id(), racing.data()).unwrap();
        racing.set_data(sealed);
        Race::WriteAndRevokeCopy(racing)
    })
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { id } if id == record.id()),
        "{err}"
    );
    assert!(store.get(&to).await.unwrap().is_none());
    let kept = store.get(record.id()).await.unwrap().unwrap();
    assert_eq!(
        kept.get::<String>("token").unwrap().as_deref(),
        Some("newer")
    );
    assert_eq!(store.count().await.unwrap(), 1);
}

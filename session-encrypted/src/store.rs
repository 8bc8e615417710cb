//! The store wrapper: encrypt on write, decrypt on read.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use session_core::{
    CorruptPolicy, Data, Error, MAX_ID_ATTEMPTS, Record, Rename, Result, SessionId, SessionStore,
    StoreOptions, codec, rename_onto_itself,
};
use time::OffsetDateTime;

use crate::keys::{EncryptionKey, KeyId, Keyring};

/// The one key of the stored data object: `{"enc": "v2.<key id>.<ciphertext>"}`.
pub const FIELD: &str = "enc";

/// The one key of a retired record's data during [`SessionStore::rename`]; such a record
/// reads as absent. It holds no ciphertext.
pub const TOMBSTONE_FIELD: &str = "moved";

/// Wraps any store so each session's data is encrypted at rest with XChaCha20-Poly1305.
///
/// See the [crate docs](crate) for what is and isn't encrypted, the stored format, key
/// rotation and how [`rename`](SessionStore::rename) re-encrypts.
///
/// `Debug` shows the inner store and the key ids, never a key.
#[derive(Clone)]
pub struct EncryptedStore<S> {
    inner: S,
    keys: Arc<Keyring>,
    corrupt: CorruptPolicy,
    max_payload_bytes: Option<usize>,
}

impl<S> EncryptedStore<S> {
    /// Wraps `inner`, encrypting with `keys[0]` and decrypting with any of `keys`.
    ///
    /// An empty list is an [`Error::Config`].
    pub fn new(inner: S, keys: Vec<EncryptionKey>) -> Result<Self> {
        Ok(Self {
            inner,
            keys: Arc::new(Keyring::new(keys)?),
            corrupt: CorruptPolicy::Error,
            max_payload_bytes: None,
        })
    }

    /// Like [`Self::new`] from raw keys of 32 bytes each; an empty list or a key of
    /// another length is an [`Error::Config`].
    pub fn from_key_bytes<K: AsRef<[u8]>>(
        inner: S,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Self> {
        let keys = keys
            .into_iter()
            .enumerate()
            .map(|(n, key)| {
                EncryptionKey::from_bytes(key.as_ref()).map_err(|err| match err {
                    Error::Config(reason) => Error::Config(format!("key {n}: {reason}")),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(inner, keys)
    }

    /// What a record that doesn't decrypt reads as (default [`CorruptPolicy::Error`]: an
    /// [`Error::Decode`] naming the session). The inner store's own policy covers only
    /// records *it* can't decode.
    #[must_use]
    pub fn corrupt_policy(mut self, policy: CorruptPolicy) -> Self {
        self.corrupt = policy;
        self
    }

    /// The largest session data this wrapper accepts, measured as the data's JSON before it
    /// is sealed (what `StoreOptions::max_payload_bytes` measures on every store); a larger
    /// write fails with [`Error::PayloadTooLarge`] and writes nothing. Without it only the
    /// inner store's limit applies, to the sealed form: about 4/3 of the data plus 90 bytes.
    /// Give the inner store room for that when you set both.
    #[must_use]
    pub fn max_payload_bytes(mut self, max: usize) -> Self {
        self.max_payload_bytes = Some(max);
        self
    }

    /// The wrapped store, which sees ciphertext only.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner store.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The ids of the keys, the encrypting one first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.ids()
    }

    /// The stored form of `data` for session `id`: `{"enc": "v2.<key id>.<ciphertext>"}`.
    pub fn seal(&self, id: &SessionId, data: &Data) -> Result<Data> {
        let plaintext = serde_json::to_vec(data).map_err(|err| Error::Encode {
            id: id.clone(),
            reason: err.to_string(),
        })?;
        if let Some(max) = self.max_payload_bytes {
            StoreOptions {
                max_payload_bytes: max,
                ..StoreOptions::default()
            }
            .check_size(id, plaintext.len())?;
        }
        let sealed = self.keys.seal(id, &plaintext)?;
        let mut stored = Data::new();
        stored.insert(FIELD.into(), Value::String(sealed));
        Ok(stored)
    }

    /// The session data in a stored form made by [`Self::seal`] for the same `id`, or an
    /// [`Error::Decode`] naming `id` (wrong key, tampered, moved from another id, not ours).
    pub fn open(&self, id: &SessionId, stored: &Data) -> Result<Data> {
        self.open_as(id, stored, false)
    }

    /// [`Self::open`]; `listed`: the id came from a listing (behind `HashedIds`, the hash).
    fn open_as(&self, id: &SessionId, stored: &Data, listed: bool) -> Result<Data> {
        let sealed = match (stored.len(), stored.get(FIELD)) {
            (1, Some(Value::String(sealed))) => sealed,
            _ => {
                return Err(Error::decode(
                    id,
                    format_args!("the stored data is not an encrypted `{{\"{FIELD}\": …}}` object"),
                ));
            }
        };
        let plaintext = self.keys.open(id, sealed, listed)?;
        serde_json::from_slice(&plaintext).map_err(|err| {
            Error::decode(
                id,
                format_args!("the decrypted data is not a JSON object: {err}"),
            )
        })
    }

    /// The stored record with its data decrypted; `None` for a rename's tombstone, or when
    /// the policy says to treat an undecryptable record as absent.
    fn decrypt(&self, stored: Record) -> Result<Option<Record>> {
        self.decrypt_as(stored, false)
    }

    /// [`Self::decrypt`] of a listed record.
    fn decrypt_as(&self, mut stored: Record, listed: bool) -> Result<Option<Record>> {
        if is_tombstone(&stored) {
            return Ok(None);
        }
        let opened = self
            .open_as(stored.id(), stored.data(), listed)
            .map(|data| {
                stored.set_data(data);
                stored
            });
        StoreOptions {
            corrupt: self.corrupt,
            ..StoreOptions::default()
        }
        .on_corrupt(opened)
    }

    /// A copy of `record`'s metadata (id, times, version, owner) carrying `data` instead.
    fn with_data(record: &Record, data: Data) -> Record {
        let mut copy = Record::with_id(record.id().clone(), record.expires_at());
        copy.set_created_at(record.created_at());
        copy.set_deadline(record.deadline());
        copy.set_expires_at(record.expires_at());
        copy.set_version(record.version());
        copy.set_owner(record.owner().map(str::to_owned));
        copy.set_data(data);
        copy
    }

    /// `record` as stored: the same metadata, its data sealed for its id. The data is checked
    /// as every store checks it (nesting, version) before it is sealed: the inner store only
    /// sees the sealed string.
    fn sealed(&self, record: &Record) -> Result<Record> {
        codec::check_writable(record)?;
        Ok(Self::with_data(
            record,
            self.seal(record.id(), record.data())?,
        ))
    }
}

fn tombstone() -> Data {
    let mut data = Data::new();
    data.insert(TOMBSTONE_FIELD.into(), Value::Bool(true));
    data
}

fn is_tombstone(record: &Record) -> bool {
    record.data().len() == 1 && record.data().get(TOMBSTONE_FIELD) == Some(&Value::Bool(true))
}

impl<S: fmt::Debug> fmt::Debug for EncryptedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("inner", &self.inner)
            .field("key_ids", &self.keys)
            .field("corrupt", &self.corrupt)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .finish()
    }
}

impl<S: SessionStore> EncryptedStore<S> {
    /// Best-effort removal of the copy a failed rename wrote under `to`.
    async fn undo_copy(&self, to: &SessionId) {
        if let Err(err) = self.inner.destroy(to).await {
            tracing::warn!(
                session = %to.fingerprint(),
                error = %err,
                "could not remove the copy of an unfinished session rename; it expires as usual"
            );
        }
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for EncryptedStore<S> {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        match self.inner.get(id).await? {
            Some(stored) => self.decrypt(stored),
            None => Ok(None),
        }
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        let mut stored = self.sealed(record)?;
        let inserted = self.inner.insert(&mut stored).await?;
        if inserted {
            record.set_version(stored.version());
        }
        Ok(inserted)
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        let mut stored = self.sealed(record)?;
        self.inner.set(&mut stored).await?;
        record.set_version(stored.version());
        Ok(())
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        let mut stored = self.sealed(record)?;
        self.inner.update(&mut stored).await?;
        record.set_version(stored.version());
        Ok(())
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.inner.touch(id, expires_at).await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.inner.destroy(id).await
    }

    /// Re-encrypts under `to` (the ciphertext is bound to `from`), then retires `from` with
    /// a compare-and-swap so no acknowledged write to it is lost; see the crate docs.
    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        if from == to {
            return rename_onto_itself(self, from).await;
        }
        // 1. Read the live record under the old id.
        let Some(mut source) = self.inner.get(from).await? else {
            return Ok(Rename::SourceMissing);
        };
        let Some(plain) = self.decrypt(source.clone())? else {
            return Ok(Rename::SourceMissing);
        };
        // 2. Write a copy sealed for the new id, at the same stored version, if `to` is free.
        let mut moved = plain;
        moved.set_id(to.clone());
        moved.set_version(source.version().saturating_sub(1));
        let mut copy = self.sealed(&moved)?;
        if !self.inner.insert(&mut copy).await? {
            return Ok(Rename::TargetTaken);
        }
        // 3. Retire the old id with a compare-and-swap at the version read: a write to it
        //    acknowledged since then makes this conflict, and the copy is refreshed first.
        for _ in 0..MAX_ID_ATTEMPTS {
            let mut retired = Self::with_data(&source, tombstone());
            match self.inner.update(&mut retired).await {
                Ok(()) => {
                    if let Err(err) = self.inner.destroy(from).await {
                        // The tombstone already reads as absent and holds no data.
                        tracing::warn!(
                            session = %from.fingerprint(),
                            error = %err,
                            "could not remove a renamed session's tombstone; it expires as usual"
                        );
                    }
                    return Ok(Rename::Moved);
                }
                Err(err) if err.is_conflict() => {}
                Err(err) => {
                    self.undo_copy(to).await;
                    return Err(err);
                }
            }
            // The old record changed, ended, or another rename retired it.
            let latest = match self.inner.get(from).await {
                Ok(Some(latest)) if !is_tombstone(&latest) => latest,
                Ok(_) => {
                    // Destroyed (a logout racing the rotation) or moved by a racing rename:
                    // the copy must not outlive it.
                    self.inner.destroy(to).await?;
                    return Ok(Rename::SourceMissing);
                }
                Err(err) => {
                    self.undo_copy(to).await;
                    return Err(err);
                }
            };
            let plain = match self.decrypt(latest.clone()) {
                Ok(Some(plain)) => plain,
                Ok(None) => {
                    self.inner.destroy(to).await?;
                    return Ok(Rename::SourceMissing);
                }
                Err(err) => {
                    self.undo_copy(to).await;
                    return Err(err);
                }
            };
            let mut refreshed = plain;
            refreshed.set_id(to.clone());
            refreshed.set_version(copy.version());
            let mut refreshed = self.sealed(&refreshed)?;
            match self.inner.update(&mut refreshed).await {
                Ok(()) => {
                    copy = refreshed;
                    source = latest;
                }
                Err(err) => {
                    // Only a revocation (by owner) can touch the fresh id: give up, the old
                    // session stays as it is.
                    self.undo_copy(to).await;
                    return Err(if err.is_conflict() {
                        Error::Conflict { id: from.clone() }
                    } else {
                        err
                    });
                }
            }
        }
        self.undo_copy(to).await;
        Err(Error::Conflict { id: from.clone() })
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        let mut listed = Vec::new();
        for stored in self.inner.list_by_owner(owner).await? {
            if let Some(record) = self.decrypt_as(stored, true)? {
                listed.push(record);
            }
        }
        Ok(listed)
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.inner.destroy_by_owner(owner).await
    }

    async fn count(&self) -> Result<u64> {
        self.inner.count().await
    }

    // `create` and `cycle_id` keep the trait's defaults on purpose: they call this
    // wrapper's `insert` and `rename`, which seal for the id actually written. The inner
    // store's own `create` would change the id after sealing.

    /// Delegates whole: it needs only ids, creation times and versions, which are plaintext.
    async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
        self.inner.limit_owner(owner, keep).await
    }

    fn timeout(&self) -> std::time::Duration {
        self.inner.timeout()
    }
}

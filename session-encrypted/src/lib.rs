//! Session data encrypted at rest: [`EncryptedStore`] wraps any
//! [`SessionStore`](session_core::SessionStore) and encrypts each session's data with
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`), so a leaked database, dump or backup
//! holds no readable session data.
//!
//! ```
//! use session_core::{Record, SessionStore, now};
//! use session_encrypted::{EncryptedStore, EncryptionKey};
//! use session_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> session_core::Result<()> {
//! // Keys come from your secret store; list the new key first, old keys after it.
//! let current = EncryptionKey::generate(); // or EncryptionKey::from_base64(&env_var)?
//! let store = EncryptedStore::new(MemoryStore::new(), vec![current])?;
//!
//! let mut session = Record::new(now() + time::Duration::hours(1));
//! session.insert("api_token", "tok_live_123")?;
//! store.create(&mut session).await?;
//!
//! // Reads decrypt; the inner store only ever sees `{"enc": "v2.<key id>.<ciphertext>"}`.
//! let back = store.get(session.id()).await?.expect("stored");
//! assert_eq!(back.get::<String>("api_token")?.as_deref(), Some("tok_live_123"));
//! let raw = store.inner().get(session.id()).await?.expect("stored");
//! assert!(!serde_json::to_string(raw.data()).unwrap().contains("tok_live_123"));
//! # Ok(()) }
//! ```
//!
//! # What is encrypted, what is not
//!
//! Encrypted and authenticated: the session **data** (the whole JSON object, serialized
//! with `serde_json`). Stored in plaintext, because the backends index and compare them:
//! the session **id** (the key; wrap the store in
//! [`HashedIds`](session_core::HashedIds) to store only its hash), **expiry**, **deadline**,
//! **creation time**, **version** and **owner**. The owner is often a user id: choose an
//! opaque one if that matters.
//!
//! # Stored format
//!
//! The inner store receives data that is a JSON object with one key, [`FIELD`]:
//!
//! ```text
//! {"enc": "v2.<key id>.<base64url(nonce || ciphertext || tag)>"}
//! ```
//!
//! `v2` is the format label ([`FORMAT_LABEL`]); the key id ([`KeyId`]) is 11 base64url
//! characters (the first 8 bytes of a domain-separated SHA-256 of the key); the nonce is
//! 24 random bytes from the OS CSPRNG, fresh for every write (XChaCha20's 192-bit nonces
//! make random nonces safe for any realistic number of writes). Keys hold no `$` or `.`,
//! so the object is a valid MongoDB document. The associated data binds the format label,
//! the key id and the **session id** (its SHA-256, [`SessionId::hashed`]): a ciphertext
//! copied under another id does not decrypt
//! ([`Error::Decode`](session_core::Error::Decode)). Binding the hash rather than the id
//! lets a listing behind [`HashedIds`](session_core::HashedIds), which only knows hashed
//! ids, open the data too: both `EncryptedStore::new(HashedIds::new(store), ..)` and
//! `HashedIds::new(EncryptedStore::new(store, ..)?)` work for every method. Format `v1`
//! (the id itself bound, written by 0.1) is still read.
//!
//! [`SessionId::hashed`]: session_core::SessionId::hashed
//!
//! # Key rotation
//!
//! [`EncryptedStore::new`] takes a key list: the first key encrypts every write, every
//! listed key decrypts, picked by the key id in the ciphertext (no trial decryption). To
//! rotate, deploy `[new, old]`; records move to the new key as they are written; drop
//! `old` once every session sealed with it has expired (the longest absolute lifetime).
//! A record whose key is not listed is an `Error::Decode`.
//!
//! The ciphers built from the keys zeroize their key copies when dropped (the
//! `chacha20poly1305` crate does that); an [`EncryptionKey`] value itself is plain memory,
//! so drop it once the store is built.
//!
//! # Failures
//!
//! A record that does not decrypt (wrong or removed key, tampered, moved to another id,
//! written by something else) is an [`Error::Decode`](session_core::Error::Decode) naming
//! the session, never a panic, and is left untouched. The inner store's
//! [`CorruptPolicy`](session_core::CorruptPolicy) does not reach it (the inner store sees
//! a well-formed record); set the wrapper's own with [`EncryptedStore::corrupt_policy`].
//!
//! # Payload limits
//!
//! The inner store checks its `max_payload_bytes` against what it stores: the sealed form,
//! about 4/3 of the serialized data plus about 90 bytes. To limit the data itself, as every
//! store's `max_payload_bytes` measures it, set [`EncryptedStore::max_payload_bytes`] and
//! give the inner store room for the sealed form.
//!
//! # Records that don't decrypt
//!
//! The inner store sees a well-formed record whatever its ciphertext, so an `update` at the
//! right version replaces a record sealed with a removed key (nobody could read it anyway);
//! records the inner store can't decode are left alone as on that store.
//!
//! # Renaming (`cycle_id`)
//!
//! The move is two steps on the inner store (a copy sealed for the new id, then the old id
//! retired), not one: while it runs, listings and counts may show the session under both
//! ids. `destroy_by_owner` removes both, and a `destroy` of the old id racing the move makes
//! it remove its copy, so neither a logout nor "log out everywhere" is undone.
//!
//! The ciphertext is bound to the id, so [`rename`](session_core::SessionStore::rename)
//! can't just move it. The wrapper:
//!
//! 1. reads the record under the old id (missing: `SourceMissing`);
//! 2. inserts a copy re-encrypted for the new id, with the same expiry, deadline, owner,
//!    creation time and version (id taken: `TargetTaken`, nothing changed);
//! 3. retires the old id with `update` at the version it read, replacing the data by a
//!    tombstone (`{"moved": true}`, no ciphertext, read as absent), then destroys it.
//!
//! If step 3 conflicts, a write to the old id was acknowledged in between: the wrapper
//! reads the old record again, rewrites the copy with the latest data (an `update` on the
//! new id) and retries step 3, at most [`MAX_ID_ATTEMPTS`](session_core::MAX_ID_ATTEMPTS)
//! times (then `Error::Conflict`, copy removed, old session unchanged). If the old record
//! is gone by then (a logout racing the rotation), the copy is destroyed too and the result
//! is `SourceMissing`: a rotation never resurrects a session. A `touch` of the old id
//! between steps 1 and 3 is not carried over (touch does not change the version), so the
//! new id may keep the expiry read in step 1. A session is never lost: the new id is
//! written before the old one is retired.

mod keys;
mod store;

pub use keys::{EncryptionKey, FORMAT_LABEL, KEY_LEN, KeyId};
pub use store::{EncryptedStore, FIELD, TOMBSTONE_FIELD};

#[cfg(test)]
mod tests;

//! Keys, key ids and the sealed format: `v2.<key id>.<base64url(nonce || ciphertext)>`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use session_core::{Error, Result, SessionId};
use sha2::{Digest, Sha256};

/// Length of an [`EncryptionKey`] in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// The label of the sealed format this crate writes (the first dot-separated part).
///
/// `v2` binds the ciphertext to the SHA-256 of the session id ([`SessionId::hashed`]), so it
/// opens whether the inner store keys records by the id or by that hash (behind
/// `HashedIds`, whose listings carry hashed ids). `v1`, written by earlier versions, bound
/// it to the id itself; it is still read.
pub const FORMAT_LABEL: &str = "v2";

/// The label of the first format, still read.
const FORMAT_V1: &str = "v1";

/// XChaCha20-Poly1305's nonce: 192 bits, so random nonces never repeat in practice.
const NONCE_LEN: usize = 24;
/// Poly1305's authentication tag.
const TAG_LEN: usize = 16;
/// Length of a [`KeyId`] in bytes.
const KEY_ID_LEN: usize = 8;
/// Domain separation for key ids, so they can't be confused with any other hash of the key.
const KEY_ID_DOMAIN: &[u8] = b"session-encrypted key id\0";
/// Domain separation for the associated data.
const AAD_DOMAIN: &[u8] = b"session-encrypted\0";

/// A 256-bit data key. `Debug` shows only its [`KeyId`].
///
/// Make one with [`EncryptionKey::generate`] (then keep its [`bytes`](Self::to_bytes) in
/// your secret store) or load one with [`EncryptionKey::from_bytes`] /
/// [`EncryptionKey::from_base64`].
#[derive(Clone)]
pub struct EncryptionKey {
    bytes: [u8; KEY_LEN],
}

impl EncryptionKey {
    /// A key from exactly [`KEY_LEN`] bytes; any other length is an [`Error::Config`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::Config(format!(
                "an encryption key has exactly {KEY_LEN} bytes, this one has {}",
                bytes.len()
            ))
        })?;
        Ok(Self { bytes })
    }

    /// A key from base64 (standard or URL-safe alphabet, padded or not) of [`KEY_LEN`]
    /// bytes, as kept in an environment variable or a secret store.
    pub fn from_base64(text: &str) -> Result<Self> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
        let text = text.trim();
        let decoded = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or_else(|| Error::Config("an encryption key must be valid base64".into()))?;
        Self::from_bytes(&decoded)
    }

    /// A fresh key from the OS CSPRNG.
    ///
    /// # Panics
    /// Only if the operating system's random source fails; see [`Self::try_generate`].
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(key) => key,
            Err(err) => panic!("the OS random number generator failed: {err}"),
        }
    }

    /// A fresh key, or the OS random source's error.
    pub fn try_generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes)?;
        Ok(Self { bytes })
    }

    /// The raw key, to save in a secret store. Never log it.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.bytes
    }

    /// The key's public label, stored with every ciphertext it seals.
    pub fn id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(self.bytes)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({})", self.id())
    }
}

/// A key's public label: the first 8 bytes of a domain-separated SHA-256 of the key, shown
/// as 11 base64url characters. It tells which key sealed a record, so decryption needs no
/// trial, and reveals nothing usable about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    fn parse(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The ciphers of a key list: the first seals, all open.
#[derive(Clone)]
pub(crate) struct Keyring {
    keys: Vec<(KeyId, XChaCha20Poly1305)>,
}

impl Keyring {
    pub(crate) fn new(keys: Vec<EncryptionKey>) -> Result<Self> {
        if keys.is_empty() {
            return Err(Error::Config(
                "an EncryptedStore needs at least one key (the first encrypts)".into(),
            ));
        }
        let keys = keys
            .iter()
            .map(|key| (key.id(), XChaCha20Poly1305::new(&key.bytes.into())))
            .collect();
        Ok(Self { keys })
    }

    pub(crate) fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|(id, _)| *id).collect()
    }

    /// Seals `plaintext` for session `id` with the first key and a fresh random nonce.
    pub(crate) fn seal(&self, id: &SessionId, plaintext: &[u8]) -> Result<String> {
        let (key_id, cipher) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|err| Error::Encode {
            id: id.clone(),
            reason: format!("the OS random number generator failed: {err}"),
        })?;
        let aad = associated_data(FORMAT_LABEL, key_id, &id.hashed());
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Encode {
                id: id.clone(),
                reason: "the session data could not be encrypted".into(),
            })?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(format!(
            "{FORMAT_LABEL}.{key_id}.{}",
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// Opens what [`Self::seal`] made for `id`; the error says why not (never the key).
    /// The plaintext sealed for session `id`. `listed`: `id` came from a listing, where
    /// behind `HashedIds` it is already the hash the ciphertext is bound to.
    pub(crate) fn open(&self, id: &SessionId, sealed: &str, listed: bool) -> Result<Vec<u8>> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(label), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::decode(
                id,
                "the encrypted data is not `<format>.<key id>.<ciphertext>`",
            ));
        };
        // The ids the ciphertext may be bound to, most likely first.
        let bound: Vec<SessionId> = match label {
            FORMAT_LABEL if listed => vec![id.hashed(), id.clone()],
            FORMAT_LABEL => vec![id.hashed()],
            FORMAT_V1 => vec![id.clone()],
            _ => {
                return Err(Error::decode(
                    id,
                    format_args!(
                        "unknown encrypted format {label:?} (this version reads \
                         {FORMAT_LABEL:?} and {FORMAT_V1:?})"
                    ),
                ));
            }
        };
        let key_id = KeyId::parse(key_id)
            .ok_or_else(|| Error::decode(id, "the encrypted data has a malformed key id"))?;
        let Some((_, cipher)) = self.keys.iter().find(|(known, _)| *known == key_id) else {
            return Err(Error::decode(
                id,
                format_args!(
                    "sealed with key {key_id}, which is not in this store's key list \
                     (a key removed too early, or another application's key)"
                ),
            ));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| Error::decode(id, "the ciphertext is not base64url"))?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::decode(id, "the ciphertext is too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let opened = bound.iter().find_map(|bound| {
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &associated_data(label, &key_id, bound),
                    },
                )
                .ok()
        });
        opened.ok_or_else(|| {
            Error::decode(
                id,
                format_args!(
                    "the ciphertext does not authenticate under key {key_id}: it was \
                     tampered with, or sealed for another session id"
                ),
            )
        })
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ids()).finish()
    }
}

/// What the tag authenticates besides the data: the format, the key id and the id the data
/// is bound to (the session id's hash in `v2`, the id in `v1`), so a ciphertext is only valid
/// as the data of the session it was sealed for.
fn associated_data(label: &str, key_id: &KeyId, bound: &SessionId) -> Vec<u8> {
    let id = bound;
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 4 + KEY_ID_LEN + id.expose().len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(label.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&key_id.0);
    aad.extend_from_slice(id.expose().as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[&EncryptionKey]) -> Keyring {
        Keyring::new(keys.iter().map(|k| (*k).clone()).collect()).unwrap()
    }

    #[test]
    fn seal_and_open_round_trip_with_fresh_nonces() {
        let key = EncryptionKey::generate();
        let keys = ring(&[&key]);
        let id = SessionId::generate();
        let a = keys.seal(&id, b"hello").unwrap();
        let b = keys.seal(&id, b"hello").unwrap();
        assert_ne!(
            a, b,
            "two seals of the same data must differ (random nonces)"
        );
        assert!(a.starts_with(&format!("v2.{}.", key.id())));
        assert_eq!(keys.open(&id, &a, false).unwrap(), b"hello");
        assert_eq!(keys.open(&id, &b, false).unwrap(), b"hello");
    }

    #[test]
    fn another_id_tampering_or_an_unknown_key_fail_to_open() {
        let key = EncryptionKey::generate();
        let keys = ring(&[&key]);
        let id = SessionId::generate();
        let sealed = keys.seal(&id, b"secret").unwrap();
        let other = SessionId::generate();
        assert!(
            matches!(keys.open(&other, &sealed, false), Err(Error::Decode { id, .. }) if id == other)
        );

        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(matches!(
            keys.open(&id, &tampered, false),
            Err(Error::Decode { .. })
        ));

        let stranger = ring(&[&EncryptionKey::generate()]);
        let err = stranger.open(&id, &sealed, false).unwrap_err();
        assert!(err.to_string().contains(&id.fingerprint().to_string()));
        for bad in [
            "",
            "garbage",
            "v2.x.y",
            "v1..",
            "v1.AAAAAAAAAAA.",
            "v1.!!.AAAA",
        ] {
            assert!(
                matches!(keys.open(&id, bad, false), Err(Error::Decode { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rotation_opens_with_any_listed_key_and_seals_with_the_first() {
        let old = EncryptionKey::generate();
        let new = EncryptionKey::generate();
        let id = SessionId::generate();
        let sealed_old = ring(&[&old]).seal(&id, b"x").unwrap();
        let rotated = ring(&[&new, &old]);
        assert_eq!(rotated.open(&id, &sealed_old, false).unwrap(), b"x");
        assert!(
            rotated
                .seal(&id, b"x")
                .unwrap()
                .contains(&new.id().to_string())
        );
        assert!(ring(&[&new]).open(&id, &sealed_old, false).is_err());
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        assert!(matches!(
            EncryptionKey::from_bytes(&[1; 31]),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            EncryptionKey::from_bytes(&[1; 33]),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            EncryptionKey::from_base64("not base64!"),
            Err(Error::Config(_))
        ));
        assert!(matches!(Keyring::new(Vec::new()), Err(Error::Config(_))));
        let key = EncryptionKey::from_bytes(&[0xAB; KEY_LEN]).unwrap();
        let b64 = URL_SAFE_NO_PAD.encode([0xAB; KEY_LEN]);
        assert_eq!(
            EncryptionKey::from_base64(&b64).unwrap().to_bytes(),
            key.to_bytes()
        );
        for shown in [format!("{key:?}"), format!("{:?}", ring(&[&key]))] {
            assert!(!shown.contains(&b64[..16]), "{shown}");
            assert!(!shown.to_lowercase().contains("abab"), "{shown}");
            assert!(!shown.contains("171"), "{shown}");
            assert!(shown.contains(&key.id().to_string()), "{shown}");
        }
    }

    /// What 0.1 wrote: bound to the id itself, under the label `v1`.
    fn seal_v1(key: &EncryptionKey, id: &SessionId, plaintext: &[u8]) -> String {
        let keys = ring(&[key]);
        let (key_id, cipher) = &keys.keys[0];
        let nonce = [7u8; NONCE_LEN];
        let aad = associated_data(FORMAT_V1, key_id, id);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap();
        let body = [&nonce[..], &ciphertext].concat();
        format!("v1.{key_id}.{}", URL_SAFE_NO_PAD.encode(body))
    }

    #[test]
    fn v1_still_opens_and_v2_opens_under_the_hashed_id_in_listings() {
        let key = EncryptionKey::generate();
        let keys = ring(&[&key]);
        let id = SessionId::generate();
        let old = seal_v1(&key, &id, b"old");
        assert_eq!(keys.open(&id, &old, false).unwrap(), b"old");
        assert!(
            keys.open(&id.hashed(), &old, true).is_err(),
            "v1 binds the plain id"
        );

        let new = keys.seal(&id, b"new").unwrap();
        assert_eq!(keys.open(&id, &new, false).unwrap(), b"new");
        // Behind HashedIds a listing names the session by its hash.
        assert_eq!(keys.open(&id.hashed(), &new, true).unwrap(), b"new");
        assert!(keys.open(&id.hashed(), &new, false).is_err());
        assert!(keys.open(&SessionId::generate(), &new, true).is_err());
    }
}

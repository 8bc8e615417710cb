//! Keys, key ids and the sealed format: `v1.<key id>.<base64url(nonce || ciphertext)>`.

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
pub const FORMAT_LABEL: &str = "v1";

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
        let aad = associated_data(key_id, id);
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
    pub(crate) fn open(&self, id: &SessionId, sealed: &str) -> Result<Vec<u8>> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(label), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::decode(
                id,
                "the encrypted data is not `<format>.<key id>.<ciphertext>`",
            ));
        };
        if label != FORMAT_LABEL {
            return Err(Error::decode(
                id,
                format_args!(
                    "unknown encrypted format {label:?} (this version reads {FORMAT_LABEL:?})"
                ),
            ));
        }
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
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &associated_data(&key_id, id),
                },
            )
            .map_err(|_| {
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

/// What the tag authenticates besides the data: the format, the key id and the session id,
/// so a ciphertext is only valid as the data of the session it was sealed for.
fn associated_data(key_id: &KeyId, id: &SessionId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 4 + KEY_ID_LEN + id.expose().len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(FORMAT_LABEL.as_bytes());
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
        assert!(a.starts_with(&format!("v1.{}.", key.id())));
        assert_eq!(keys.open(&id, &a).unwrap(), b"hello");
        assert_eq!(keys.open(&id, &b).unwrap(), b"hello");
    }

    #[test]
    fn another_id_tampering_or_an_unknown_key_fail_to_open() {
        let key = EncryptionKey::generate();
        let keys = ring(&[&key]);
        let id = SessionId::generate();
        let sealed = keys.seal(&id, b"secret").unwrap();
        let other = SessionId::generate();
        assert!(matches!(keys.open(&other, &sealed), Err(Error::Decode { id, .. }) if id == other));

        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(matches!(
            keys.open(&id, &tampered),
            Err(Error::Decode { .. })
        ));

        let stranger = ring(&[&EncryptionKey::generate()]);
        let err = stranger.open(&id, &sealed).unwrap_err();
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
                matches!(keys.open(&id, bad), Err(Error::Decode { .. })),
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
        assert_eq!(rotated.open(&id, &sealed_old).unwrap(), b"x");
        assert!(
            rotated
                .seal(&id, b"x")
                .unwrap()
                .contains(&new.id().to_string())
        );
        assert!(ring(&[&new]).open(&id, &sealed_old).is_err());
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
}

//! Session ids: generated from the OS CSPRNG, validated before they reach any backend.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Random bytes in a generated id: 192 bits, well above the 128 bits a guess must beat.
///
/// 24 bytes encode to exactly 32 base64url characters, the length express-session's ids
/// have, so generated ids look like the ones Node apps already store.
const GENERATED_BYTES: usize = 24;

/// Shortest id [`SessionId::parse`] accepts: 22 base64url characters carry 132 bits.
pub const MIN_ID_LEN: usize = 22;
/// Longest id [`SessionId::parse`] accepts.
pub const MAX_ID_LEN: usize = 128;

/// A validated session id: 22 to 128 characters of `A-Z a-z 0-9 - _`.
///
/// That charset is URL- and cookie-safe and contains nothing a key, SQL or query language
/// could interpret (no `:`, `*`, `$`, quotes, `{`, spaces), so an id that parsed can be used
/// as a key anywhere. It accepts express-session's 32-character ids, so sessions can be
/// shared with Node apps.
///
/// The id is a bearer secret: `Debug` shows only a [fingerprint](SessionId::fingerprint) and
/// there is no `Display`; call [`SessionId::expose`] where the raw value is really needed
/// (the cookie, the backend key).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Box<str>);

/// Why a string is not a session id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    /// The id is shorter than [`MIN_ID_LEN`] or longer than [`MAX_ID_LEN`].
    #[error(
        "a session id has {MIN_ID_LEN} to {MAX_ID_LEN} characters, this one has {0}; \
         the cookie was probably truncated or forged, start a new session"
    )]
    Length(usize),
    /// The id holds a character outside `A-Z a-z 0-9 - _`.
    #[error(
        "a session id holds only A-Z a-z 0-9 - _, this one has another character at byte {0}; \
         the cookie was probably forged, start a new session"
    )]
    Charset(usize),
}

impl SessionId {
    /// A fresh id: 192 bits from the OS CSPRNG, as 32 base64url characters.
    ///
    /// # Panics
    /// Only if the operating system's random source is unavailable, which no session
    /// could survive safely; use [`SessionId::try_generate`] to handle that case.
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(id) => id,
            Err(err) => panic!("the OS random number generator failed: {err}"),
        }
    }

    /// A fresh id, or the OS random source's error.
    pub fn try_generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; GENERATED_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes).into_boxed_str()))
    }

    /// Parses and validates an id received from outside (a cookie, a URL).
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        if !(MIN_ID_LEN..=MAX_ID_LEN).contains(&text.len()) {
            return Err(InvalidId::Length(text.len()));
        }
        if let Some(pos) = text
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(InvalidId::Charset(pos));
        }
        Ok(Self(text.into()))
    }

    /// The raw id, for the cookie and the backend key. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The id's one-way hash as a valid id (43 base64url characters of SHA-256).
    ///
    /// Stores keyed by this (see [`HashedIds`](crate::HashedIds)) yield no usable cookie
    /// when their contents leak.
    pub fn hashed(&self) -> SessionId {
        SessionId(
            URL_SAFE_NO_PAD
                .encode(Sha256::digest(self.0.as_bytes()))
                .into_boxed_str(),
        )
    }

    /// A short, non-reversible tag for logs and errors: the first 12 hex digits of the
    /// SHA-256 of the id. Lets an operator correlate log lines without seeing the secret.
    pub fn fingerprint(&self) -> Fingerprint {
        let digest = Sha256::digest(self.0.as_bytes());
        let mut tag = [0u8; 6];
        tag.copy_from_slice(&digest[..6]);
        Fingerprint(tag)
    }
}

impl FromStr for SessionId {
    type Err = InvalidId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for SessionId {
    type Error = InvalidId;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.fingerprint())
    }
}

/// A session id's log-safe tag, from [`SessionId::fingerprint`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 6]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_url_safe_chars_and_parse_back() {
        let id = SessionId::generate();
        assert_eq!(id.expose().len(), 32);
        assert_eq!(SessionId::parse(id.expose()), Ok(id));
    }

    #[test]
    fn generated_ids_differ() {
        let ids: std::collections::HashSet<_> =
            (0..10_000).map(|_| SessionId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn accepts_express_session_ids() {
        // uid-safe(24) output, as express-session generates it.
        assert!(SessionId::parse("kgXGR3v6_Dz0tYcjSa-c8WoPLhDIb6Qn").is_ok());
    }

    #[test]
    fn rejects_injection_and_bad_lengths() {
        for bad in [
            "",
            "short",
            "sess:*",
            "aaaaaaaaaaaaaaaaaaaaaaaaa' OR '1'='1",
            "{\"$ne\":null}aaaaaaaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaaaaa\naaaa",
            "ééééééééééééééééééééééé",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            SessionId::parse(&"a".repeat(129)),
            Err(InvalidId::Length(129))
        );
        assert_eq!(
            SessionId::parse("aaaaaaaaaaaaaaaaaaaaaa:a"),
            Err(InvalidId::Charset(22))
        );
    }

    #[test]
    fn debug_hides_the_id() {
        let id = SessionId::generate();
        let shown = format!("{id:?}");
        assert!(!shown.contains(id.expose()));
        assert!(shown.contains(&id.fingerprint().to_string()));
    }

    #[test]
    fn hashed_ids_are_valid_stable_and_different() {
        let id = SessionId::generate();
        let hashed = id.hashed();
        assert_eq!(hashed, id.hashed());
        assert_ne!(hashed, id);
        assert_eq!(SessionId::parse(hashed.expose()), Ok(hashed));
    }
}

//! express-session's signed cookie value, so Rust and Node apps can share one login.
//!
//! express-session stores `s:` + id + `.` + base64(HMAC-SHA256(secret, id)) without `=`
//! padding (the `cookie-signature` package), percent-encoded in the `Set-Cookie` header.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::id::SessionId;

type HmacSha256 = Hmac<Sha256>;

/// What `encodeURIComponent` leaves alone; express-session encodes the cookie with it.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Signs and verifies express-session cookie values with a list of secrets: the first
/// signs, every one verifies, so a secret can be rotated without logging anybody out.
///
/// Signatures are checked in constant time (`hmac`'s `verify_slice`).
///
/// ```
/// use session_core::{SessionId, SignedCookie};
///
/// let cookies = SignedCookie::new(["new secret", "keyboard cat"]).unwrap();
/// let id = SessionId::generate();
/// let value = cookies.sign(&id);            // "s:<id>.<signature>"
/// assert_eq!(cookies.verify(&value), Some(id.clone()));
/// assert_eq!(cookies.verify(&cookies.sign_encoded(&id)), Some(id)); // as in Set-Cookie
/// ```
#[derive(Clone)]
pub struct SignedCookie {
    keys: Vec<HmacSha256>,
}

impl fmt::Debug for SignedCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedCookie({} secrets, redacted)", self.keys.len())
    }
}

impl SignedCookie {
    /// Secrets in order: the first signs, all verify. At least one, none empty.
    pub fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> Result<Self> {
        let keys = secrets
            .into_iter()
            .map(|secret| match secret.as_ref() {
                [] => Err(Error::Config("an empty cookie secret signs nothing".into())),
                bytes => HmacSha256::new_from_slice(bytes)
                    .map_err(|err| Error::Config(format!("cookie secret: {err}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(Error::Config("give at least one cookie secret".into()));
        }
        Ok(Self { keys })
    }

    /// The cookie value express-session writes for `id`, before percent-encoding.
    pub fn sign(&self, id: &SessionId) -> String {
        let mut mac = self.keys[0].clone();
        mac.update(id.expose().as_bytes());
        let signature = STANDARD_NO_PAD.encode(mac.finalize().into_bytes());
        format!("s:{}.{signature}", id.expose())
    }

    /// [`SignedCookie::sign`] percent-encoded as express-session puts it in `Set-Cookie`.
    pub fn sign_encoded(&self, id: &SessionId) -> String {
        utf8_percent_encode(&self.sign(id), URI_COMPONENT).to_string()
    }

    /// The session id in a cookie value (percent-encoded or not), when its signature
    /// verifies under one of the secrets and the id is valid; `None` otherwise.
    pub fn verify(&self, value: &str) -> Option<SessionId> {
        let decoded = percent_decode_str(value).decode_utf8().ok()?;
        let (id, signature) = decoded.strip_prefix("s:")?.rsplit_once('.')?;
        let signature = STANDARD_NO_PAD.decode(signature).ok()?;
        let valid = self.keys.iter().any(|key| {
            let mut mac = key.clone();
            mac.update(id.as_bytes());
            mac.verify_slice(&signature).is_ok()
        });
        if valid {
            SessionId::parse(id).ok()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "kgXGR3v6_Dz0tYcjSa-c8WoPLhDIb6Qn";
    // Produced by the npm package cookie-signature 1.0.7 and cookie 0.7 (express-session's).
    const NODE_SIGNED: &str =
        "s:kgXGR3v6_Dz0tYcjSa-c8WoPLhDIb6Qn.gcf7cP4UNyUZOt4j6+Js+weAg5qDKAvEWOyimQU94R4";
    const NODE_HEADER: &str =
        "s%3AkgXGR3v6_Dz0tYcjSa-c8WoPLhDIb6Qn.gcf7cP4UNyUZOt4j6%2BJs%2BweAg5qDKAvEWOyimQU94R4";
    const NODE_OLD_SECRET: &str =
        "s:kgXGR3v6_Dz0tYcjSa-c8WoPLhDIb6Qn.BGGwQrkXCm0HUtf0KbsdJfBVle4rJ01r0EhlnJVz2YY";

    #[test]
    fn matches_node_byte_for_byte() {
        let cookies = SignedCookie::new(["keyboard cat"]).unwrap();
        let id = SessionId::parse(ID).unwrap();
        assert_eq!(cookies.sign(&id), NODE_SIGNED);
        assert_eq!(cookies.sign_encoded(&id), NODE_HEADER);
        assert_eq!(cookies.verify(NODE_SIGNED), Some(id.clone()));
        assert_eq!(cookies.verify(NODE_HEADER), Some(id));
    }

    #[test]
    fn rotation_signs_with_the_first_and_verifies_with_all() {
        let rotated = SignedCookie::new(["keyboard cat", "old secret"]).unwrap();
        let id = SessionId::parse(ID).unwrap();
        assert_eq!(rotated.verify(NODE_OLD_SECRET), Some(id.clone()));
        assert_eq!(rotated.sign(&id), NODE_SIGNED);
        let retired = SignedCookie::new(["keyboard cat"]).unwrap();
        assert_eq!(retired.verify(NODE_OLD_SECRET), None);
    }

    #[test]
    fn forgeries_and_garbage_are_refused() {
        let cookies = SignedCookie::new(["keyboard cat"]).unwrap();
        let tampered = NODE_SIGNED.replace("kgXG", "kgXH");
        for bad in [
            "",
            "s:",
            "s:.",
            ID,
            &tampered,
            &NODE_SIGNED[2..],
            "s:kgXGR3v6_Dz0tYcjSa-c8WoPLhDIb6Qn.",
            "s:kgXGR3v6_Dz0tYcjSa-c8WoPLhDIb6Qn.gcf7cP4UNyUZOt4j6+Js+weAg5qDKAvEWOyimQU94R",
            "s:bad id.gcf7cP4UNyUZOt4j6+Js+weAg5qDKAvEWOyimQU94R4",
            "%ff%fe",
        ] {
            assert_eq!(cookies.verify(bad), None, "{bad:?} verified");
        }
        assert!(SignedCookie::new(Vec::<String>::new()).is_err());
        assert!(SignedCookie::new([""]).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let cookies = SignedCookie::new(["keyboard cat"]).unwrap();
        assert!(!format!("{cookies:?}").contains("keyboard"));
    }
}

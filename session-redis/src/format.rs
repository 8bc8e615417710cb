//! What a session key holds: the one place the stored formats differ. The store calls
//! [`Format::encode`] / [`Format::decode`] and runs the script variant [`Format`] names;
//! everything else (keys, owner index, rename, revocation) is shared.

use bytes::Bytes;
use session_core::express::{js_iso, object};
use session_core::{Error, Record, Result, SessionId, StoreOptions, codec, from_unix_millis};
use time::Duration;

use crate::scripts::ScriptId;

/// What a session key holds.
///
/// ```no_run
/// # async fn demo() -> session_core::Result<()> {
/// use session_redis::{Format, RedisStore};
///
/// // Read and write the sessions of an express-session + connect-redis app.
/// let store = RedisStore::builder()
///     .url("redis://127.0.0.1:6379")
///     .format(Format::ExpressSession) // or .express_session()
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// session-core's versioned record ([`session_core::codec::encode`]): the default.
    #[default]
    Native,
    /// What express-session with connect-redis stores, so a Node app and this store share
    /// sessions: see the crate docs, "Sharing sessions with express-session".
    ExpressSession,
}

/// The top-level field holding this store's metadata in an express-session value.
pub const EXPRESS_META_FIELD: &str = object::META_FIELD;
/// connect-redis's TTL for a session whose cookie has no `expires` (a browser-session
/// cookie): one day. Used for such a value stored without any Redis expiry.
const CONNECT_REDIS_DEFAULT_TTL: Duration = Duration::DAY;

/// An encoded record: the value to store and the extra script arguments the format needs.
pub(crate) struct Encoded {
    /// The whole value, as `insert` stores it.
    pub(crate) value: Bytes,
    /// The version written in it (the record's + 1).
    pub(crate) version: u64,
    /// Where that version's digits start in `value`, so `set` can write another version
    /// there (the `Set` scripts never reuse a version).
    pub(crate) version_at: usize,
    /// Appended to the `Update` / `Set` script arguments: for express-session, the length
    /// of the value's `{"cookie":{...}` head and the new `cookie.expires`, so the script can
    /// keep the stored cookie object in place of the default one, then the seal of the
    /// value the record was read as ([`object::read_seal`], empty for none), which the
    /// update script requires the stored value to have.
    pub(crate) extra: Vec<Bytes>,
}

impl Format {
    /// `record`'s next version as the value a write stores, checked against the payload
    /// limit.
    pub(crate) fn encode(self, record: &Record, options: &StoreOptions) -> Result<Encoded> {
        match self {
            Self::Native => {
                let value = codec::encode(record, options)?;
                // The codec writes `{"format":N,"version":V,...` (the scripts' fast path
                // relies on it too; a unit test in `scripts` guards it).
                let version_at =
                    format!(r#"{{"format":{},"version":"#, codec::CURRENT_FORMAT).len();
                Ok(Encoded {
                    value: value.into(),
                    version: record.version() + 1,
                    version_at,
                    extra: Vec::new(),
                })
            }
            Self::ExpressSession => encode_express(record, options),
        }
    }

    /// The record stored under `id`: `raw` is the value, `expiry` the key's absolute expiry
    /// in Unix ms as the server reported it (`None` when the format doesn't need it, or the
    /// key has no expiry).
    pub(crate) fn decode(self, id: &SessionId, raw: &[u8], expiry: Option<i64>) -> Result<Record> {
        match self {
            Self::Native => codec::decode(id, raw),
            Self::ExpressSession => decode_express(id, raw, expiry),
        }
    }

    /// The seal of `value`, a value this format just encoded (`None` in the native
    /// format, which has none): what the record's next compare-and-swap expects.
    pub(crate) fn written_seal(self, value: &[u8]) -> Option<object::Seal> {
        match self {
            Self::Native => None,
            Self::ExpressSession => object::written_seal(value),
        }
    }

    /// Whether a read needs the key's expiry (one script: GET + the expiry) rather than a
    /// plain `GET` / `GETDEL`.
    pub(crate) fn reads_expiry(self) -> bool {
        matches!(self, Self::ExpressSession)
    }

    /// The compare-and-swap script.
    pub(crate) fn update_script(self) -> ScriptId {
        match self {
            Self::Native => ScriptId::Update,
            Self::ExpressSession => ScriptId::ExpressUpdate,
        }
    }

    /// The expiry-moving script.
    pub(crate) fn touch_script(self) -> ScriptId {
        match self {
            Self::Native => ScriptId::Touch,
            Self::ExpressSession => ScriptId::ExpressTouch,
        }
    }

    /// The script `set` runs: it never reuses a version (and in the express-session format
    /// keeps the stored cookie object).
    pub(crate) fn set_script(self) -> ScriptId {
        match self {
            Self::Native => ScriptId::Set,
            Self::ExpressSession => ScriptId::ExpressSet,
        }
    }
}

fn encode_express(record: &Record, options: &StoreOptions) -> Result<Encoded> {
    let encoded = object::encode(record, options)?;
    // The scripts keep the stored cookie object in place of a default or unchanged one
    // (`head` bytes), never in place of one the caller changed (0).
    let head = encoded.cookie_end.unwrap_or(0);
    let seal = object::read_seal(record).map_or_else(Bytes::new, |seal| seal.to_vec().into());
    Ok(Encoded {
        value: encoded.value.into(),
        version: encoded.version,
        version_at: encoded.version_at,
        extra: vec![
            head.to_string().into(),
            js_iso(record.expires_at()).into(),
            seal,
        ],
    })
}

fn decode_express(id: &SessionId, raw: &[u8], expiry: Option<i64>) -> Result<Record> {
    // The key's expiry is the truth (connect-redis's touch only moves it).
    let expires_at = match expiry.filter(|at| *at >= 0) {
        Some(at) => Some(from_unix_millis(at).ok_or_else(|| {
            Error::decode(
                id,
                "not an express-session value: the key's expiry is out of range",
            )
        })?),
        None => None,
    };
    object::decode(id, raw, expires_at, CONNECT_REDIS_DEFAULT_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use session_core::express::object::{FOREIGN_VERSION, SEAL_TAIL};
    use session_core::{now, unix_millis};
    use sha1::{Digest, Sha1};

    #[test]
    fn express_values_round_trip() {
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.insert("user", "alice").unwrap();
        record.insert("big", u64::MAX).unwrap();
        record.set_owner(Some("u1".into()));
        record.set_deadline(Some(now() + time::Duration::hours(2)));
        let encoded = Format::ExpressSession
            .encode(&record, &StoreOptions::default())
            .unwrap();
        let text = String::from_utf8(encoded.value.to_vec()).unwrap();
        let version = &text[encoded.version_at..];
        assert!(
            version.starts_with("1,") || version.starts_with("1}"),
            "{text}"
        );
        assert!(
            text.starts_with(r#"{"cookie":{"originalMaxAge":"#),
            "{text}"
        );
        let head: usize = String::from_utf8(encoded.extra[0].to_vec())
            .unwrap()
            .parse()
            .unwrap();
        // The data starts right after the cookie object, with whichever key the map yields
        // first (serde_json keeps insertion order when a dependency enables preserve_order).
        let first = record.data().keys().next().unwrap();
        assert!(
            text[head..].starts_with(&format!(",\"{first}\":")),
            "{text}"
        );
        let back = Format::ExpressSession
            .decode(
                record.id(),
                &encoded.value,
                Some(unix_millis(record.expires_at())),
            )
            .unwrap();
        let mut expected = record.clone();
        expected.set_version(1);
        assert_eq!(back, expected);

        let mut reserved = record.clone();
        reserved.insert("cookie", json!({})).unwrap();
        assert!(matches!(
            Format::ExpressSession.encode(&reserved, &StoreOptions::default()),
            Err(Error::Encode { .. })
        ));
    }

    #[test]
    fn node_values_decode_at_a_version_of_their_bytes() {
        let id = SessionId::generate();
        let raw = br#"{"cookie":{"originalMaxAge":3600000,"expires":"2026-11-23T13:09:21.835Z","httpOnly":true,"path":"/","sameSite":"lax"},"user":"alice"}"#;
        let record = Format::ExpressSession
            .decode(&id, raw, Some(1_795_439_000_000))
            .unwrap();
        assert!(record.version() >= FOREIGN_VERSION && record.version() <= Record::MAX_VERSION);
        assert_eq!(record.owner(), None);
        assert_eq!(record.data(), json!({"user": "alice"}).as_object().unwrap());
        assert_eq!(unix_millis(record.expires_at()), 1_795_439_000_000);
        // No key expiry: the cookie says.
        let again = Format::ExpressSession.decode(&id, raw, None).unwrap();
        assert_eq!(unix_millis(again.expires_at()), 1_795_439_361_835);
        assert_eq!(
            again.version(),
            record.version(),
            "same bytes, same version"
        );
        let changed = String::from_utf8_lossy(raw).replace("alice", "alicf");
        let changed = Format::ExpressSession
            .decode(&id, changed.as_bytes(), None)
            .unwrap();
        assert_ne!(
            changed.version(),
            record.version(),
            "a change is a new version"
        );
        for bad in [
            &b"[]"[..],
            b"{}",
            br#"{"cookie":1}"#,
            br#"{"cookie":{},"__session_stores":1}"#,
            br#"{"cookie":{},"__session_stores":{"version":1,"owner":7}}"#,
            b"nope",
        ] {
            let err = Format::ExpressSession
                .decode(&id, bad, Some(1))
                .unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "{err}");
            assert_eq!(err.session_id(), Some(&id));
        }
    }

    /// A Rust change of one field writes every other field back as Node wrote it, where
    /// serde_json would write it otherwise.
    #[test]
    fn fields_left_alone_keep_nodes_text() {
        let id = SessionId::generate();
        let raw = r#"{"cookie":{"originalMaxAge":1000,"expires":"2026-11-23T13:09:21.835Z"},"half":"x\udc00y","big":1e+21,"esc":"\u00e9\/","__proto__":{"a":[1,2.50]},"n":1}"#;
        let mut record = Format::ExpressSession
            .decode(&id, raw.as_bytes(), Some(1_795_439_000_000))
            .unwrap();
        assert_eq!(record.data()["half"], json!("x\u{fffd}y"));
        record.insert("n", 2).unwrap();
        let encoded = Format::ExpressSession
            .encode(&record, &StoreOptions::default())
            .unwrap();
        let text = String::from_utf8(encoded.value.to_vec()).unwrap();
        for kept in [
            r#""half":"x\udc00y""#,
            r#""big":1e+21"#,
            r#""esc":"\u00e9\/""#,
            r#""__proto__":{"a":[1,2.50]}"#,
            r#""n":2"#,
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
        // A field the caller changed is written as serde_json writes it.
        record.insert("half", "whole").unwrap();
        let encoded = Format::ExpressSession
            .encode(&record, &StoreOptions::default())
            .unwrap();
        assert!(String::from_utf8_lossy(&encoded.value).contains(r#""half":"whole""#));
    }

    /// Data as deep as Node apps may nest it (up to the shared bound) reads, is written back,
    /// and reads again; deeper is a decode error saying so, not a stack overflow.
    #[test]
    fn deep_node_data_reads_up_to_the_bound() {
        let id = SessionId::generate();
        let deep = |levels: usize| {
            format!(
                r#"{{"cookie":{{}},"deep":{}1{},"n":1}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // The session object is level 1.
        let most = codec::MAX_SHARED_DATA_DEPTH - 1;
        let mut record = Format::ExpressSession
            .decode(&id, deep(most).as_bytes(), Some(1_795_439_000_000))
            .unwrap();
        record.insert("n", 2).unwrap();
        let encoded = Format::ExpressSession
            .encode(&record, &StoreOptions::default())
            .unwrap();
        let back = Format::ExpressSession
            .decode(&id, &encoded.value, Some(1_795_439_000_000))
            .unwrap();
        assert_eq!(back.data()["deep"], record.data()["deep"]);
        let err = Format::ExpressSession
            .decode(&id, deep(most + 1).as_bytes(), None)
            .unwrap_err();
        assert!(err.to_string().contains("levels deep"), "{err}");
        let err = Format::ExpressSession
            .decode(&id, deep(100_000).as_bytes(), None)
            .unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
    }

    /// What this store writes is sealed (it reads back at its version); the same value
    /// with any byte changed, as Node writes it back with a change and our metadata kept,
    /// is not.
    #[test]
    fn a_changed_value_loses_its_seal() {
        let id = SessionId::generate();
        let mut record = Record::with_id(id.clone(), now() + time::Duration::hours(1));
        record.insert("cart", json!(["apple"])).unwrap();
        record.set_version(6);
        let encoded = Format::ExpressSession
            .encode(&record, &StoreOptions::default())
            .unwrap();
        assert!(encoded.value.ends_with(SEAL_TAIL));
        let back = Format::ExpressSession
            .decode(&id, &encoded.value, None)
            .unwrap();
        assert_eq!(back.version(), 7);
        let text = String::from_utf8(encoded.value.to_vec()).unwrap();
        let changed = text.replace("apple", "pear");
        let back = Format::ExpressSession
            .decode(&id, changed.as_bytes(), None)
            .unwrap();
        assert!(back.version() >= FOREIGN_VERSION, "{}", back.version());
        assert_eq!(
            back.get::<Vec<String>>("cart").unwrap(),
            Some(vec!["pear".into()])
        );
        // The seal is SHA-1 over the value with its own digits zero, as Lua's
        // `redis.sha1hex` computes it (the live suites check the two agree).
        let zeroed = format!("{}{}\"}}}}", &text[..text.len() - 43], "0".repeat(40));
        let digest: String = Sha1::digest(zeroed.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(&text[text.len() - 43..text.len() - 3], digest);
    }
}

//! express-session's session object as JSON, the value every Node store keeps: its
//! `cookie` object first, the data's fields, then this project's metadata last.
//!
//! ```text
//! {"cookie":{"originalMaxAge":..,"expires":..},"user":"alice",
//!  "__session_stores":{"version":3,"created_at":..,"owner":"42","digest":"<40 hex>"}}
//! ```
//!
//! express-session writes back fields it does not know, so the metadata (`version`,
//! `created_at`, `deadline`, `owner`) survives a Node write. The `digest` seals the value:
//! the SHA-1 of the whole text with the digest read as zeros. A value whose seal holds has
//! the metadata's version; any other (Node wrote it, or changed it) has a version derived
//! from its bytes ([`version_of`]), so a compare-and-swap based on an earlier read fails
//! rather than overwrite Node's change.

use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use time::{Duration, OffsetDateTime};

use super::{COOKIE_FIELD, cookie_expires, cookie_json};
use crate::codec;
use crate::error::{Error, Result};
use crate::field_texts::FieldTexts;
use crate::id::SessionId;
use crate::options::StoreOptions;
use crate::record::Record;
use crate::time_util::{from_unix_millis, now, unix_millis};

/// The top-level field holding this project's metadata in an express-session value.
pub const META_FIELD: &str = "__session_stores";
/// Where the versions of values this project did not seal start (2^52): see [`version_of`].
pub const FOREIGN_VERSION: u64 = 1 << 52;
/// How every value [`encode`] writes ends: its metadata object last, the 40 hex digits of
/// its seal last in that, then this.
pub const SEAL_TAIL: &[u8] = br#""}}"#;

/// A record encoded as an express-session value.
#[derive(Debug)]
pub struct Encoded {
    /// The whole value.
    pub value: Vec<u8>,
    /// The version written in it (the record's + 1).
    pub version: u64,
    /// Where that version's digits start in `value`, so a last-writer-wins write can put
    /// another version there (then [`seal`] again).
    pub version_at: usize,
    /// Where the cookie object ends (`value[..cookie_end]` is `{"cookie":{..}`), when the
    /// record's cookie is a default or the one it was read with: a store may keep the
    /// stored cookie object in its place (the Node side may have moved its `expires`).
    /// `None` when the caller changed the cookie, which the write must store.
    pub cookie_end: Option<usize>,
}

fn encode_error(record: &Record, reason: impl ToString) -> Error {
    Error::Encode {
        id: record.id().clone(),
        reason: reason.to_string(),
    }
}

/// Encodes `record`'s next version as an express-session session object: see the module
/// docs for the layout.
pub fn encode(record: &Record, options: &StoreOptions) -> Result<Encoded> {
    // Node apps nest deeper than a native record may (see the bound's docs).
    let version = codec::check_writable_to(record, codec::MAX_SHARED_DATA_DEPTH)?;
    for reserved in [COOKIE_FIELD, META_FIELD] {
        if record.data().contains_key(reserved) {
            return Err(encode_error(
                record,
                format!(
                    "`{reserved}` is reserved in the express-session format (the store keeps \
                     it); use another key"
                ),
            ));
        }
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(br#"{"cookie":"#);
    out.extend_from_slice(cookie_json(record).as_bytes());
    let cookie_end = (!cookie_changed(record)).then_some(out.len());
    // The data's fields, spliced in at the top level: `{"a":1,"b":2}` without its braces.
    let data = codec::data_json(record, options)?;
    if data.len() > 2 {
        out.push(b',');
        out.extend_from_slice(&data[1..data.len() - 1]);
    }
    // The metadata object, its version first so `set` can find it: written by hand, since a
    // map's key order depends on serde_json's features.
    out.push(b',');
    serde_json::to_writer(&mut out, META_FIELD).map_err(|err| encode_error(record, err))?;
    out.extend_from_slice(br#":{"version":"#);
    let version_at = out.len();
    out.extend_from_slice(version.to_string().as_bytes());
    let mut meta = Map::new();
    meta.insert(
        "created_at".into(),
        Value::from(unix_millis(record.created_at())),
    );
    if let Some(deadline) = record.deadline() {
        meta.insert("deadline".into(), Value::from(unix_millis(deadline)));
    }
    if let Some(owner) = record.owner() {
        meta.insert("owner".into(), Value::from(owner));
    }
    for (key, value) in &meta {
        out.push(b',');
        serde_json::to_writer(&mut out, key).map_err(|err| encode_error(record, err))?;
        out.push(b':');
        serde_json::to_writer(&mut out, value).map_err(|err| encode_error(record, err))?;
    }
    out.extend_from_slice(br#","digest":""#);
    out.extend_from_slice(&[b'0'; 40]);
    out.extend_from_slice(SEAL_TAIL);
    seal(&mut out);
    Ok(Encoded {
        value: out,
        version,
        version_at,
        cookie_end,
    })
}

/// Whether `record` carries a cookie object other than the one it was read with: a write
/// stores it, rather than keep the stored one.
fn cookie_changed(record: &Record) -> bool {
    let Some(cookie) = record.cookie() else {
        return false;
    };
    let cookie = Value::Object(cookie.clone());
    let rendered = serde_json::to_vec(&cookie).unwrap_or_default();
    record
        .field_texts()
        .and_then(|texts| texts.unchanged(COOKIE_FIELD, &cookie, &rendered))
        .is_none()
}

/// The SHA-1 of `value` with its seal's 40 digits read as zeros, in lowercase hex (what
/// session-redis' scripts compute with `redis.sha1hex`). `value` ends with the seal and
/// [`SEAL_TAIL`].
fn seal_digest(value: &[u8]) -> [u8; 40] {
    let head = &value[..value.len() - 40 - SEAL_TAIL.len()];
    let digest = Sha1::new()
        .chain_update(head)
        .chain_update([b'0'; 40])
        .chain_update(SEAL_TAIL)
        .finalize();
    hex(&digest)
}

fn hex<const N: usize>(bytes: &[u8]) -> [u8; N] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0; N];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    out
}

/// Writes `value`'s seal (its last 40 digits before [`SEAL_TAIL`]): after writing another
/// version at [`Encoded::version_at`].
pub fn seal(value: &mut [u8]) {
    let digest = seal_digest(value);
    let at = value.len() - 40 - SEAL_TAIL.len();
    value[at..at + 40].copy_from_slice(&digest);
}

/// The 40 hex digits of a value's seal.
pub type Seal = [u8; 40];

/// The seal `raw` ends with, when it holds (the value is exactly as this project wrote it);
/// `None` for any other value (Node wrote it, or changed one of ours).
pub fn seal_of(raw: &[u8]) -> Option<Seal> {
    let digest = written_seal(raw)?;
    (seal_digest(raw) == digest).then_some(digest)
}

/// The seal digits `value` ends with, unchecked: for a value [`encode`] (or a store's
/// script) just sealed.
pub fn written_seal(value: &[u8]) -> Option<Seal> {
    if value.len() <= 40 + SEAL_TAIL.len() || !value.ends_with(SEAL_TAIL) {
        return None;
    }
    let at = value.len() - 40 - SEAL_TAIL.len();
    value[at..at + 40].try_into().ok()
}

/// The seal of the value `record` was read as (or its store last wrote it as), when that
/// value was sealed: what a compare-and-swap expects to find besides the version.
///
/// A version alone does not name a value: when Node saves a stale copy of a sealed value
/// byte for byte (express-session's `resave`), that version is stored again, two Rust
/// writers may each write the next version with other content, and a write based on the
/// first would match the second. A seal is a digest of the whole value, so an update that
/// also requires the stored seal to be this one writes only over the value its caller
/// read. `None` for a record without stored texts (built by the caller) or read from a
/// value this project did not seal (whose version, derived from its bytes, names it).
pub fn read_seal(record: &Record) -> Option<Seal> {
    record.field_texts()?.seal().copied()
}

/// Whether `stored` (the live record a compare-and-swap just read) is the value `record`
/// was read as, as far as the version does not already tell: both at the same version,
/// and with [`read_seal`]'s seal when `record` has one.
pub fn is_value_read(record: &Record, stored: &Record) -> bool {
    stored.version() == record.version()
        && read_seal(record).is_none_or(|seal| read_seal(stored) == Some(seal))
}

/// Records that a store wrote `record` as a value sealed with `seal` (`None`: a value whose
/// seal the store does not know), so the record's next compare-and-swap expects that
/// value. The stored field texts stay those it was read with.
pub fn set_written_seal(record: &mut Record, seal: Option<Seal>) {
    if let Some(texts) = record.field_texts() {
        let texts = texts.clone().with_seal(seal);
        record.set_field_texts(Some(texts));
    }
}

/// The version of an express-session value, as a compare-and-swap judges it (the Redis
/// scripts' `version_of` too): the metadata's `version` when the value is as this store wrote it
/// (its seal holds), else one derived from its bytes, so that any change Node made (Node
/// keeps our metadata when it writes a session back) is a new version and a write based on
/// an earlier read fails rather than overwriting it.
pub fn version_of(raw: &[u8], meta: &Map<String, Value>) -> u64 {
    version_sealed(raw, meta, seal_of(raw).is_some())
}

/// [`version_of`], told whether `raw`'s seal holds.
fn version_sealed(raw: &[u8], meta: &Map<String, Value>, sealed: bool) -> u64 {
    let version = meta
        .get("version")
        .and_then(Value::as_u64)
        .filter(|version| *version <= Record::MAX_VERSION);
    match version {
        Some(version) if sealed => version,
        _ => {
            let digest = Sha1::digest(raw);
            let front = digest[..6]
                .iter()
                .fold(0u64, |acc, byte| acc << 8 | u64::from(*byte));
            FOREIGN_VERSION + front
        }
    }
}

/// The record stored as `raw`, an express-session session object, under `id`.
///
/// `expires_at` is when the store says the session ends (a Redis key's expiry, a row's
/// `expire`), the truth when known; without it, the cookie's `expires`, then `now +
/// default_ttl` (what the Node store does for a browser-session cookie).
pub fn decode(
    id: &SessionId,
    raw: &[u8],
    expires_at: Option<OffsetDateTime>,
    default_ttl: Duration,
) -> Result<Record> {
    let bad = |why: &str| Error::decode(id, format!("not an express-session value: {why}"));
    let value: Value = codec::parse_json_nested(id, raw, codec::MAX_SHARED_DATA_DEPTH)?;
    let Value::Object(mut data) = value else {
        return Err(bad("not a JSON object"));
    };
    let Some(Value::Object(cookie)) = data.remove(COOKIE_FIELD) else {
        return Err(bad("no `cookie` object"));
    };
    // A value Node wrote has no metadata: no owner, no creation time (the scripts agree).
    let meta = match data.remove(META_FIELD) {
        None => Map::new(),
        Some(Value::Object(meta)) => meta,
        Some(_) => return Err(bad("`__session_stores` is not an object")),
    };
    let seal = seal_of(raw);
    let version = version_sealed(raw, &meta, seal.is_some());
    let millis = |field: &str| -> Result<Option<OffsetDateTime>> {
        match meta.get(field) {
            None | Some(Value::Null) => Ok(None),
            // An integral float (`1.0`) counts, as in the scripts' Lua numbers.
            Some(value) => value
                .as_i64()
                .or_else(|| {
                    value
                        .as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .and_then(from_unix_millis)
                .map(Some)
                .ok_or_else(|| bad(&format!("`__session_stores.{field}` is not a time"))),
        }
    };
    let created_at = millis("created_at")?;
    let deadline = millis("deadline")?;
    let owner = match meta.get("owner") {
        None | Some(Value::Null) => None,
        Some(Value::String(owner)) => Some(owner.clone()),
        Some(_) => return Err(bad("`__session_stores.owner` is not a string")),
    };
    // The store's expiry is the truth (the Node stores' touch only moves it).
    let expires_at = expires_at
        .or_else(|| cookie_expires(&cookie))
        .unwrap_or_else(|| now() + default_ttl);
    let mut record = Record::with_id(id.clone(), expires_at);
    if let Some(created_at) = created_at {
        record.set_created_at(created_at);
    }
    record.set_deadline(deadline);
    record.set_version(version);
    record.set_owner(owner);
    record.set_data(data);
    record.set_cookie(Some(cookie));
    // Node's JSON.stringify and serde_json differ at the edges (half an emoji, `1e+21`):
    // a write puts back each field the caller left alone exactly as Node wrote it.
    record.set_field_texts(FieldTexts::of_object(raw).map(|texts| texts.with_seal(seal)));
    Ok(record)
}

/// `raw` with this project's metadata appended, when it has none (Node created the
/// session and no write of ours touched it): `created_at` set to `created_at`, the version
/// the value had before ([`version_of`] of its bytes), sealed. A store writes the result
/// in place of `raw` (compare-and-swap on `raw`) the first time it reads such a value, so
/// the session's creation time stays what it first saw (Node writes the metadata back);
/// the version is kept so a write based on a read from before a Node save still fails.
/// `None` when `raw` has metadata, or is not a JSON object.
pub fn stamp(id: &SessionId, raw: &[u8], created_at: OffsetDateTime) -> Option<Vec<u8>> {
    let Ok(Value::Object(session)) =
        codec::parse_json_nested::<Value>(id, raw, codec::MAX_SHARED_DATA_DEPTH)
    else {
        return None;
    };
    if session.contains_key(META_FIELD) {
        return None;
    }
    let body = raw.trim_ascii_end();
    let body = body.strip_suffix(b"}")?;
    let mut out = Vec::with_capacity(raw.len() + 128);
    out.extend_from_slice(body);
    if !session.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(
        format!(
            r#""{META_FIELD}":{{"version":{},"created_at":{},"digest":""#,
            version_of(raw, &Map::new()),
            unix_millis(created_at)
        )
        .as_bytes(),
    );
    out.extend_from_slice(&[b'0'; 40]);
    out.extend_from_slice(SEAL_TAIL);
    seal(&mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_keeps_the_version_and_sets_created_at() {
        let id = SessionId::generate();
        let raw = br#"{"cookie":{"originalMaxAge":null,"expires":null},"user":"alice"} "#;
        let before = decode(&id, raw, None, Duration::DAY).unwrap();
        let at = from_unix_millis(1_795_439_361_835).unwrap();
        let stamped = stamp(&id, raw, at).unwrap();
        let after = decode(&id, &stamped, None, Duration::DAY).unwrap();
        assert_eq!(after.version(), before.version());
        assert!(after.version() >= FOREIGN_VERSION);
        assert_eq!(after.created_at(), at);
        assert_eq!(after.data(), before.data());
        assert_eq!(stamp(&id, &stamped, at), None, "stamped once");
        assert_eq!(stamp(&id, b"[1]", at), None);
    }

    /// The ABA a version alone lets through: the same version stored again with other
    /// content is not the value read.
    #[test]
    fn a_record_expects_the_value_it_was_read_as() {
        let id = SessionId::generate();
        let mut record = Record::with_id(id.clone(), now() + Duration::hours(1));
        record.set_version(1);
        record.insert("cart", "apple").unwrap();
        let first = encode(&record, &StoreOptions::default()).unwrap().value;
        record.insert("cart", "pear").unwrap();
        let second = encode(&record, &StoreOptions::default()).unwrap().value;
        let read = decode(&id, &first, None, Duration::DAY).unwrap();
        let same = decode(&id, &first, None, Duration::DAY).unwrap();
        let other = decode(&id, &second, None, Duration::DAY).unwrap();
        assert_eq!(read.version(), other.version());
        assert_eq!(read_seal(&read), seal_of(&first));
        assert!(is_value_read(&read, &same));
        assert!(!is_value_read(&read, &other), "same version, other value");
        // A record the caller built names no value: the version decides.
        let mut built = Record::with_id(id.clone(), now() + Duration::hours(1));
        built.set_version(2);
        assert!(is_value_read(&built, &other));
        // After a write the record expects what was written.
        let mut written = read.clone();
        set_written_seal(&mut written, written_seal(&second));
        assert!(is_value_read(&written, &other));
        assert!(!is_value_read(&written, &same));
        // A value Node wrote has no seal; its version names its bytes.
        let node = br#"{"cookie":{},"user":"alice"}"#;
        assert_eq!(seal_of(node), None);
        assert_eq!(
            read_seal(&decode(&id, node, None, Duration::DAY).unwrap()),
            None
        );
    }
}

//! The versioned stored format, shared by every backend.
//!
//! Backends that store one value per session (Redis, memory) store [`encode`]'s JSON;
//! backends with columns or fields (PostgreSQL, MongoDB) store [`StoredRecord`]'s fields
//! in their own columns, including `format`. Either way [`decode`] /
//! [`StoredRecord::into_record`] keep reading every format this crate ever wrote, so
//! upgrading never logs anybody out.
//!
//! | format | written by | shape |
//! |---|---|---|
//! | 1 | 0.1 | `{"format":1,"version":n,"created_at":ms,"expires_at":ms,"deadline":ms?,"owner":s?,"data":{..}}` |

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::field_texts::FieldTexts;
use crate::id::SessionId;
use crate::json_text;
use crate::options::StoreOptions;
use crate::record::{Data, Record};
use crate::time_util::{from_unix_millis, unix_millis};

/// The format this version of the crate writes.
pub const CURRENT_FORMAT: u32 = 1;

/// How deeply session data may nest: the data object is level 1, each array or object in it
/// one more. A write of deeper data is an [`Error::Encode`] on every backend and writes
/// nothing, because no backend could read it back: serde_json reads 127 levels, a stored
/// record wraps the data in one or two more, and MongoDB keeps at most 100.
pub const MAX_DATA_DEPTH: usize = 96;

/// How deeply session data may nest in a format shared with Node (express-session), which
/// stores what JavaScript apps put in a session, however deep: [`MAX_DATA_DEPTH`]'s bound
/// does not apply there (the value is read by serde_json without its recursion limit and by
/// Redis' cjson, which reads 1,000 levels), this one does. Far above real sessions (a few
/// levels), it keeps every step on deep data (parse, compare, clone, write, drop: about
/// 1 KiB of stack per level in a debug build) within half of a tokio worker's 2 MiB stack.
pub const MAX_SHARED_DATA_DEPTH: usize = 512;

/// Checks what every write of `record` needs, before anything is encoded: data nested at
/// most [`MAX_DATA_DEPTH`] levels, and a next version within [`Record::MAX_VERSION`].
/// Returns that next version. Backends with an encoder of their own call it first.
pub fn check_writable(record: &Record) -> Result<u64> {
    check_writable_to(record, MAX_DATA_DEPTH)
}

/// [`check_writable`] with another depth bound, for a format that reads deeper data back
/// (see [`MAX_SHARED_DATA_DEPTH`]).
pub fn check_writable_to(record: &Record, max_depth: usize) -> Result<u64> {
    if let Some(depth) = too_deep(record.data(), max_depth) {
        return Err(Error::Encode {
            id: record.id().clone(),
            reason: format!(
                "the data is nested more than {max_depth} levels deep (at least {depth}), \
                 more than a stored record can be read back with; flatten it"
            ),
        });
    }
    record.next_version()
}

/// `Some(depth)` when `data` nests deeper than `max_depth`. Iterative, and stops at the
/// first level past the limit, so data built deeper than any stack holds is measured
/// safely.
fn too_deep(data: &Data, max_depth: usize) -> Option<usize> {
    let mut pending: Vec<(&Value, usize)> = data.values().map(|value| (value, 1)).collect();
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let depth = depth + 1;
        if depth > max_depth {
            return Some(depth);
        }
        pending.extend(children.map(|child| (child, depth)));
    }
    None
}

/// Parses JSON that a store read back, as `T`, or [`Error::Decode`] naming `id`.
///
/// JavaScript strings may hold lone UTF-16 surrogates (half an emoji), which JSON.stringify
/// writes as `\ud83d`; Rust strings can't hold them, so each such escape reads as U+FFFD
/// (�) instead of failing the whole record. A value Rust wrote never has one.
pub fn parse_json<T: DeserializeOwned>(id: &SessionId, text: &[u8]) -> Result<T> {
    parse_lenient(text).map_err(|err| Error::decode(id, err))
}

/// [`parse_json`] for a format shared with Node: `text` may nest up to `max_depth` levels
/// (see [`MAX_SHARED_DATA_DEPTH`]); deeper is [`Error::Decode`] saying so, found before
/// parsing by counting brackets, so no stack is at risk.
pub fn parse_json_nested<T: DeserializeOwned>(
    id: &SessionId,
    text: &[u8],
    max_depth: usize,
) -> Result<T> {
    let depth = nesting(text);
    if depth > max_depth {
        return Err(Error::decode(
            id,
            format!(
                "the value nests {depth} levels deep, more than the {max_depth} this store \
                 reads; flatten what the app puts in the session"
            ),
        ));
    }
    parse_with(text, true).map_err(|err| Error::decode(id, err))
}

/// How deeply `text`'s arrays and objects nest (brackets inside strings don't count), found
/// by counting, so safe at any depth: what [`parse_json_nested`] checks first.
pub fn nesting(text: &[u8]) -> usize {
    json_text::nesting(text)
}

/// [`parse_json`] without an id to name.
pub(crate) fn parse_lenient<T: DeserializeOwned>(text: &[u8]) -> serde_json::Result<T> {
    parse_with(text, false)
}

/// Parses `text`, reading lone surrogates as U+FFFD; `unlimited`: without serde_json's
/// recursion limit (the caller bounded the depth).
pub(crate) fn parse_with<T: DeserializeOwned>(
    text: &[u8],
    unlimited: bool,
) -> serde_json::Result<T> {
    match parse_exact(text, unlimited) {
        Ok(value) => Ok(value),
        Err(err) => match replace_lone_surrogates(text) {
            Some(repaired) => parse_exact(&repaired, unlimited),
            None => Err(err),
        },
    }
}

fn parse_exact<T: DeserializeOwned>(text: &[u8], unlimited: bool) -> serde_json::Result<T> {
    // One UTF-8 check of the whole value up front is cheaper than serde_json's check of
    // every string in it; invalid bytes still go to `from_slice` for its positioned error.
    match std::str::from_utf8(text) {
        Ok(text) => finish(serde_json::Deserializer::from_str(text), unlimited),
        Err(_) => finish(serde_json::Deserializer::from_slice(text), unlimited),
    }
}

fn finish<'de, R: serde_json::de::Read<'de>, T: DeserializeOwned>(
    mut de: serde_json::Deserializer<R>,
    unlimited: bool,
) -> serde_json::Result<T> {
    if unlimited {
        de.disable_recursion_limit();
    }
    let value = T::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// `text` with every `\uXXXX` escape of a lone UTF-16 surrogate replaced by `\ufffd`, or
/// `None` when it has none.
fn replace_lone_surrogates(text: &[u8]) -> Option<Vec<u8>> {
    let unit = |at: usize| -> Option<u16> {
        let hex = text.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    let mut out = Vec::with_capacity(text.len());
    let (mut copied, mut replaced) = (0, false);
    for token in json_text::tokens(text, 0) {
        let json_text::Token::String(string) = token else {
            continue;
        };
        let mut at = string.start + 1;
        while at < string.end {
            if text[at] != b'\\' {
                at += 1;
                continue;
            }
            match unit(at) {
                Some(0xD800..=0xDBFF)
                    if unit(at + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
                {
                    at += 12;
                }
                Some(0xD800..=0xDFFF) => {
                    out.extend_from_slice(&text[copied..at]);
                    out.extend_from_slice(b"\\ufffd");
                    replaced = true;
                    at += 6;
                    copied = at;
                }
                // Any other escape is skipped whole, so an escaped quote or backslash never
                // ends the string early.
                _ => at += 2,
            }
        }
    }
    out.extend_from_slice(&text[copied..]);
    replaced.then_some(out)
}

/// A record's stored fields; times are Unix milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRecord<'a> {
    /// The stored format's number, [`CURRENT_FORMAT`] when written by this crate.
    pub format: u32,
    /// The record's version.
    pub version: u64,
    /// Creation time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// The absolute deadline, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// The owner, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Cow<'a, str>>,
    /// The session data.
    pub data: Cow<'a, Data>,
}

impl<'a> StoredRecord<'a> {
    /// The fields a write of `record` stores: its next version (see [`Record::version`]),
    /// after [`check_writable`].
    pub fn next_of(record: &'a Record) -> Result<Self> {
        Ok(Self {
            format: CURRENT_FORMAT,
            version: check_writable(record)?,
            created_at: unix_millis(record.created_at()),
            expires_at: unix_millis(record.expires_at()),
            deadline: record.deadline().map(unix_millis),
            owner: record.owner().map(Cow::Borrowed),
            data: Cow::Borrowed(record.data()),
        })
    }

    /// The record these fields describe, or [`Error::Decode`] naming `id`.
    pub fn into_record(self, id: &SessionId) -> Result<Record> {
        match self.format {
            1 => {}
            newer if newer > CURRENT_FORMAT => {
                return Err(Error::decode(
                    id,
                    format!(
                        "stored format {newer} was written by a newer session-stores, \
                         this one reads up to {CURRENT_FORMAT}; upgrade it"
                    ),
                ));
            }
            unknown => {
                return Err(Error::decode(
                    id,
                    format!("unknown stored format {unknown}"),
                ));
            }
        }
        if self.version > Record::MAX_VERSION {
            return Err(Error::decode(
                id,
                format!(
                    "version {} is above the maximum {}",
                    self.version,
                    Record::MAX_VERSION
                ),
            ));
        }
        let time = |millis: i64, field: &str| {
            from_unix_millis(millis)
                .ok_or_else(|| Error::decode(id, format!("{field} {millis} is out of range")))
        };
        let mut record = Record::with_id(id.clone(), time(self.expires_at, "expires_at")?);
        record.set_created_at(time(self.created_at, "created_at")?);
        record.set_deadline(self.deadline.map(|d| time(d, "deadline")).transpose()?);
        record.set_version(self.version);
        record.set_owner(self.owner.map(Cow::into_owned));
        record.set_data(self.data.into_owned());
        Ok(record)
    }
}

/// `record` as the JSON a write stores (its next version), after [`check_writable`] and
/// with its data checked against the payload limit ([`data_json`]).
///
/// The fields come in [`StoredRecord`]'s order, `format` and `version` first, which
/// backends may rely on to read them off the front of a stored value.
pub fn encode(record: &Record, options: &StoreOptions) -> Result<Vec<u8>> {
    let version = check_writable(record)?;
    let data = data_json(record, options)?;
    let mut out = Vec::with_capacity(data.len() + 160);
    out.extend_from_slice(
        format!(
            r#"{{"format":{CURRENT_FORMAT},"version":{version},"created_at":{},"expires_at":{}"#,
            unix_millis(record.created_at()),
            unix_millis(record.expires_at()),
        )
        .as_bytes(),
    );
    if let Some(deadline) = record.deadline() {
        out.extend_from_slice(format!(r#","deadline":{}"#, unix_millis(deadline)).as_bytes());
    }
    if let Some(owner) = record.owner() {
        out.extend_from_slice(br#","owner":"#);
        serde_json::to_writer(&mut out, owner).map_err(|err| encode_error(record, err))?;
    }
    out.extend_from_slice(br#","data":"#);
    out.extend_from_slice(&data);
    out.push(b'}');
    Ok(out)
}

/// `record`'s data as JSON, checked against the payload limit: what
/// [`StoreOptions::max_payload_bytes`] measures, on every backend.
///
/// A field the record was read with ([`Record::field_texts`]) and still holds the same value
/// is written as its stored text, byte for byte.
pub fn data_json(record: &Record, options: &StoreOptions) -> Result<Vec<u8>> {
    let json = match record.field_texts() {
        None => serde_json::to_vec(record.data()).map_err(|err| encode_error(record, err))?,
        Some(texts) => data_keeping_texts(record, texts)?,
    };
    options.check_size(record.id(), json.len())?;
    Ok(json)
}

fn data_keeping_texts(record: &Record, texts: &FieldTexts) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    let mut rendered = Vec::new();
    out.push(b'{');
    for member in texts.shadowed() {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(member);
    }
    for (key, value) in record.data() {
        if out.len() > 1 {
            out.push(b',');
        }
        rendered.clear();
        serde_json::to_writer(&mut rendered, value).map_err(|err| encode_error(record, err))?;
        match texts.unchanged(key, value, &rendered) {
            Some(member) => out.extend_from_slice(member),
            None => {
                serde_json::to_writer(&mut out, key).map_err(|err| encode_error(record, err))?;
                out.push(b':');
                out.extend_from_slice(&rendered);
            }
        }
    }
    out.push(b'}');
    Ok(out)
}

/// Only `record`'s data as JSON text, after [`check_writable`] and checked against the
/// payload limit, for backends that keep the other fields in columns of their own.
pub fn encode_data(record: &Record, options: &StoreOptions) -> Result<String> {
    check_writable(record)?;
    let json = data_json(record, options)?;
    // serde_json writes UTF-8.
    String::from_utf8(json).map_err(|err| encode_error(record, err))
}

fn encode_error(record: &Record, err: impl std::fmt::Display) -> Error {
    Error::Encode {
        id: record.id().clone(),
        reason: err.to_string(),
    }
}

/// Decodes what [`encode`] stored; [`Error::Decode`] naming `id` for anything else.
pub fn decode(id: &SessionId, bytes: &[u8]) -> Result<Record> {
    parse_json::<StoredRecord<'static>>(id, bytes)?.into_record(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time_util::now;
    use serde_json::json;

    fn sample() -> Record {
        let mut record = Record::new(now() + time::Duration::hours(1));
        record
            .insert("user", json!({"id": u64::MAX, "name": "Zoë 🦀"}))
            .unwrap();
        record.set_owner(Some("user-7".into()));
        record.set_deadline(Some(now() + time::Duration::hours(2)));
        record
    }

    #[test]
    fn round_trip_advances_the_version() {
        let record = sample();
        let bytes = encode(&record, &StoreOptions::default()).unwrap();
        let back = decode(record.id(), &bytes).unwrap();
        let mut expected = record.clone();
        expected.set_version(1);
        assert_eq!(back, expected);
    }

    #[test]
    fn every_older_format_still_decodes() {
        // One fixture per format ever written; never edit them, add new ones.
        let id = SessionId::parse("kgXGR3v6_Dz0tYcjSa-c8WoPLhDIb6Qn").unwrap();
        let v1 = decode(&id, include_bytes!("../fixtures/format-1.json")).unwrap();
        assert_eq!(v1.version(), 3);
        assert_eq!(v1.owner(), Some("user-42"));
        assert_eq!(v1.get::<String>("name").unwrap().as_deref(), Some("Ada"));
        assert_eq!(unix_millis(v1.expires_at()), 1_900_000_000_000);
        assert_eq!(v1.deadline().map(unix_millis), Some(1_900_000_600_000));
    }

    #[test]
    fn corrupt_records_name_the_id() {
        let id = SessionId::generate();
        for bad in [
            &b"not json"[..],
            b"\xff\xfe\x00garbage",
            br#"{"format":1,"version":1,"created_at":0,"expires_at":0,"data":[1,2]}"#,
            br#"{"format":99,"version":1,"created_at":0,"expires_at":0,"data":{}}"#,
            br#"{"format":1,"version":1,"created_at":0,"expires_at":99999999999999999,"data":{}}"#,
            b"[]",
            b"{\"format\":1,\"version\":1,\"created_at\":0,\"expires_at\":0,\"data\":{\"k\":\"\xff\"}}",
        ] {
            let err = decode(&id, bad).unwrap_err();
            assert_eq!(err.session_id(), Some(&id), "{err}");
            assert!(matches!(err, Error::Decode { .. }));
        }
    }

    #[test]
    fn huge_numbers_keep_their_value_through_a_rewrite() {
        // Found by the record_json fuzz target: without exact float parsing a 73-digit
        // integer was rounded differently on each read, so every rewrite changed it.
        let id = SessionId::generate();
        let stored = br#"{"format":1,"version":1,"created_at":0,"expires_at":1900000000000,
            "data":{"n":3222222222222222222222222222222222222222222222222222222222222222222222222}}"#;
        let first = decode(&id, stored).unwrap();
        let again = decode(&id, &encode(&first, &StoreOptions::default()).unwrap()).unwrap();
        assert_eq!(again.data(), first.data());
    }

    #[test]
    fn oversized_payloads_are_rejected() {
        let mut record = sample();
        record.insert("blob", "x".repeat(2000)).unwrap();
        let options = StoreOptions {
            max_payload_bytes: 1000,
            ..StoreOptions::default()
        };
        assert!(matches!(
            encode(&record, &options),
            Err(Error::PayloadTooLarge { .. })
        ));
        assert!(matches!(
            encode_data(&record, &options),
            Err(Error::PayloadTooLarge { .. })
        ));
    }

    fn nested(levels: usize) -> Record {
        // `levels` of data: the data object, then `levels - 1` arrays.
        let mut value = json!(1);
        for _ in 1..levels {
            value = Value::Array(vec![value]);
        }
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.insert("deep", value).unwrap();
        record
    }

    #[test]
    fn data_as_deep_as_allowed_reads_back_and_deeper_is_refused() {
        let options = StoreOptions::default();
        let deepest = nested(MAX_DATA_DEPTH);
        let bytes = encode(&deepest, &options).unwrap();
        assert_eq!(decode(deepest.id(), &bytes).unwrap().data(), deepest.data());
        let too_deep = nested(MAX_DATA_DEPTH + 1);
        for err in [
            encode(&too_deep, &options).unwrap_err(),
            encode_data(&too_deep, &options).unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::Encode { reason, .. } if reason.contains("nested")),
                "{err}"
            );
        }
        // Far deeper than any stack: measured without recursion.
        let mut value = json!(0);
        for _ in 0..200_000 {
            value = Value::Array(vec![value]);
        }
        let mut record = Record::new(now());
        record.data_mut().insert("x".into(), value);
        assert!(check_writable(&record).is_err());
        std::mem::forget(record); // serde_json's own drop of it would recurse
    }

    #[test]
    fn lone_surrogates_read_as_replacement_characters() {
        let id = SessionId::generate();
        let stored = br#"{"format":1,"version":1,"created_at":0,"expires_at":1900000000000,
            "data":{"cut":"ab\ud83d","low":"\ude00x","pair":"\ud83d\ude00","esc":"\\ud800\"q"}}"#;
        let record = decode(&id, stored).unwrap();
        assert_eq!(
            record.get::<String>("cut").unwrap().as_deref(),
            Some("ab\u{fffd}")
        );
        assert_eq!(
            record.get::<String>("low").unwrap().as_deref(),
            Some("\u{fffd}x")
        );
        assert_eq!(record.get::<String>("pair").unwrap().as_deref(), Some("😀"));
        // An escaped backslash followed by `ud800` is text, not an escape.
        assert_eq!(
            record.get::<String>("esc").unwrap().as_deref(),
            Some("\\ud800\"q")
        );
        assert!(matches!(
            decode(&id, br#"{"format":1,"#),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn versions_stop_at_the_maximum() {
        let mut record = sample();
        record.set_version(Record::MAX_VERSION - 1);
        let bytes = encode(&record, &StoreOptions::default()).unwrap();
        assert_eq!(
            decode(record.id(), &bytes).unwrap().version(),
            Record::MAX_VERSION
        );
        record.set_version(Record::MAX_VERSION);
        assert!(matches!(
            encode(&record, &StoreOptions::default()),
            Err(Error::Encode { .. })
        ));
        let id = SessionId::generate();
        let above = format!(
            r#"{{"format":1,"version":{},"created_at":0,"expires_at":0,"data":{{}}}}"#,
            Record::MAX_VERSION + 1
        );
        assert!(matches!(
            decode(&id, above.as_bytes()),
            Err(Error::Decode { .. })
        ));
    }
}

//! The stored text of a record's top-level data fields, kept from a read so that a write
//! puts back what the caller did not change byte for byte.
//!
//! A store that shares its records with another program reads that program's JSON, and
//! serde_json can't always write a value back as that program wrote it: a JavaScript
//! string may hold half an emoji (a lone UTF-16 surrogate, written `\ud83d`), which a Rust
//! string can't, so it reads as U+FFFD; Node writes `1e21` as `1e+21` and may escape what
//! serde_json would not. With [`FieldTexts`] on the record,
//! [`codec::data_json`](crate::codec::data_json) writes each field whose value is still what
//! its stored text reads as with that text, and only the fields the caller changed with
//! serde_json.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;

use crate::codec::{parse_lenient, parse_with};
use crate::json_text::{skip_space, string_end, value_end};

/// The top-level members of a stored JSON object, as text: see the module docs.
#[derive(Clone)]
pub struct FieldTexts {
    text: Arc<[u8]>,
    members: Arc<HashMap<String, Member>>,
    /// Whole members whose keys read as another member's key in Rust but are different keys
    /// to JavaScript (they differ in lone surrogates: `"\ud800"` and `"\ud801"` both read as
    /// U+FFFD): the caller never saw them, and a write puts them back as they were.
    shadowed: Arc<[Range<usize>]>,
    /// The seal of the express-session value the record was read as, or a store last wrote
    /// it as (see [`express::object`](crate::express::object)): a compare-and-swap
    /// checks the stored value still has it, not only the version.
    seal: Option<[u8; 40]>,
}

#[derive(Debug, Clone)]
struct Member {
    key: Range<usize>,
    value: Range<usize>,
}

impl FieldTexts {
    /// The members of `text`, a JSON object (one that [`parse_json`](crate::codec::parse_json) accepts), keyed by
    /// their keys as they read (a lone surrogate in a key as U+FFFD, like in values).
    /// `None` when `text` is not a JSON object. Where a key repeats, the last one counts,
    /// as for the parsed value.
    pub fn of_object(text: &[u8]) -> Option<Self> {
        let mut members: HashMap<String, Member> = HashMap::new();
        // Every member that lost its name to a later one, by its key as JavaScript reads it
        // (the last of each, as JSON.parse keeps).
        let mut lost: Vec<(Vec<u16>, Range<usize>)> = Vec::new();
        for (key, value) in top_level_members(text)? {
            let name: String = parse_lenient(&text[key.clone()]).ok()?;
            if let Some(earlier) = members.insert(name, Member { key, value }) {
                let js_key = utf16_key(&text[earlier.key.clone()])?;
                lost.retain(|(other, _)| *other != js_key);
                lost.push((js_key, earlier.key.start..earlier.value.end));
            }
        }
        // A lost member whose key is the winner's own to JavaScript too is a plain duplicate:
        // JSON.parse drops it as well.
        let mut winners = Vec::new();
        for member in members.values() {
            winners.push(utf16_key(&text[member.key.clone()])?);
        }
        let shadowed: Vec<Range<usize>> = lost
            .into_iter()
            .filter(|(js_key, _)| !winners.contains(js_key))
            .map(|(_, member)| member)
            .collect();
        Some(Self {
            text: Arc::from(text),
            members: Arc::new(members),
            shadowed: shadowed.into(),
            seal: None,
        })
    }

    /// The seal (40 hex digits) of the express-session value these texts were read from,
    /// or that a store last wrote for the record: see
    /// [`object::read_seal`](crate::express::object::read_seal). `None` for a value this
    /// project did not seal.
    pub fn seal(&self) -> Option<&[u8; 40]> {
        self.seal.as_ref()
    }

    /// These texts with [`Self::seal`] set: for stores, when they decode a value or wrote
    /// one.
    #[must_use]
    pub fn with_seal(mut self, seal: Option<[u8; 40]>) -> Self {
        self.seal = seal;
        self
    }

    /// The stored `"key":value` texts of the members no data key stands for (see the field's
    /// docs): a write puts them back first.
    pub fn shadowed(&self) -> impl Iterator<Item = &[u8]> {
        self.shadowed
            .iter()
            .map(|member| &self.text[member.clone()])
    }

    /// The stored `"key":value` text of the member `key`, when `value` is what its stored
    /// value text reads as (the caller did not change it); `None` otherwise.
    pub fn unchanged(&self, key: &str, value: &Value, rendered: &[u8]) -> Option<&[u8]> {
        let member = self.members.get(key)?;
        let stored = &self.text[member.value.clone()];
        // The common case costs a comparison: serde_json renders it as it was stored.
        let same =
            stored == rendered || parse_with::<Value>(stored, true).is_ok_and(|v| v == *value);
        same.then(|| &self.text[member.key.start..member.value.end])
    }
}

/// Shows how many fields it holds, never their text (session data may be secret).
impl fmt::Debug for FieldTexts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldTexts")
            .field("fields", &self.members.len())
            .finish()
    }
}

/// The byte ranges of each top-level member's key (with its quotes) and value in `text`,
/// or `None` when `text` is not a JSON object. Assumes JSON a parser accepted; it only
/// finds where things are.
fn top_level_members(text: &[u8]) -> Option<Vec<(Range<usize>, Range<usize>)>> {
    let mut at = skip_space(text, 0);
    if text.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(text, at + 1);
    let mut members = Vec::new();
    if text.get(at) == Some(&b'}') {
        return Some(members);
    }
    loop {
        let key_end = string_end(text, at)?;
        let key = at..key_end;
        at = skip_space(text, key_end);
        if text.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_space(text, at + 1);
        let end = value_end(text, start)?;
        members.push((key, start..end));
        at = skip_space(text, end);
        match text.get(at)? {
            b',' => at = skip_space(text, at + 1),
            b'}' => return Some(members),
            _ => return None,
        }
    }
}

/// The JSON string `text` (with its quotes) as JavaScript reads it: UTF-16 code units, lone
/// surrogates kept. `None` for a malformed escape.
fn utf16_key(text: &[u8]) -> Option<Vec<u16>> {
    let inner = std::str::from_utf8(text.get(1..text.len().checked_sub(1)?)?).ok()?;
    let mut units = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buffer = [0; 2];
            units.extend_from_slice(c.encode_utf16(&mut buffer));
            continue;
        }
        let unit = match chars.next()? {
            'b' => 0x08,
            'f' => 0x0c,
            'n' => 0x0a,
            'r' => 0x0d,
            't' => 0x09,
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                u16::from_str_radix(&hex, 16).ok()?
            }
            other => u16::try_from(u32::from(other)).ok()?,
        };
        units.push(unit);
    }
    Some(units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(text: &str) -> FieldTexts {
        FieldTexts::of_object(text.as_bytes()).unwrap()
    }

    #[test]
    fn members_are_found_whatever_they_hold() {
        let text = r#" { "a" : [1, {"b": "}]\"{"}], "\u0063":"x\\", "n":-1.5e+21 ,"e":{}} "#;
        let found: Vec<(String, String)> = top_level_members(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (text[k].to_owned(), text[v].to_owned()))
            .collect();
        assert_eq!(
            found,
            [
                (r#""a""#, r#"[1, {"b": "}]\"{"}]"#),
                (r#""\u0063""#, r#""x\\""#),
                (r#""n""#, "-1.5e+21"),
                (r#""e""#, "{}"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert!(top_level_members(b"[1]").is_none());
        assert_eq!(top_level_members(b"{}").unwrap().len(), 0);
    }

    #[test]
    fn an_unchanged_value_keeps_its_stored_text() {
        let stored = texts(r#"{"half":"a\ud83d","big":1e+21,"plain":[1,2],"\ud800":1}"#);
        let half = json!("a\u{fffd}");
        assert_eq!(
            stored.unchanged("half", &half, br#""a\ufffd""#),
            Some(&br#""half":"a\ud83d""#[..]),
            "a lone surrogate goes back as it came"
        );
        assert_eq!(
            stored.unchanged("big", &json!(1e21), b"1e21"),
            Some(&br#""big":1e+21"#[..])
        );
        assert_eq!(
            stored.unchanged("plain", &json!([1, 2]), b"[1,2]"),
            Some(&br#""plain":[1,2]"#[..])
        );
        assert_eq!(
            stored.unchanged("\u{fffd}", &json!(1), b"1"),
            Some(&br#""\ud800":1"#[..]),
            "a key keeps its text too"
        );
        assert_eq!(stored.unchanged("plain", &json!([1, 3]), b"[1,3]"), None);
        assert_eq!(stored.shadowed().count(), 0);
        assert_eq!(stored.unchanged("other", &json!(1), b"1"), None);
        assert!(!format!("{stored:?}").contains("half"));
    }

    #[test]
    fn keys_only_javascript_tells_apart_are_kept_aside() {
        let stored =
            texts(r#"{"\ud800":"first","\ud801":"second","a":1,"\u0061":2,"\ud800":"third"}"#);
        // "\ud801" is the one Rust sees as U+FFFD's value ("third" came last, but its key
        // is "\ud800" again: JavaScript keeps "third" for "\ud800", "second" for "\ud801").
        let shadowed: Vec<&[u8]> = stored.shadowed().collect();
        assert_eq!(shadowed, [&br#""\ud801":"second""#[..]]);
        // "a" and "\u0061" are one key to both: no member kept aside for it.
        assert_eq!(utf16_key(br#""\u0061""#), utf16_key(br#""a""#));
        assert_ne!(utf16_key(br#""\ud800""#), utf16_key(br#""\ud801""#));
        assert_eq!(
            utf16_key("\"\\n\\\"é\"".as_bytes()),
            Some(vec![0x0a, 0x22, 0xe9])
        );
    }
}

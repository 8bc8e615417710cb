//! The stored text of a record's top-level data fields, kept from a read so that a write
//! puts back what the caller did not change byte for byte.
//!
//! A store that shares its records with another program reads that program's JSON, and
//! serde_json can't always write a value back as that program wrote it: a JavaScript
//! string may hold half an emoji (a lone UTF-16 surrogate, written `\ud83d`), which a Rust
//! string can't, so it reads as U+FFFD; Node writes `1e21` as `1e+21` and may escape what
//! serde_json would not. With [`FieldTexts`] on the record, [`codec::data_json`]
//! (crate::codec::data_json) writes each field whose value is still what its stored text
//! reads as with that text, and only the fields the caller changed with serde_json.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;

use crate::codec::{parse_lenient, parse_with};

/// The top-level members of a stored JSON object, as text: see the module docs.
#[derive(Clone)]
pub struct FieldTexts {
    text: Arc<[u8]>,
    members: Arc<HashMap<String, Member>>,
}

#[derive(Debug, Clone)]
struct Member {
    key: Range<usize>,
    value: Range<usize>,
}

impl FieldTexts {
    /// The members of `text`, a JSON object (one that [`parse_json`] accepts), keyed by
    /// their keys as they read (a lone surrogate in a key as U+FFFD, like in values).
    /// `None` when `text` is not a JSON object. Where a key repeats, the last one counts,
    /// as for the parsed value.
    pub fn of_object(text: &[u8]) -> Option<Self> {
        let mut members = HashMap::new();
        for (key, value) in top_level_members(text)? {
            let name: String = parse_lenient(&text[key.clone()]).ok()?;
            members.insert(name, Member { key, value });
        }
        Some(Self {
            text: Arc::from(text),
            members: Arc::new(members),
        })
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

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while text
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// Where the string starting at `at` (its opening quote) ends, past its closing quote.
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match text.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Where the value starting at `at` ends. Nesting is counted, not recursed into, so any
/// depth is safe.
fn value_end(text: &[u8], at: usize) -> Option<usize> {
    match text.get(at)? {
        b'"' => string_end(text, at),
        b'{' | b'[' => {
            let (mut depth, mut i) = (0usize, at);
            loop {
                match text.get(i)? {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = at;
            while text
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
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
        assert_eq!(stored.unchanged("other", &json!(1), b"1"), None);
        assert!(!format!("{stored:?}").contains("half"));
    }
}

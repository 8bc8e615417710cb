//! The exact JSON ↔ BSON mapping for session data, and the reversible escaping of keys.
//!
//! | JSON | BSON | back |
//! |---|---|---|
//! | `null`, `true`/`false`, string | Null, Boolean, String | the same |
//! | integer in `i64` range | Int64 | the same integer |
//! | integer above `i64::MAX` | — ([`Error::Encode`](session_core::Error::Encode), nothing written) | — |
//! | float | Double | the same `f64` (`3.0` stays a float) |
//! | array, object | Array, embedded Document | the same |
//!
//! Reading also accepts Int32 (an integer). Any other BSON type (dates, ObjectIds,
//! Decimal128, binary...) in `data` has no exact JSON equivalent and is a decode error.
//!
//! Keys are user input, and MongoDB-protocol servers refuse or misread field names that start
//! with `$` or hold `.` (and BSON can't hold NUL in a name). Keys are therefore stored with
//! `%`, `$`, `.` and NUL percent-escaped (`%25`, `%24`, `%2E`, `%00`); every other key is
//! stored as it is, so ordinary keys stay queryable under their own name.

use std::fmt::Write as _;

use mongodb::bson::{Bson, Document};
use serde_json::{Map, Number, Value};

/// How deep `data` may nest: MongoDB refuses documents nested deeper than 100 levels, and
/// `data` itself sits one level below the stored document.
pub(crate) const MAX_DEPTH: usize = 98;

/// Why a value can't be encoded; the caller turns it into [`session_core::Error::Encode`].
pub(crate) type EncodeError = String;

/// `data` as the embedded document a write stores.
pub(crate) fn data_to_bson(data: &Map<String, Value>) -> Result<Document, EncodeError> {
    object_to_document(data, "data", 0)
}

fn object_to_document(
    map: &Map<String, Value>,
    path: &str,
    depth: usize,
) -> Result<Document, EncodeError> {
    if depth >= MAX_DEPTH {
        return Err(format!(
            "{path} nests deeper than {MAX_DEPTH} levels, more than MongoDB stores"
        ));
    }
    let mut document = Document::new();
    for (key, value) in map {
        let child = format!("{path}.{key}");
        document.insert(escape_key(key), value_to_bson(value, &child, depth + 1)?);
    }
    Ok(document)
}

fn value_to_bson(value: &Value, path: &str, depth: usize) -> Result<Bson, EncodeError> {
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::String(s) => Bson::String(s.clone()),
        Value::Number(n) => number_to_bson(n, path)?,
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(format!(
                    "{path} nests deeper than {MAX_DEPTH} levels, more than MongoDB stores"
                ));
            }
            let mut array = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                array.push(value_to_bson(item, &format!("{path}[{index}]"), depth + 1)?);
            }
            Bson::Array(array)
        }
        Value::Object(map) => Bson::Document(object_to_document(map, path, depth)?),
    })
}

fn number_to_bson(number: &Number, path: &str) -> Result<Bson, EncodeError> {
    if let Some(int) = number.as_i64() {
        return Ok(Bson::Int64(int));
    }
    if number.is_u64() {
        return Err(format!(
            "{path} is the integer {number}, above i64::MAX ({}), which BSON cannot hold \
             exactly; store it as a string",
            i64::MAX
        ));
    }
    match number.as_f64() {
        Some(float) if number.is_f64() => Ok(Bson::Double(float)),
        // Only with serde_json's `arbitrary_precision`: a number that is neither.
        _ => Err(format!(
            "{path} is the number {number}, which BSON cannot hold exactly"
        )),
    }
}

/// The stored `data` document back as JSON; the error says what is wrong (the caller names
/// the session).
pub(crate) fn data_from_bson(document: &Document) -> Result<Map<String, Value>, String> {
    document_to_object(document, "data")
}

fn document_to_object(document: &Document, path: &str) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for (key, value) in document {
        let key = unescape_key(key).ok_or_else(|| {
            format!("{path} holds the key {key:?}, which this crate never writes (bad escape)")
        })?;
        let child = format!("{path}.{key}");
        let value = bson_to_value(value, &child)?;
        if map.insert(key, value).is_some() {
            return Err(format!("{child} appears twice"));
        }
    }
    Ok(map)
}

fn bson_to_value(value: &Bson, path: &str) -> Result<Value, String> {
    Ok(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::String(s) => Value::String(s.clone()),
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(f) => Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{path} is {f}, which JSON cannot hold"))?,
        Bson::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| bson_to_value(item, &format!("{path}[{index}]")))
                .collect::<Result<_, _>>()?,
        ),
        Bson::Document(document) => Value::Object(document_to_object(document, path)?),
        other => {
            return Err(format!(
                "{path} holds a BSON {:?}, which has no exact JSON equivalent",
                other.element_type()
            ));
        }
    })
}

/// `key` with `%`, `$`, `.` and NUL percent-escaped; other keys are returned unchanged.
pub(crate) fn escape_key(key: &str) -> String {
    if !key.contains(['%', '$', '.', '\0']) {
        return key.to_owned();
    }
    let mut escaped = String::with_capacity(key.len() + 8);
    for c in key.chars() {
        match c {
            '%' | '$' | '.' | '\0' => {
                // Writing to a String cannot fail.
                let _ = write!(escaped, "%{:02X}", c as u32);
            }
            c => escaped.push(c),
        }
    }
    escaped
}

/// The key [`escape_key`] was given, or `None` for a `%` sequence it never writes.
pub(crate) fn unescape_key(key: &str) -> Option<String> {
    if !key.contains('%') {
        return Some(key.to_owned());
    }
    let mut plain = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(at) = rest.find('%') {
        plain.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        plain.push(match code {
            "25" => '%',
            "24" => '$',
            "2E" => '.',
            "00" => '\0',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    plain.push_str(rest);
    Some(plain)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn round_trip(value: Value) -> Value {
        let map = value.as_object().unwrap().clone();
        let document = data_to_bson(&map).unwrap();
        Value::Object(data_from_bson(&document).unwrap())
    }

    #[test]
    fn every_json_kind_round_trips_exactly() {
        let value = json!({
            "numbers": [i64::MAX, i64::MIN, 9_007_199_254_740_993_i64, 0, -1, 3.25, -1.5e300,
                        1e-300, 3.0, -0.0, u64::try_from(i64::MAX).unwrap()],
            "unicode": "Zoë Ñandú 🦀 中文", "flags": [true, false, null],
            "nested": {"deep": [1, {"x": null}, [[]]]},
            "empty_object": {}, "empty_array": [], "empty_string": "",
        });
        let back = round_trip(value.clone());
        assert_eq!(back, value);
        // A float stays a float, an integer an integer.
        assert!(back["numbers"][8].is_f64());
        assert!(back["numbers"][0].is_i64());
    }

    #[test]
    fn integers_above_i64_are_refused_with_the_path() {
        let map = json!({"a": {"big": [1, u64::MAX]}})
            .as_object()
            .unwrap()
            .clone();
        let err = data_to_bson(&map).unwrap_err();
        assert!(err.contains("data.a.big[1]"), "{err}");
        assert!(err.contains(&u64::MAX.to_string()), "{err}");
    }

    #[test]
    fn dangerous_keys_are_escaped_reversibly() {
        for key in [
            "$where", "a.b", "100%", "%24", "x\0y", "$", ".", "%", "plain", "", "é$.%",
        ] {
            let escaped = escape_key(key);
            assert!(
                !escaped.starts_with('$') && !escaped.contains(['.', '\0']),
                "{escaped}"
            );
            assert_eq!(unescape_key(&escaped).as_deref(), Some(key));
        }
        assert_eq!(escape_key("user"), "user");
        assert_eq!(escape_key("$gt"), "%24gt");
        assert_eq!(unescape_key("%zz"), None);
        assert_eq!(unescape_key("%2"), None);
        let value = json!({"$ne": {"a.b": 1}, "%": [ {"$x": null} ]});
        assert_eq!(round_trip(value.clone()), value);
    }

    #[test]
    fn foreign_bson_types_are_decode_errors() {
        let mut document = Document::new();
        document.insert(
            "when",
            Bson::DateTime(mongodb::bson::DateTime::from_millis(0)),
        );
        assert!(data_from_bson(&document).unwrap_err().contains("data.when"));
        let mut document = Document::new();
        document.insert("nan", Bson::Double(f64::NAN));
        assert!(data_from_bson(&document).is_err());
        let mut document = Document::new();
        document.insert("small", Bson::Int32(7));
        assert_eq!(data_from_bson(&document).unwrap()["small"], json!(7));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut value = json!(1);
        for _ in 0..200 {
            value = json!([value]);
        }
        let map = json!({"deep": value}).as_object().unwrap().clone();
        assert!(data_to_bson(&map).unwrap_err().contains("deeper"));
    }
}

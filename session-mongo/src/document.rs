//! The stored document: what a write stores, how a read decodes it, and the filters and
//! checks on its fields.

use std::borrow::Cow;

use mongodb::bson::{Bson, DateTime, Document, doc};
use session_core::codec::{CURRENT_FORMAT, StoredRecord};
use session_core::{Error, Record, Result, SessionId, StoreOptions, codec, unix_millis};

use crate::convert;

/// The document a write of `record` stores at `version`, its data checked against the
/// payload limit before anything reaches the server.
pub(crate) fn encode(record: &Record, version: u64, options: &StoreOptions) -> Result<Document> {
    let id = record.id();
    let encode_error = |reason: String| Error::Encode {
        id: id.clone(),
        reason,
    };
    let stored = StoredRecord::next_of(record)?;
    // The payload limit measures the data's JSON, as on every backend.
    codec::data_json(record, options)?;
    // At most Record::MAX_VERSION (2^53 - 1): fits an Int64.
    let version = version as i64;
    let data = convert::data_to_bson(record.data()).map_err(encode_error)?;
    let mut document = doc! {
        "_id": id.expose(),
        "data": data,
        "expires_at": DateTime::from_millis(stored.expires_at),
        "created_at": DateTime::from_millis(stored.created_at),
        "version": version,
        // CURRENT_FORMAT is a small constant.
        "format": i32::try_from(CURRENT_FORMAT).unwrap_or(i32::MAX),
    };
    if let Some(deadline) = stored.deadline {
        document.insert("deadline", DateTime::from_millis(deadline));
    }
    if let Some(owner) = stored.owner {
        document.insert("owner", owner.into_owned());
    }
    Ok(document)
}

/// Now, by the application's clock (FerretDB 1.x has no `$$NOW`), as a BSON date.
pub(crate) fn now_bson() -> DateTime {
    DateTime::from_millis(unix_millis(session_core::now()))
}

/// The filter for the live document under `id`. The id is only ever a string value, never a
/// document, so nothing in it can act as a query operator (and [`SessionId`] holds no `$`).
pub(crate) fn live(id: &SessionId, now: DateTime) -> Document {
    doc! { "_id": id.expose(), "expires_at": { "$gt": now } }
}

/// [`live`], and only a document that [`looks_decodable`] (as a filter), for the conditional
/// writes that must leave a corrupt record as it is.
pub(crate) fn live_and_decodable(id: &SessionId, now: DateTime) -> Document {
    let mut filter = live(id, now);
    filter.insert("format", 1);
    filter.insert("version", doc! { "$gte": 0 });
    filter.insert("data", doc! { "$type": "object" });
    filter
}

/// Whether `document`'s `expires_at` is a date after `now` (the live filter, checked here).
pub(crate) fn is_live(document: &Document, now: DateTime) -> bool {
    matches!(document.get("expires_at"), Some(Bson::DateTime(at)) if *at > now)
}

/// The stored version, when the document has a usable one.
pub(crate) fn version_of(document: &Document) -> Option<i64> {
    match document.get("version") {
        Some(Bson::Int64(version)) if *version >= 0 => Some(*version),
        Some(Bson::Int32(version)) if *version >= 0 => Some(i64::from(*version)),
        _ => None,
    }
}

/// The cheap part of [`decode`]'s checks, for writes that must leave a record that doesn't
/// decode as it is without decoding the data: format 1, a version, data an embedded
/// document (what a hand edit or a foreign writer most often breaks).
pub(crate) fn looks_decodable(document: &Document) -> bool {
    matches!(
        document.get("format"),
        Some(Bson::Int32(1)) | Some(Bson::Int64(1))
    ) && version_of(document).is_some()
        && matches!(document.get("data"), Some(Bson::Document(_)))
}

/// Decodes a stored session document (as [`MongoStore`](crate::MongoStore) writes it) into a
/// record, or [`Error::Decode`] naming `id`: for tools that read the collection directly,
/// and the fuzz target.
pub fn decode_document(id: &SessionId, document: Document) -> Result<Record> {
    decode(id, document)
}

/// A stored document as a record, or [`Error::Decode`] naming `id`.
pub(crate) fn decode(id: &SessionId, mut document: Document) -> Result<Record> {
    let bad = |reason: String| Error::decode(id, reason);
    let date = |document: &Document, field: &str| -> Result<Option<i64>> {
        match document.get(field) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::DateTime(at)) => Ok(Some(at.timestamp_millis())),
            Some(other) => Err(bad(format!(
                "field `{field}` is a BSON {:?}, expected a date",
                other.element_type()
            ))),
        }
    };
    let required = |value: Option<i64>, field: &str| {
        value.ok_or_else(|| Error::decode(id, format!("field `{field}` is missing")))
    };
    let integer = |field: &str| -> Result<i64> {
        match document.get(field) {
            Some(Bson::Int32(n)) => Ok(i64::from(*n)),
            Some(Bson::Int64(n)) => Ok(*n),
            None => Err(bad(format!("field `{field}` is missing"))),
            Some(other) => Err(bad(format!(
                "field `{field}` is a BSON {:?}, expected an integer",
                other.element_type()
            ))),
        }
    };
    let format = u32::try_from(integer("format")?)
        .map_err(|_| bad("field `format` is negative or too large".into()))?;
    let version = u64::try_from(integer("version")?)
        .map_err(|_| bad("field `version` is negative".into()))?;
    let expires_at = required(date(&document, "expires_at")?, "expires_at")?;
    let created_at = required(date(&document, "created_at")?, "created_at")?;
    let deadline = date(&document, "deadline")?;
    let owner = match document.remove("owner") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(owner)) => Some(Cow::Owned(owner)),
        Some(other) => {
            return Err(bad(format!(
                "field `owner` is a BSON {:?}, expected a string",
                other.element_type()
            )));
        }
    };
    let data = match document.get("data") {
        Some(Bson::Document(data)) => convert::data_from_bson(data).map_err(bad)?,
        None => return Err(bad("field `data` is missing".into())),
        Some(other) => {
            return Err(bad(format!(
                "field `data` is a BSON {:?}, expected an embedded document",
                other.element_type()
            )));
        }
    };
    StoredRecord {
        format,
        version,
        created_at,
        expires_at,
        deadline,
        owner,
        data: Cow::Owned(data),
    }
    .into_record(id)
}

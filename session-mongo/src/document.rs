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

/// The filter for the live document under `id` that [`looks_decodable`], for the
/// conditional writes that must leave a corrupt record as it is: every check [`decode`]
/// makes but the data's contents, in the server's terms (numbers of the integer types
/// only, dates in the range a record can hold, the owner a string or absent).
///
/// The id is only ever a string value, never a document, so nothing in it can act as a
/// query operator (and [`SessionId`] holds no `$`).
pub(crate) fn live_and_decodable(id: &SessionId, now: DateTime) -> Document {
    let (earliest, latest) = date_range();
    let integer = vec![Bson::from("int"), Bson::from("long")];
    let date = doc! { "$gte": earliest, "$lte": latest };
    doc! {
        "_id": id.expose(),
        "expires_at": { "$gt": now, "$lte": latest },
        "format": { "$eq": 1, "$type": integer.clone() },
        // At most Record::MAX_VERSION (2^53 - 1): fits an Int64.
        "version": { "$gte": 0, "$lte": Record::MAX_VERSION as i64, "$type": integer },
        "created_at": date.clone(),
        "data": { "$type": "object" },
        // Claimed by an expiry feed's purge (MongoDB): reported expired, so dead to every
        // write, even one whose clock still counts it live.
        "claimed_until": { "$exists": false },
        "$and": [
            { "$or": [{ "owner": null }, { "owner": { "$type": "string" } }] },
            { "$or": [{ "deadline": null }, { "deadline": date }] },
        ],
    }
}

/// The earliest and latest dates a record can hold (what [`session_core::from_unix_millis`]
/// accepts), as BSON dates.
fn date_range() -> (DateTime, DateTime) {
    let earliest = time::PrimitiveDateTime::MIN.assume_utc();
    let latest = time::PrimitiveDateTime::MAX.assume_utc();
    (
        DateTime::from_millis(unix_millis(earliest)),
        DateTime::from_millis(unix_millis(latest)),
    )
}

/// Whether `document`'s `expires_at` is a date after `now` (the live filter, checked here).
pub(crate) fn is_live(document: &Document, now: DateTime) -> bool {
    matches!(document.get("expires_at"), Some(Bson::DateTime(at)) if *at > now)
        && !document.contains_key(CLAIMED_UNTIL)
}

/// The field an expiry feed's purge sets on a document it claims (MongoDB, without locks).
pub(crate) const CLAIMED_UNTIL: &str = "claimed_until";

/// The stored version, when the document has a usable one (an integer from 0 to
/// [`Record::MAX_VERSION`], as [`decode`] wants it).
pub(crate) fn version_of(document: &Document) -> Option<i64> {
    let version = match document.get("version") {
        Some(Bson::Int64(version)) => *version,
        Some(Bson::Int32(version)) => i64::from(*version),
        _ => return None,
    };
    u64::try_from(version)
        .is_ok_and(|v| v <= Record::MAX_VERSION)
        .then_some(version)
}

/// Whether [`decode`] would accept `document` as the record under `id`: its own checks,
/// data included, without building the record. For the writes (with locks) that must leave
/// a record that doesn't decode as it is.
pub(crate) fn looks_decodable(id: &SessionId, document: &Document) -> bool {
    fields(id, document).is_ok_and(|(stored, data)| {
        convert::data_from_bson(data).is_ok() && stored.into_record(id).is_ok()
    })
}

/// Decodes a stored session document (as [`MongoStore`](crate::MongoStore) writes it) into a
/// record, or [`Error::Decode`] naming `id`: for tools that read the collection directly,
/// and the fuzz target.
pub fn decode_document(id: &SessionId, document: Document) -> Result<Record> {
    decode(id, document)
}

/// A stored document as a record, or [`Error::Decode`] naming `id`.
pub(crate) fn decode(id: &SessionId, document: Document) -> Result<Record> {
    let (mut stored, data) = fields(id, &document)?;
    let data = convert::data_from_bson(data).map_err(|reason| Error::decode(id, reason))?;
    stored.data = Cow::Owned(data);
    stored.into_record(id)
}

/// The stored fields of `document` with empty data, and its data (checked to be an
/// embedded document, not decoded), or [`Error::Decode`] naming `id`. What it accepts
/// [`StoredRecord::into_record`] may still refuse (format, version and time ranges).
fn fields<'d>(
    id: &SessionId,
    document: &'d Document,
) -> Result<(StoredRecord<'static>, &'d Document)> {
    let bad = |reason: String| Error::decode(id, reason);
    let date = |field: &str| -> Result<Option<i64>> {
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
    let expires_at = required(date("expires_at")?, "expires_at")?;
    let created_at = required(date("created_at")?, "created_at")?;
    let deadline = date("deadline")?;
    let owner = match document.get("owner") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(owner)) => Some(Cow::Owned(owner.clone())),
        Some(other) => {
            return Err(bad(format!(
                "field `owner` is a BSON {:?}, expected a string",
                other.element_type()
            )));
        }
    };
    let data = match document.get("data") {
        Some(Bson::Document(data)) => data,
        None => return Err(bad("field `data` is missing".into())),
        Some(other) => {
            return Err(bad(format!(
                "field `data` is a BSON {:?}, expected an embedded document",
                other.element_type()
            )));
        }
    };
    let stored = StoredRecord {
        format,
        version,
        created_at,
        expires_at,
        deadline,
        owner,
        data: Cow::Owned(session_core::Data::new()),
    };
    Ok((stored, data))
}

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

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::options::StoreOptions;
use crate::record::{Data, Record};
use crate::time_util::{from_unix_millis, unix_millis};

/// The format this version of the crate writes.
pub const CURRENT_FORMAT: u32 = 1;

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
    /// The fields a write of `record` stores: its next version (see [`Record::version`]).
    pub fn next_of(record: &'a Record) -> Self {
        Self {
            format: CURRENT_FORMAT,
            version: record.version() + 1,
            created_at: unix_millis(record.created_at()),
            expires_at: unix_millis(record.expires_at()),
            deadline: record.deadline().map(unix_millis),
            owner: record.owner().map(Cow::Borrowed),
            data: Cow::Borrowed(record.data()),
        }
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

/// `record` as the JSON a write stores (its next version), checked against the payload limit.
pub fn encode(record: &Record, options: &StoreOptions) -> Result<Vec<u8>> {
    let bytes =
        serde_json::to_vec(&StoredRecord::next_of(record)).map_err(|err| Error::Encode {
            id: record.id().clone(),
            reason: err.to_string(),
        })?;
    options.check_size(record.id(), bytes.len())?;
    Ok(bytes)
}

/// Only `record`'s data as JSON, checked against the payload limit, for backends that keep
/// the other fields in columns of their own.
pub fn encode_data(record: &Record, options: &StoreOptions) -> Result<String> {
    let json = serde_json::to_string(record.data()).map_err(|err| Error::Encode {
        id: record.id().clone(),
        reason: err.to_string(),
    })?;
    options.check_size(record.id(), json.len())?;
    Ok(json)
}

/// Decodes what [`encode`] stored; [`Error::Decode`] naming `id` for anything else.
pub fn decode(id: &SessionId, bytes: &[u8]) -> Result<Record> {
    // One UTF-8 check of the whole value up front is cheaper than serde_json's check of
    // every string in it; invalid bytes still go to `from_slice` for its positioned error.
    let stored = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<StoredRecord<'_>>(text),
        Err(_) => serde_json::from_slice::<StoredRecord<'_>>(bytes),
    };
    stored
        .map_err(|err| Error::decode(id, err))?
        .into_record(id)
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
}

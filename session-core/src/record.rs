//! The session record every store keeps.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::field_texts::FieldTexts;
use crate::id::SessionId;
use crate::time_util::{now, to_millis};

/// A session's data: a JSON object.
pub type Data = Map<String, Value>;

/// One session as stored: its id, data, expiry, version and owner.
///
/// Times are UTC with millisecond precision (what every backend can store exactly); the
/// setters round down to the millisecond.
///
/// `version` drives optimistic concurrency: a record that was never stored has version 0,
/// and every successful write stores `version + 1` and advances the record to it. See
/// [`SessionStore::update`](crate::SessionStore::update).
///
/// Two records are equal when everything above is; the stored text a record was read with
/// ([`Self::field_texts`]) and the express-session cookie object ([`Self::cookie`]), the
/// envelope of a shared format, do not count.
#[derive(Clone)]
pub struct Record {
    id: SessionId,
    data: Data,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    deadline: Option<OffsetDateTime>,
    version: u64,
    owner: Option<String>,
    field_texts: Option<FieldTexts>,
    cookie: Option<Data>,
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.data == other.data
            && self.created_at == other.created_at
            && self.expires_at == other.expires_at
            && self.deadline == other.deadline
            && self.version == other.version
            && self.owner == other.owner
    }
}

impl Record {
    /// The highest version a record can have: 2^53 - 1, the largest integer that every
    /// backend (and JavaScript, and Redis' Lua) holds exactly. A write past it fails with
    /// [`Error::Encode`]; a stored version above it reads as corrupt.
    pub const MAX_VERSION: u64 = (1 << 53) - 1;

    /// A new, never stored record with a fresh id, empty data and the given expiry.
    pub fn new(expires_at: OffsetDateTime) -> Self {
        Self::with_id(SessionId::generate(), expires_at)
    }

    /// A new, never stored record under a chosen id.
    pub fn with_id(id: SessionId, expires_at: OffsetDateTime) -> Self {
        Self {
            id,
            data: Data::new(),
            created_at: to_millis(now()),
            expires_at: to_millis(expires_at),
            deadline: None,
            version: 0,
            owner: None,
            field_texts: None,
            cookie: None,
        }
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The session data.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The session data, to change.
    pub fn data_mut(&mut self) -> &mut Data {
        &mut self.data
    }

    /// A typed value from the data: `Ok(None)` when the key is absent, [`Error::Decode`]
    /// when the stored value doesn't fit `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.data
            .get(key)
            .map(|value| T::deserialize(value))
            .transpose()
            .map_err(|err| Error::decode(&self.id, format_args!("key {key:?}: {err}")))
    }

    /// Stores a typed value in the data, returning the value it replaced.
    pub fn insert<T: Serialize>(
        &mut self,
        key: impl Into<String>,
        value: T,
    ) -> Result<Option<Value>> {
        let key = key.into();
        let value = serde_json::to_value(value).map_err(|err| Error::Encode {
            id: self.id.clone(),
            reason: format!("key {key:?}: {err}"),
        })?;
        Ok(self.data.insert(key, value))
    }

    /// Removes a key from the data, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.data.remove(key)
    }

    /// When the session was created.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// When the session ends unless touched.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// The absolute deadline no touch may extend the session past, if any.
    pub fn deadline(&self) -> Option<OffsetDateTime> {
        self.deadline
    }

    /// The version last stored (0: never stored).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Who the session belongs to (for example a user id), for listing and revocation.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Whether the session has expired at `at`.
    pub fn is_expired_at(&self, at: OffsetDateTime) -> bool {
        self.expires_at <= at
    }

    /// Whether the session has expired now.
    pub fn is_expired(&self) -> bool {
        self.is_expired_at(now())
    }

    /// Sets the expiry, capped at the deadline when there is one.
    pub fn set_expires_at(&mut self, expires_at: OffsetDateTime) {
        let expires_at = to_millis(expires_at);
        self.expires_at = self.deadline.map_or(expires_at, |d| expires_at.min(d));
    }

    /// Sets the absolute deadline (and caps the current expiry at it).
    pub fn set_deadline(&mut self, deadline: Option<OffsetDateTime>) {
        self.deadline = deadline.map(to_millis);
        self.set_expires_at(self.expires_at);
    }

    /// Sets or clears the owner.
    pub fn set_owner(&mut self, owner: Option<String>) {
        self.owner = owner;
    }

    /// Sets the owner from the data under `key`: a non-empty string, or a number as text;
    /// anything else (or no such key) clears it. Lets middleware that only knows session data
    /// (tower-sessions, actix-session) feed the owner index.
    pub fn set_owner_from(&mut self, key: &str) {
        self.owner = match self.data.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
    }

    /// Replaces the id, for stores that move a record (see
    /// [`SessionStore::create`](crate::SessionStore::create)).
    pub fn set_id(&mut self, id: SessionId) {
        self.id = id;
    }

    /// Sets the version; stores call this after a successful write.
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// The version a write of this record stores, `version + 1`, or [`Error::Encode`] when
    /// that would pass [`Record::MAX_VERSION`].
    pub fn next_version(&self) -> Result<u64> {
        Self::version_after(&self.id, self.version)
    }

    /// The version a write of session `id` stores after `version` (for a store that computes
    /// it from the stored one, as `set` does): `version + 1`, or [`Error::Encode`] when that
    /// would pass [`Record::MAX_VERSION`].
    pub fn version_after(id: &SessionId, version: u64) -> Result<u64> {
        version
            .checked_add(1)
            .filter(|next| *next <= Self::MAX_VERSION)
            .ok_or_else(|| Error::Encode {
                id: id.clone(),
                reason: format!(
                    "version {version} is at the maximum ({}); destroy the session and start \
                     a new one",
                    Self::MAX_VERSION
                ),
            })
    }

    /// Sets the creation time; stores call this when decoding.
    pub fn set_created_at(&mut self, created_at: OffsetDateTime) {
        self.created_at = to_millis(created_at);
    }

    /// Replaces the whole data.
    pub fn set_data(&mut self, data: Data) {
        self.data = data;
    }

    /// The stored text of the data's fields as the record was read, when its store keeps it
    /// (a format shared with another program, such as express-session's): a write puts each
    /// field whose value did not change back as that text. See [`FieldTexts`].
    pub fn field_texts(&self) -> Option<&FieldTexts> {
        self.field_texts.as_ref()
    }

    /// Sets what [`Self::field_texts`] returns; for stores, when they decode a record.
    pub fn set_field_texts(&mut self, texts: Option<FieldTexts>) {
        self.field_texts = texts;
    }

    /// The session's express-session cookie object (`originalMaxAge`, `expires`,
    /// `httpOnly`, `path`, `domain`, `secure`, `sameSite`, ...), in the formats shared with
    /// express-session, which store one per session: what a store read, or what the
    /// caller set. `None` for the native format, which has no such object, and for a
    /// record that never had one; such a record is written with the stored cookie object
    /// kept (or a default one). See [`crate::express`] for reading and writing it.
    ///
    /// A format writes `expires` from [`Self::expires_at`] (a `null` `expires`, a
    /// browser-session cookie, stays `null`); every other member as it is here.
    pub fn cookie(&self) -> Option<&Data> {
        self.cookie.as_ref()
    }

    /// Sets what [`Self::cookie`] returns: a format writes it in place of the stored one.
    pub fn set_cookie(&mut self, cookie: Option<Data>) {
        self.cookie = cookie;
    }
}

/// Shows the shape, never the secrets: the id as a fingerprint, the data as its keys.
impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("deadline", &self.deadline)
            .field("version", &self.version)
            .field("owner", &self.owner)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn typed_helpers_round_trip() {
        let mut record = Record::new(now() + Duration::hours(1));
        record
            .insert("user", serde_json::json!({"id": 7, "roles": ["a"]}))
            .unwrap();
        record.insert("count", 3u32).unwrap();
        assert_eq!(record.get::<u32>("count").unwrap(), Some(3));
        assert_eq!(record.get::<u32>("missing").unwrap(), None);
        assert!(record.get::<u32>("user").is_err());
    }

    #[test]
    fn times_are_milliseconds_and_capped_by_the_deadline() {
        let start = now();
        let mut record = Record::new(start + Duration::hours(2));
        assert_eq!(record.expires_at().nanosecond() % 1_000_000, 0);
        record.set_deadline(Some(start + Duration::hours(1)));
        assert_eq!(record.expires_at(), to_millis(start + Duration::hours(1)));
        record.set_expires_at(start + Duration::hours(5));
        assert_eq!(Some(record.expires_at()), record.deadline());
    }

    #[test]
    fn debug_hides_id_and_values() {
        let mut record = Record::new(now());
        record.insert("token", "hunter2").unwrap();
        let shown = format!("{record:?}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains(record.id().expose()));
        assert!(shown.contains("token"));
    }
}

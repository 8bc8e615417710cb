//! What the memory store keeps per session, and how moka expires it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant};

use moka::Expiry as MokaExpiry;
use session_core::{Data, Record, Result, SessionId, StoreOptions, codec, now};
use time::OffsetDateTime;

/// Bytes charged per entry besides its data, for the key and the entry's own fields.
pub(crate) const ENTRY_OVERHEAD: usize = 160;

/// A stored session: metadata kept apart from the data so CAS and touch don't decode it.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) data: Arc<str>,
    pub(crate) version: u64,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) deadline: Option<OffsetDateTime>,
    pub(crate) owner: Option<Arc<str>>,
    /// Whether `data` decodes: always for what the store wrote; a test may plant one that
    /// doesn't (`MemoryStore::write_raw`), and writes that can't judge it leave it alone.
    pub(crate) decodes: bool,
    /// Set by the call that ends or replaces this entry while it is live (a write, a
    /// touch, a destroy, a move): moka's removal listener then knows the session didn't
    /// end by expiring, however late it runs. Clones share it; a written entry gets its own.
    pub(crate) superseded: Arc<AtomicBool>,
}

impl Entry {
    pub(crate) fn is_live(&self) -> bool {
        self.expires_at > now()
    }

    /// The entry a write of `record` stores at `version`, size-checked.
    pub(crate) fn of(record: &Record, version: u64, options: &StoreOptions) -> Result<Self> {
        Ok(Self {
            data: codec::encode_data(record, options)?.into(),
            version,
            created_at: record.created_at(),
            expires_at: record.expires_at(),
            deadline: record.deadline(),
            owner: record.owner().map(Arc::from),
            decodes: true,
            superseded: Arc::default(),
        })
    }

    /// An entry holding `data` as it is, for tests that plant corrupt records.
    #[cfg(feature = "test-util")]
    pub(crate) fn raw(data: &str, expires_at: OffsetDateTime) -> Self {
        Self {
            data: data.into(),
            version: 1,
            created_at: now(),
            expires_at,
            deadline: None,
            owner: None,
            decodes: serde_json::from_str::<Data>(data).is_ok(),
            superseded: Arc::default(),
        }
    }

    /// Marks this entry as ended by a call (see [`Self::superseded`]).
    pub(crate) fn supersede(&self) {
        self.superseded.store(true, Ordering::Release);
    }

    pub(crate) fn was_superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }

    /// The same session as a new entry, with a flag of its own.
    pub(crate) fn renewed(self) -> Self {
        Self {
            superseded: Arc::default(),
            ..self
        }
    }

    pub(crate) fn owned_by(&self, owner: &str) -> bool {
        self.owner.as_deref() == Some(owner)
    }

    pub(crate) fn to_record(&self, id: &SessionId) -> Result<Record> {
        let data: Data = codec::parse_json(id, self.data.as_bytes())?;
        let mut record = Record::with_id(id.clone(), self.expires_at);
        record.set_data(data);
        record.set_created_at(self.created_at);
        record.set_deadline(self.deadline);
        record.set_version(self.version);
        record.set_owner(self.owner.as_deref().map(str::to_owned));
        Ok(record)
    }
}

/// Expires each entry at its own `expires_at`.
pub(crate) struct ExpiresAt;

impl ExpiresAt {
    fn remaining(entry: &Entry) -> Option<StdDuration> {
        let left = entry.expires_at - now();
        Some(StdDuration::try_from(left).unwrap_or(StdDuration::ZERO))
    }
}

impl MokaExpiry<SessionId, Entry> for ExpiresAt {
    fn expire_after_create(&self, _: &SessionId, entry: &Entry, _: Instant) -> Option<StdDuration> {
        Self::remaining(entry)
    }

    fn expire_after_update(
        &self,
        _: &SessionId,
        entry: &Entry,
        _: Instant,
        _: Option<StdDuration>,
    ) -> Option<StdDuration> {
        Self::remaining(entry)
    }
}

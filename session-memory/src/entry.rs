//! What the memory store keeps per session, and how moka expires it.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration as StdDuration, Instant};

use moka::Expiry as MokaExpiry;
use session_core::{Data, Record, Result, SessionId, StoreOptions, codec, now};
use time::OffsetDateTime;

/// Bytes charged per entry besides its data, for the key and the entry's own fields.
pub(crate) const ENTRY_OVERHEAD: usize = 160;

/// [`Stored::fate`]: nobody has ended the entry yet.
const LIVE: u8 = 0;
/// A write is deciding on the entry.
const HELD: u8 = 1;
/// A call ended or replaced the entry while it was live.
const SUPERSEDED: u8 = 2;
/// moka's listener reported the entry expired.
const REPORTED: u8 = 3;

/// A stored session ([`Stored`]), shared: moka hands out a clone on every read, one count
/// to bump rather than one per field.
#[derive(Clone)]
pub(crate) struct Entry(Arc<Stored>);

impl Deref for Entry {
    type Target = Stored;

    fn deref(&self) -> &Stored {
        &self.0
    }
}

/// A stored session: metadata kept apart from the data so CAS and touch don't decode it.
pub(crate) struct Stored {
    /// The data's JSON; shared by the entries a touch or a rename makes of this one.
    pub(crate) data: Arc<[u8]>,
    pub(crate) version: u64,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) deadline: Option<OffsetDateTime>,
    pub(crate) owner: Option<Arc<str>>,
    /// Whether `data` decodes: always for what the store wrote; a test may plant one that
    /// doesn't (`MemoryStore::write_raw`), and writes that can't judge it leave it alone.
    pub(crate) decodes: bool,
    /// Who ended this entry, decided once ([`LIVE`] until then): a call that ended or
    /// replaced it while live ([`SUPERSEDED`]), or moka's removal listener reporting it
    /// expired ([`REPORTED`]); [`HELD`] while a write decides on it. moka can expire an entry
    /// between a write's read of it and the write's replacing it, and runs the listener
    /// then: the one state both sides claim with a compare-and-swap makes sure a session is
    /// either written or reported expired, never both. Clones share it; a written entry
    /// gets its own.
    fate: AtomicU8,
}

impl Entry {
    pub(crate) fn is_live(&self) -> bool {
        self.expires_at > now()
    }

    /// The data of `record` as a write stores it, size-checked; the caller checked the
    /// record is writable ([`codec::check_writable`]).
    pub(crate) fn encode(record: &Record, options: &StoreOptions) -> Result<Arc<[u8]>> {
        Ok(codec::data_json(record, options)?.into())
    }

    /// The entry a write of `record` stores at `version`, with its `data` ([`Self::encode`]).
    pub(crate) fn of(record: &Record, version: u64, data: Arc<[u8]>) -> Self {
        Self(Arc::new(Stored {
            data,
            version,
            created_at: record.created_at(),
            expires_at: record.expires_at(),
            deadline: record.deadline(),
            owner: record.owner().map(Arc::from),
            decodes: true,
            fate: AtomicU8::new(LIVE),
        }))
    }

    /// An entry holding `data` as it is, for tests that plant corrupt records.
    #[cfg(feature = "test-util")]
    pub(crate) fn raw(data: &str, expires_at: OffsetDateTime) -> Self {
        Self(Arc::new(Stored {
            data: data.as_bytes().into(),
            version: 1,
            created_at: now(),
            expires_at,
            deadline: None,
            owner: None,
            decodes: serde_json::from_str::<Data>(data).is_ok(),
            fate: AtomicU8::new(LIVE),
        }))
    }

    /// Takes this live entry for a write to decide on: `false` when the listener reported
    /// it expired (or a call ended it) first, and the write must treat it as gone. Give it
    /// back with [`Self::release`].
    pub(crate) fn hold(&self) -> bool {
        self.claim(LIVE, HELD)
    }

    /// Ends [`Self::hold`]: superseded when the write replaced or removed the entry, live
    /// again when it left it alone.
    pub(crate) fn release(&self, superseded: bool) {
        let to = if superseded { SUPERSEDED } else { LIVE };
        self.fate.store(to, Ordering::Release);
    }

    /// Marks this live entry as ended by a call: `false` when the listener reported it
    /// expired first (the call must treat it as gone).
    pub(crate) fn supersede(&self) -> bool {
        self.claim(LIVE, SUPERSEDED)
    }

    /// For moka's listener: `true` when this entry is to be reported expired, now that it
    /// is claimed for the report; `false` when a call ended or replaced it. Waits out a
    /// write holding it (a few instructions, no I/O).
    pub(crate) fn claim_report(&self) -> bool {
        loop {
            match self
                .fate
                .compare_exchange(LIVE, REPORTED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(HELD) => std::thread::yield_now(),
                Err(_) => return false,
            }
        }
    }

    fn claim(&self, from: u8, to: u8) -> bool {
        self.fate
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The same session as a new entry expiring at `expires_at`, with a fate of its own.
    pub(crate) fn renewed(&self, expires_at: OffsetDateTime) -> Self {
        Self(Arc::new(Stored {
            data: Arc::clone(&self.data),
            version: self.version,
            created_at: self.created_at,
            expires_at,
            deadline: self.deadline,
            owner: self.owner.clone(),
            decodes: self.decodes,
            fate: AtomicU8::new(LIVE),
        }))
    }

    pub(crate) fn owned_by(&self, owner: &str) -> bool {
        self.owner.as_deref() == Some(owner)
    }

    pub(crate) fn to_record(&self, id: &SessionId) -> Result<Record> {
        let data: Data = codec::parse_json(id, &self.data)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let record = Record::new(now() + time::Duration::hours(1));
        let data =
            Entry::encode(&record, &StoreOptions::default()).expect("a small record encodes");
        Entry::of(&record, 1, data)
    }

    /// A write and moka's expiry report racing for one entry: whichever claims it first
    /// wins, never both (the expiry_attack tests' rotate at the expiry instant once saw
    /// both when the write only marked the entry after reading it).
    #[test]
    fn a_report_and_a_write_never_both_win() {
        let reported = entry();
        assert!(reported.claim_report());
        assert!(!reported.hold(), "a write took an entry reported expired");
        assert!(
            !reported.supersede(),
            "a call ended an entry reported expired"
        );

        let written = entry();
        assert!(written.hold());
        let listener = {
            let written = written.clone();
            std::thread::spawn(move || written.claim_report())
        };
        std::thread::sleep(StdDuration::from_millis(20));
        assert!(
            !listener.is_finished(),
            "the report did not wait for the write"
        );
        written.release(true);
        assert!(
            !listener.join().unwrap(),
            "a written entry was reported expired"
        );

        let left_alone = entry();
        assert!(left_alone.hold());
        left_alone.release(false);
        assert!(
            left_alone.claim_report(),
            "an entry the write left was never reported"
        );
    }
}

//! [`ScanSessions`] for [`MemoryStore`]: pages in id order, each a pass over the cache.

use std::collections::BinaryHeap;
use std::sync::Arc;

use async_trait::async_trait;
use session_core::{Result, ScanCursor, ScanPage, ScanSessions, SessionId};

use crate::entry::Entry;
use crate::store::MemoryStore;

/// Pages in id order: the cursor is the last id of the page (keyset pagination), so a
/// saved cursor goes on where it stopped however the cache changed meanwhile, and a session
/// live for the whole scan is returned exactly once.
///
/// moka's iteration has no order and no position to resume from, so **every page is one
/// pass over the whole cache** (keeping the `limit` smallest ids past the cursor): a full
/// scan of `n` sessions in pages of `limit` costs about `n * n / limit` entry visits. That
/// is what a single process holds (about a millisecond per 10,000 sessions and page): ask
/// for large pages (10,000 or more) to walk a big store. No lock is held, so writers never
/// wait on a scan.
///
/// An entry whose data does not decode (only a test can plant one: `write_raw`) counts in
/// [`ScanPage::corrupt`] and keeps its place in the order.
#[async_trait]
impl ScanSessions for MemoryStore {
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        let limit = limit.max(1);
        let after = cursor.as_str();
        // The `limit` smallest ids past the cursor (a max-heap: its top is the largest kept).
        let mut page: BinaryHeap<Candidate> = BinaryHeap::with_capacity(limit + 1);
        let mut past_cursor = 0usize;
        for (id, entry) in self.live_entries() {
            if id.expose() <= after {
                continue;
            }
            past_cursor += 1;
            page.push(Candidate { id, entry });
            if page.len() > limit {
                page.pop();
            }
        }
        let page = page.into_sorted_vec();
        let next = (past_cursor > limit)
            .then(|| {
                page.last()
                    .map(|last| ScanCursor::from_backend(last.id.expose()))
            })
            .flatten();
        let mut records = Vec::with_capacity(page.len());
        let mut corrupt = 0;
        for Candidate { id, entry } in page {
            match entry.to_record(&id) {
                Ok(record) => records.push(record),
                Err(_) => corrupt += 1,
            }
        }
        Ok(ScanPage::new(records, corrupt, next))
    }
}

/// A live entry, ordered by its id.
struct Candidate {
    id: Arc<SessionId>,
    entry: Entry,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.expose().cmp(other.id.expose())
    }
}

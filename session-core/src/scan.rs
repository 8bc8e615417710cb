//! Walking every session a store holds, page by page, from a cursor that can be saved and
//! resumed: what an operator's tools (counting, statistics, purging, a migration between
//! backends) need and the per-session methods of [`SessionStore`] can't give.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;

use crate::error::Result;
use crate::id::SessionId;
use crate::record::Record;
use crate::store::SessionStore;

/// Where a scan goes on: opaque to callers, meaningful to the store that issued it.
///
/// It prints and parses back (`Display`/`FromStr`), so a long job can write it down after
/// each page and continue from it after a crash or a Ctrl-C.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct ScanCursor(String);

impl ScanCursor {
    /// The start of a scan.
    pub fn start() -> Self {
        Self::default()
    }

    /// A cursor a backend issues (its own encoding of where it stopped). Backends only.
    pub fn from_backend(position: impl Into<String>) -> Self {
        Self(position.into())
    }

    /// The backend's encoding of the position (empty at the start).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the start of a scan.
    pub fn is_start(&self) -> bool {
        self.0.is_empty()
    }
}

/// How [`ScanCursor::after_id`] marks an id that is not UTF-8 (only a hand edit stores one in
/// a SQL table), written as hex: a cursor is text, and an id changed by a lossy conversion
/// would sort elsewhere (the scan could repeat that page for ever).
const HEX: &str = "hex:";

impl ScanCursor {
    /// For a keyset scan (pages in id order): the cursor after the row whose stored id is
    /// `id`, the id itself, or `hex:` and its bytes in hex when it isn't UTF-8 (or could be
    /// read as such a mark). Backends only; [`Self::id_bytes`] reads it back.
    pub fn after_id(id: &[u8]) -> Self {
        match std::str::from_utf8(id) {
            Ok(text) if !text.starts_with(HEX) => Self::from_backend(text),
            _ => {
                let hex: String = id.iter().map(|byte| format!("{byte:02x}")).collect();
                Self::from_backend(format!("{HEX}{hex}"))
            }
        }
    }

    /// The stored id bytes a keyset cursor from [`Self::after_id`] stands for (empty at the
    /// start: every id is greater).
    pub fn id_bytes(&self) -> Vec<u8> {
        let text = self.as_str();
        text.strip_prefix(HEX)
            .and_then(|hex| {
                (hex.len() % 2 == 0)
                    .then(|| {
                        (0..hex.len())
                            .step_by(2)
                            .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
                            .collect::<Option<Vec<u8>>>()
                    })
                    .flatten()
            })
            .unwrap_or_else(|| text.as_bytes().to_vec())
    }
}

impl fmt::Display for ScanCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// A cursor holds a position (a Redis SCAN cursor, the last id of a page), which could be a
// session id: `Debug` shows only whether the scan has started.
impl fmt::Debug for ScanCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_start() {
            f.write_str("ScanCursor(start)")
        } else {
            f.write_str("ScanCursor(..)")
        }
    }
}

impl FromStr for ScanCursor {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// One page of a scan.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ScanPage {
    /// The live sessions on this page, each as `get` would return it.
    pub records: Vec<Record>,
    /// How many stored records on this page could not be decoded (left as they are).
    pub corrupt: u64,
    /// Where the next page starts; `None` once the scan is complete.
    pub next: Option<ScanCursor>,
}

impl ScanPage {
    /// A page of `records`, with `corrupt` undecodable ones, continuing at `next`.
    pub fn new(records: Vec<Record>, corrupt: u64, next: Option<ScanCursor>) -> Self {
        Self {
            records,
            corrupt,
            next,
        }
    }
}

/// Builds one page of a keyset scan (rows read in id order after the cursor, at most
/// `limit` of them), the way every SQL backend pages: a row whose id is not a session id or
/// whose record doesn't decode counts as corrupt (whatever the
/// [`CorruptPolicy`](crate::CorruptPolicy)) and keeps its place in the order; a full page
/// continues after its last row, a short one ends the scan.
#[derive(Debug)]
pub struct KeysetPage {
    records: Vec<Record>,
    corrupt: u64,
    rows: usize,
    limit: usize,
    last: Option<Vec<u8>>,
}

impl KeysetPage {
    /// An empty page of a query that asked for `limit` rows.
    pub fn new(limit: usize) -> Self {
        Self {
            records: Vec::with_capacity(limit.min(1024)),
            corrupt: 0,
            rows: 0,
            limit,
            last: None,
        }
    }

    /// The next row: its stored id (bytes: text that is not UTF-8 must not fail the page)
    /// and how to decode its record once the id parses.
    pub fn push(&mut self, id: Vec<u8>, decode: impl FnOnce(&SessionId) -> Result<Record>) {
        let decoded = std::str::from_utf8(&id)
            .ok()
            .and_then(|text| SessionId::parse(text).ok())
            .map(|parsed| decode(&parsed));
        match decoded {
            Some(Ok(record)) => self.records.push(record),
            _ => self.corrupt += 1,
        }
        self.rows += 1;
        self.last = Some(id);
    }

    /// The page, continuing after its last row when the query returned `limit` rows.
    pub fn finish(self) -> ScanPage {
        let full = self.rows >= self.limit;
        let next = self
            .last
            .filter(|_| full)
            .map(|id| ScanCursor::after_id(&id));
        ScanPage::new(self.records, self.corrupt, next)
    }
}

/// A store whose sessions can be walked, page by page.
///
/// # What a scan promises
///
/// - Every session that is live from the scan's first page to its last, under one id, is
///   returned at least once; one created, ended or moved meanwhile may or may not be.
/// - No expired session is returned, and every record is whole (as `get` returns it; behind
///   [`HashedIds`](crate::HashedIds), under its stored id).
/// - A session may be returned twice (Redis' `SCAN` can revisit keys while its table
///   grows); callers that count dedupe by id.
/// - A page holds about `limit` sessions; it may hold fewer, none at all (a Redis `SCAN`
///   step that met only other keys), or a few more, and still have a next page.
/// - A cursor stays valid while the store's deployment does: a scan can be continued from
///   a saved cursor by another process, later.
#[async_trait]
pub trait ScanSessions: SessionStore {
    /// The page of sessions starting at `cursor` ([`ScanCursor::start`] for the first).
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage>;
}

#[async_trait]
impl<S: ScanSessions + ?Sized> ScanSessions for std::sync::Arc<S> {
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        (**self).scan(cursor, limit).await
    }
}

#[async_trait]
impl<S: ScanSessions + ?Sized> ScanSessions for Box<S> {
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        (**self).scan(cursor, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_prints_and_parses_back_and_hides_its_position_from_debug() {
        let cursor = ScanCursor::from_backend("17:abc");
        let back: ScanCursor = cursor.to_string().parse().unwrap();
        assert_eq!(back, cursor);
        assert!(!format!("{cursor:?}").contains("abc"));
        assert!(ScanCursor::start().is_start());
        assert!(!cursor.is_start());
    }

    #[test]
    fn keyset_cursors_name_any_id_bytes_exactly() {
        for id in [
            &b"abc-DEF_123"[..],
            b"\xff\x00not utf-8",
            b"hex:41",
            b"hex:zz",
            b"",
        ] {
            let cursor: ScanCursor = ScanCursor::after_id(id).to_string().parse().unwrap();
            assert_eq!(cursor.id_bytes(), id, "{cursor}");
        }
        assert_eq!(ScanCursor::after_id(b"plain").as_str(), "plain");
        assert!(ScanCursor::start().id_bytes().is_empty());
    }
}

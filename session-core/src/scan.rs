//! Walking every session a store holds, page by page, from a cursor that can be saved and
//! resumed: what an operator's tools (counting, statistics, purging, a migration between
//! backends) need and the per-session methods of [`SessionStore`] can't give.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;

use crate::error::Result;
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
}

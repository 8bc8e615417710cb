//! [`ScanSessions`] for [`RedisStore`]: `SCAN` of the store's session keys, node by node,
//! then a read of each key found.

use std::collections::HashSet;
use std::fmt;

use async_trait::async_trait;
use futures::StreamExt;
use session_core::{Error, Result, ScanCursor, ScanPage, ScanSessions, SessionId};

use crate::conn::BACKEND;
use crate::store::{RedisStore, Stored};

/// The most keys one `SCAN` step asks for (its `COUNT`): a step is one call on Redis's one
/// thread, so a large page takes several short steps rather than one long one.
const STEP_COUNT: usize = 1_000;

/// `SCAN` steps a page may take beyond those its `limit` needs when the steps meet few of
/// this store's keys (a database shared with other apps): the page then ends short, and the
/// scan goes on from its cursor, rather than one call walking the whole keyspace.
const EXTRA_STEPS: usize = 16;

/// Reads of the keys a page found that are in flight at once (each client pipelines them
/// on its connections).
const READS_IN_FLIGHT: usize = 64;

/// Walks the keys matching `{prefix}*` with `SCAN ... MATCH ... COUNT`, on a Cluster every
/// primary in turn (ordered by the lowest hash slot each serves), then reads each session
/// key found as `get` does (`GET`, or in the express-session format the read script that
/// also takes the key's expiry) and decodes it with the store's format. Owner indexes and
/// other apps' keys are passed over; a key that vanished between the `SCAN` and its read, or
/// has expired, is skipped; a value that doesn't decode counts in [`ScanPage::corrupt`]
/// (whatever the [`CorruptPolicy`](session_core::CorruptPolicy)) and is left as it is. Only
/// reads are sent.
///
/// The cursor is `<node>:<SCAN cursor>`: the node's place in that order and where its `SCAN`
/// stopped. `SCAN`'s own promise applies: a key present for the whole scan is met at least
/// once (possibly more: a page is deduplicated, a scan is not). A cursor holds while the
/// deployment does: a failover or resharding between two pages can make the rest of the
/// scan miss or repeat sessions of the shards it touched (a promoted replica numbers its
/// `SCAN` positions differently), so start over after one when every session must be seen.
#[async_trait]
impl ScanSessions for RedisStore {
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        self.call("scan", self.scan_page(cursor, limit.max(1)))
            .await
    }
}

/// Where a Redis scan is: the node (its index in `scan_nodes`' order) and its `SCAN` cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    node: usize,
    cursor: u64,
}

impl Position {
    /// The position `cursor` names, on a deployment of `nodes` nodes.
    fn parse(cursor: &ScanCursor, nodes: usize) -> Result<Self> {
        if cursor.is_start() {
            return Ok(Self { node: 0, cursor: 0 });
        }
        let position = cursor
            .as_str()
            .split_once(':')
            .and_then(|(node, cursor)| {
                Some(Self {
                    node: node.parse().ok()?,
                    cursor: cursor.parse().ok()?,
                })
            })
            .ok_or_else(|| bad_cursor("it is not a cursor this store issued"))?;
        if position.node >= nodes {
            return Err(bad_cursor(&format!(
                "it names node {} of a deployment of {nodes}: the deployment changed since; \
                 start the scan over",
                position.node
            )));
        }
        Ok(position)
    }

    fn cursor(self) -> ScanCursor {
        ScanCursor::from_backend(format!("{}:{}", self.node, self.cursor))
    }
}

/// A cursor the store can't continue from.
#[derive(Debug)]
struct BadCursor(String);

impl fmt::Display for BadCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot continue a scan from this cursor: {}", self.0)
    }
}

impl std::error::Error for BadCursor {}

fn bad_cursor(why: &str) -> Error {
    Error::permanent(BACKEND, BadCursor(why.to_owned()))
}

impl RedisStore {
    async fn scan_page(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        let (page, next) = self.scan_stored(cursor, limit).await?;
        let mut records = Vec::with_capacity(page.len());
        let mut corrupt = 0;
        for (id, stored) in &page {
            match self.decode_record(id, stored) {
                Ok(record) if record.is_expired() => {}
                Ok(record) => records.push(record),
                Err(Error::Decode { .. }) => corrupt += 1,
                Err(err) => return Err(err),
            }
        }
        Ok(ScanPage::new(records, corrupt, next))
    }

    /// About `limit` sessions from `cursor` on, as stored (as `get` reads them), and where
    /// the next page starts.
    pub(crate) async fn scan_stored(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<(Vec<(SessionId, Stored)>, Option<ScanCursor>)> {
        let nodes = self.conn().scan_nodes().await?;
        let mut at = Position::parse(cursor, nodes.len())?;
        let (ids, next) = self.scan_ids(&nodes, &mut at, limit).await?;
        // Owned ids: a stream of futures borrowing them isn't `Send` under async_trait.
        let reads: Vec<_> = futures::stream::iter(ids.clone())
            .map(|id| async move { self.read(&id).await })
            .buffered(READS_IN_FLIGHT)
            .collect()
            .await;
        let mut page = Vec::with_capacity(ids.len());
        for (id, read) in ids.into_iter().zip(reads) {
            // Vanished since the SCAN: ended or moved meanwhile.
            if let Some(stored) = read? {
                page.push((id, stored));
            }
        }
        Ok((page, next))
    }

    /// The session ids of about `limit` keys from `at` on, and where the next page starts
    /// (`None`: every node has been walked).
    async fn scan_ids(
        &self,
        nodes: &[String],
        at: &mut Position,
        limit: usize,
    ) -> Result<(Vec<SessionId>, Option<ScanCursor>)> {
        let pattern = self.keys().scan_pattern();
        let count = u32::try_from(limit.min(STEP_COUNT)).unwrap_or(1);
        let steps = limit.div_ceil(STEP_COUNT) + EXTRA_STEPS;
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        for _ in 0..steps {
            let step = self
                .conn()
                .scan_step(&nodes[at.node], at.cursor, &pattern, count)
                .await?;
            for key in &step.keys {
                if let Some(id) = self.keys().session_id(key)
                    && seen.insert(id.clone())
                {
                    ids.push(id);
                }
            }
            if step.cursor != 0 {
                at.cursor = step.cursor;
            } else if at.node + 1 < nodes.len() {
                *at = Position {
                    node: at.node + 1,
                    cursor: 0,
                };
            } else {
                return Ok((ids, None));
            }
            if ids.len() >= limit {
                break;
            }
        }
        Ok((ids, Some(at.cursor())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_print_and_parse_back() {
        let at = Position {
            node: 2,
            cursor: 12_345,
        };
        let printed = at.cursor().to_string();
        assert_eq!(printed, "2:12345");
        let back: ScanCursor = printed.parse().unwrap();
        assert_eq!(Position::parse(&back, 3).unwrap(), at);
        assert_eq!(
            Position::parse(&ScanCursor::start(), 1).unwrap(),
            Position { node: 0, cursor: 0 }
        );
    }

    #[test]
    fn foreign_or_stale_cursors_are_errors() {
        for text in ["12345", "a:1", "1:-1", "1:", ":1"] {
            let cursor = ScanCursor::from_backend(text);
            assert!(Position::parse(&cursor, 3).is_err(), "{text}");
        }
        let stale = ScanCursor::from_backend("3:0");
        let err = Position::parse(&stale, 3).unwrap_err();
        assert!(err.to_string().contains("start the scan over"), "{err}");
    }
}

//! The conformance suite tests itself: a small reference store that keeps every promise must
//! pass every case, and each mutant of it (one realistic bug, the kind stores in the wild
//! ship) must fail at least one case, the one the store author's guide names for it.
//!
//! The reference store is written against the public API only, as a third-party author
//! would: a map under a mutex, data kept as JSON text (so records can be corrupt), the
//! codec's checks, the options' timeout.

#![cfg(feature = "conformance")]
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use serde_json::Value;
use session_core::conformance::{self, Harness, Phase, PhasedMigration, Skip, Unrun};
use session_core::{
    Data, Error, MigratingStore, Record, Rename, Result, ScanCursor, ScanPage, ScanSessions,
    SessionId, SessionStore, StoreOptions, async_trait, codec, now, rename_onto_itself,
};
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// One realistic bug each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutant {
    // Liveness.
    GetReturnsExpired,
    LiveAtExpiresAt,
    CountIncludesExpired,
    ListIncludesExpired,
    // What writes store.
    InsertOverwritesLive,
    InsertRefusesExpiredId,
    InsertStoresCallerVersion,
    InsertResetsCreatedAt,
    InsertDropsDeadline,
    SetReusesVersion,
    SetCountsExpiredVersion,
    SetKeepsOldOwner,
    SetDropsDeadline,
    UpdateIgnoresVersion,
    UpdateResurrects,
    UpdateKeepsOldOwner,
    UpdateKeepsOldExpiry,
    UpdateDropsDeadline,
    FailedUpdateAdvancesVersion,
    UpdateLeavesRecordVersion,
    VersionsWrapAtTheMaximum,
    // Touch.
    TouchBumpsVersion,
    TouchPassesDeadline,
    TouchOnlyExtends,
    TouchResurrects,
    TouchReportsMissingAsLive,
    TouchResetsCreatedAt,
    // Moves.
    RenameOverwritesTarget,
    RenameKeepsSource,
    RenameDropsDeadline,
    RenameResetsCreatedAt,
    RenameResetsVersion,
    RenameDropsOwner,
    RenameOntoItselfMoves,
    RenameRefusesExpiredTarget,
    // Owners.
    OwnerMatchesPrefix,
    OwnerIgnoresCase,
    RevokeMatchesPrefix,
    RevokeSkipsBusySessions,
    RevokeMissesMovedSessions,
    RevokeCountsNothing,
    LimitKeepsOldest,
    LimitCountsTwins,
    // Purge.
    PurgeRemovesSoonExpiring,
    // Size.
    PayloadMeasuresWholeRecord,
    UpdateSkipsPayloadCheck,
    // Concurrency.
    InsertNotAtomic,
    UpdateNotAtomic,
    WriteBackAfterDestroy,
    RenameNotAtomic,
    // Data.
    DeepDataStored,
    IntegralFloatsBecomeIntegers,
    // Corrupt records.
    CorruptReadsAsMissing,
    CorruptOverwrittenByUpdate,
    CorruptMovedByRename,
    CorruptRetimedByTouch,
    // Timeouts.
    IgnoresTimeout,
}

/// Each mutant and the case the guide says kills it (it must be among those that fail).
const MUTANTS: &[(Mutant, &str)] = &[
    (
        Mutant::GetReturnsExpired,
        "expired_records_are_never_returned",
    ),
    (
        Mutant::LiveAtExpiresAt,
        "expired_records_are_never_returned",
    ),
    (
        Mutant::CountIncludesExpired,
        "count_follows_creates_destroys_and_expiry",
    ),
    (Mutant::ListIncludesExpired, "owner_listing_and_revocation"),
    (Mutant::InsertOverwritesLive, "create_never_overwrites"),
    (Mutant::InsertRefusesExpiredId, "expired_ids_are_free"),
    (
        Mutant::InsertStoresCallerVersion,
        "insert_stores_every_field",
    ),
    (Mutant::InsertResetsCreatedAt, "insert_stores_every_field"),
    (
        Mutant::InsertDropsDeadline,
        "every_write_keeps_the_deadline",
    ),
    (Mutant::SetReusesVersion, "set_never_reuses_a_version"),
    (Mutant::SetCountsExpiredVersion, "expired_ids_are_free"),
    (Mutant::SetKeepsOldOwner, "set_stores_every_field"),
    (Mutant::SetDropsDeadline, "every_write_keeps_the_deadline"),
    (Mutant::UpdateIgnoresVersion, "update_is_compare_and_swap"),
    (
        Mutant::UpdateResurrects,
        "stale_update_after_destroy_resurrects_nothing",
    ),
    (Mutant::UpdateKeepsOldOwner, "update_stores_every_field"),
    (Mutant::UpdateKeepsOldExpiry, "update_stores_every_field"),
    (
        Mutant::UpdateDropsDeadline,
        "every_write_keeps_the_deadline",
    ),
    (
        Mutant::FailedUpdateAdvancesVersion,
        "update_is_compare_and_swap",
    ),
    (
        Mutant::UpdateLeavesRecordVersion,
        "update_is_compare_and_swap",
    ),
    (
        Mutant::VersionsWrapAtTheMaximum,
        "versions_stop_at_the_maximum",
    ),
    (
        Mutant::TouchBumpsVersion,
        "touch_extends_and_changes_nothing_else",
    ),
    (
        Mutant::TouchPassesDeadline,
        "touch_never_passes_the_deadline",
    ),
    (
        Mutant::TouchOnlyExtends,
        "touch_may_shorten_and_a_past_time_ends_the_session",
    ),
    (
        Mutant::TouchResurrects,
        "expired_records_are_never_returned",
    ),
    (
        Mutant::TouchReportsMissingAsLive,
        "touch_extends_and_changes_nothing_else",
    ),
    (
        Mutant::TouchResetsCreatedAt,
        "touch_extends_and_changes_nothing_else",
    ),
    (Mutant::RenameOverwritesTarget, "rename_never_overwrites"),
    (
        Mutant::RenameKeepsSource,
        "cycle_id_keeps_data_and_kills_the_old_id",
    ),
    (
        Mutant::RenameDropsDeadline,
        "every_write_keeps_the_deadline",
    ),
    (Mutant::RenameResetsCreatedAt, "rename_keeps_every_field"),
    (Mutant::RenameResetsVersion, "rename_keeps_every_field"),
    (
        Mutant::RenameDropsOwner,
        "cycle_id_keeps_data_and_kills_the_old_id",
    ),
    (Mutant::RenameOntoItselfMoves, "rename_onto_itself"),
    (Mutant::RenameRefusesExpiredTarget, "expired_ids_are_free"),
    (Mutant::OwnerMatchesPrefix, "owners_match_exactly"),
    (Mutant::OwnerIgnoresCase, "owners_match_exactly"),
    (Mutant::RevokeMatchesPrefix, "owners_match_exactly"),
    (
        Mutant::RevokeSkipsBusySessions,
        "destroy_by_owner_ends_busy_sessions",
    ),
    (
        Mutant::RevokeMissesMovedSessions,
        "destroy_by_owner_catches_sessions_being_moved",
    ),
    (Mutant::RevokeCountsNothing, "owner_listing_and_revocation"),
    (
        Mutant::LimitKeepsOldest,
        "owner_limit_ends_the_oldest_sessions",
    ),
    (
        Mutant::LimitCountsTwins,
        "owner_limit_racing_cycle_id_keeps_the_newest",
    ),
    (
        Mutant::PurgeRemovesSoonExpiring,
        "delete_expired_purges_only_expired",
    ),
    (
        Mutant::PayloadMeasuresWholeRecord,
        "payload_limit_measures_the_data_json",
    ),
    (
        Mutant::UpdateSkipsPayloadCheck,
        "oversized_payloads_write_nothing",
    ),
    (
        Mutant::InsertNotAtomic,
        "concurrent_inserts_of_one_id_have_one_winner",
    ),
    (
        Mutant::UpdateNotAtomic,
        "concurrent_increments_are_never_lost",
    ),
    (
        Mutant::WriteBackAfterDestroy,
        "destroy_racing_writers_stays_destroyed",
    ),
    (Mutant::RenameNotAtomic, "concurrent_cycle_ids_move_once"),
    (
        Mutant::DeepDataStored,
        "deep_data_reads_back_or_fails_to_encode",
    ),
    (
        Mutant::IntegralFloatsBecomeIntegers,
        "round_trip_keeps_every_kind_of_data",
    ),
    (
        Mutant::CorruptReadsAsMissing,
        "corrupt_records_are_decode_errors",
    ),
    (
        Mutant::CorruptOverwrittenByUpdate,
        "corrupt_records_are_left_alone",
    ),
    (
        Mutant::CorruptMovedByRename,
        "corrupt_records_are_left_alone",
    ),
    (
        Mutant::CorruptRetimedByTouch,
        "corrupt_records_are_left_alone",
    ),
    (Mutant::IgnoresTimeout, "calls_end_within_the_timeout"),
];

/// A stored session: the data as JSON text, the rest as fields.
#[derive(Debug, Clone)]
struct Stored {
    data: String,
    version: u64,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    deadline: Option<OffsetDateTime>,
    owner: Option<String>,
}

/// The reference store (with `mutant: None`) and its mutants.
#[derive(Debug, Clone)]
struct Reference {
    map: Arc<Mutex<HashMap<SessionId, Stored>>>,
    options: StoreOptions,
    mutant: Option<Mutant>,
    /// How late every answer comes (the harness's slow store).
    slow: Option<StdDuration>,
}

/// A pause that lets racing tasks in between two steps a buggy store doesn't make atomic.
async fn gap() {
    tokio::time::sleep(StdDuration::from_millis(20)).await;
}

impl Reference {
    fn is(&self, mutant: Mutant) -> bool {
        self.mutant == Some(mutant)
    }

    fn live(&self, stored: &Stored) -> bool {
        if self.is(Mutant::LiveAtExpiresAt) {
            stored.expires_at >= now()
        } else {
            stored.expires_at > now()
        }
    }

    fn decodes(stored: &Stored) -> bool {
        serde_json::from_str::<Data>(&stored.data).is_ok()
    }

    /// The answer for a corrupt record under the policy: the decode error, or `as_missing`.
    fn corrupt<T>(&self, id: &SessionId, as_missing: T) -> Result<T> {
        let err = Error::decode(id, "the stored data is not a JSON object");
        self.options.on_corrupt(Err(err)).map(|_| as_missing)
    }

    /// Runs `call` as the store's call `operation`: late when slow, within the timeout.
    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let late = async {
            if let Some(slow) = self.slow {
                tokio::time::sleep(slow).await;
            }
            call.await
        };
        if self.is(Mutant::IgnoresTimeout) {
            return late.await;
        }
        self.options
            .within_timeout("reference", operation, late)
            .await
    }

    fn to_record(&self, id: &SessionId, stored: &Stored) -> Result<Record> {
        let data: Data = codec::parse_json(id, stored.data.as_bytes())?;
        let mut record = Record::with_id(id.clone(), stored.expires_at);
        record.set_data(data);
        record.set_created_at(stored.created_at);
        record.set_deadline(stored.deadline);
        record.set_version(stored.version);
        record.set_owner(stored.owner.clone());
        Ok(record)
    }

    /// What a write of `record` stores at `version`, checked like every write.
    fn encode(&self, record: &Record, version: u64) -> Result<Stored> {
        if !self.is(Mutant::DeepDataStored) {
            codec::check_writable(record)?;
        }
        let mut data = record.data().clone();
        for value in data.values_mut() {
            self.alter(value);
        }
        let json = serde_json::to_string(&data).map_err(|err| Error::Encode {
            id: record.id().clone(),
            reason: err.to_string(),
        })?;
        let measured = if self.is(Mutant::PayloadMeasuresWholeRecord) {
            json.len() + 64 + record.owner().map_or(0, str::len)
        } else {
            json.len()
        };
        self.options.check_size(record.id(), measured)?;
        Ok(Stored {
            data: json,
            version,
            created_at: record.created_at(),
            expires_at: record.expires_at(),
            deadline: record.deadline(),
            owner: record.owner().map(str::to_owned),
        })
    }

    /// What the data-mangling mutants do to a value on its way in.
    fn alter(&self, value: &mut Value) {
        match value {
            Value::Number(n) if self.is(Mutant::IntegralFloatsBecomeIntegers) => {
                if let Some(f) = n
                    .as_f64()
                    .filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 1e19)
                {
                    *value = Value::from(f as i64);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.alter(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.alter(v)),
            _ => {}
        }
    }

    fn next_version(&self, id: &SessionId, version: u64) -> Result<u64> {
        if self.is(Mutant::VersionsWrapAtTheMaximum) {
            return Ok(version.wrapping_add(1) % (Record::MAX_VERSION + 1));
        }
        Record::version_after(id, version)
    }

    fn owner_matches(&self, stored: &Stored, owner: &str, revoking: bool) -> bool {
        let Some(have) = stored.owner.as_deref() else {
            return false;
        };
        if (self.is(Mutant::OwnerMatchesPrefix) && !revoking)
            || (self.is(Mutant::RevokeMatchesPrefix) && revoking)
        {
            return have.starts_with(owner);
        }
        if self.is(Mutant::OwnerIgnoresCase) {
            return have.to_lowercase() == owner.to_lowercase();
        }
        have == owner
    }
}

#[async_trait]
impl SessionStore for Reference {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        self.call("get", async {
            let map = self.map.lock().await;
            let Some(stored) = map.get(id) else {
                return Ok(None);
            };
            if !self.live(stored) && !self.is(Mutant::GetReturnsExpired) {
                return Ok(None);
            }
            if !Self::decodes(stored) && self.is(Mutant::CorruptReadsAsMissing) {
                return Ok(None);
            }
            self.options.on_corrupt(self.to_record(id, stored))
        })
        .await
    }

    async fn insert(&self, record: &mut Record) -> Result<bool> {
        self.call("insert", async {
            let version = if self.is(Mutant::InsertStoresCallerVersion) {
                record.version().max(1)
            } else {
                self.next_version(record.id(), record.version())?
            };
            let mut stored = self.encode(record, version)?;
            if self.is(Mutant::InsertResetsCreatedAt) {
                stored.created_at = now();
            }
            if self.is(Mutant::InsertDropsDeadline) {
                stored.deadline = None;
            }
            let mut map = self.map.lock().await;
            let taken = map.get(record.id()).map(|s| {
                self.live(s) || Self::decodes(s) && self.is(Mutant::InsertRefusesExpiredId)
            });
            if taken == Some(true) && !self.is(Mutant::InsertOverwritesLive) {
                return Ok(false);
            }
            if self.is(Mutant::InsertNotAtomic) {
                drop(map);
                gap().await;
                map = self.map.lock().await;
            }
            map.insert(record.id().clone(), stored);
            record.set_version(version);
            Ok(true)
        })
        .await
    }

    async fn set(&self, record: &mut Record) -> Result<()> {
        self.call("set", async {
            codec::check_writable(record)?;
            let mut map = self.map.lock().await;
            let stored_version = map
                .get(record.id())
                .filter(|s| self.live(s) || self.is(Mutant::SetCountsExpiredVersion))
                .map_or(0, |s| s.version);
            let base = if self.is(Mutant::SetReusesVersion) {
                record.version()
            } else {
                stored_version.max(record.version())
            };
            let version = self.next_version(record.id(), base)?;
            let mut stored = self.encode(record, version)?;
            if self.is(Mutant::SetKeepsOldOwner)
                && let Some(old) = map.get(record.id())
            {
                stored.owner = old.owner.clone();
            }
            if self.is(Mutant::SetDropsDeadline) {
                stored.deadline = None;
            }
            map.insert(record.id().clone(), stored);
            record.set_version(version);
            Ok(())
        })
        .await
    }

    async fn update(&self, record: &mut Record) -> Result<()> {
        self.call("update", async {
            let conflict = Error::Conflict {
                id: record.id().clone(),
            };
            let version = self.next_version(record.id(), record.version())?;
            let mut stored = if self.is(Mutant::UpdateSkipsPayloadCheck) {
                let mut lenient = self.clone();
                lenient.options.max_payload_bytes = usize::MAX;
                lenient.encode(record, version)?
            } else {
                self.encode(record, version)?
            };
            let mut map = self.map.lock().await;
            let current = map.get(record.id()).filter(|s| self.live(s)).cloned();
            match &current {
                None if self.is(Mutant::UpdateResurrects) => {}
                None => return Err(conflict),
                Some(s) if !Self::decodes(s) && !self.is(Mutant::CorruptOverwrittenByUpdate) => {
                    return self.corrupt(record.id(), ()).and(Err(conflict));
                }
                Some(s)
                    if s.version != record.version() && !self.is(Mutant::UpdateIgnoresVersion) =>
                {
                    if self.is(Mutant::FailedUpdateAdvancesVersion) {
                        record.set_version(version);
                    }
                    return Err(conflict);
                }
                Some(_) => {}
            }
            if let Some(old) = &current {
                if self.is(Mutant::UpdateKeepsOldOwner) {
                    stored.owner = old.owner.clone();
                }
                if self.is(Mutant::UpdateKeepsOldExpiry) {
                    stored.expires_at = old.expires_at;
                }
            }
            if self.is(Mutant::UpdateDropsDeadline) {
                stored.deadline = None;
            }
            if self.is(Mutant::UpdateNotAtomic) || self.is(Mutant::WriteBackAfterDestroy) {
                drop(map);
                gap().await;
                map = self.map.lock().await;
                let still = map.get(record.id()).map(|s| s.version);
                if self.is(Mutant::UpdateNotAtomic) && still.is_none() {
                    return Err(conflict);
                }
            }
            map.insert(record.id().clone(), stored);
            if !self.is(Mutant::UpdateLeavesRecordVersion) {
                record.set_version(version);
            }
            Ok(())
        })
        .await
    }

    async fn touch(&self, id: &SessionId, expires_at: OffsetDateTime) -> Result<bool> {
        self.call("touch", async {
            let mut map = self.map.lock().await;
            let Some(stored) = map.get_mut(id) else {
                return Ok(self.is(Mutant::TouchReportsMissingAsLive));
            };
            if !self.live(stored) && !self.is(Mutant::TouchResurrects) {
                return Ok(false);
            }
            if !Self::decodes(stored) && !self.is(Mutant::CorruptRetimedByTouch) {
                return self.corrupt(id, false);
            }
            let mut target = session_core::to_millis(expires_at);
            if let Some(deadline) = stored
                .deadline
                .filter(|_| !self.is(Mutant::TouchPassesDeadline))
            {
                target = target.min(deadline);
            }
            if self.is(Mutant::TouchOnlyExtends) {
                target = target.max(stored.expires_at);
            }
            stored.expires_at = target;
            if self.is(Mutant::TouchBumpsVersion) {
                stored.version += 1;
            }
            if self.is(Mutant::TouchResetsCreatedAt) {
                stored.created_at = now();
            }
            Ok(true)
        })
        .await
    }

    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.call("destroy", async {
            self.map.lock().await.remove(id);
            Ok(())
        })
        .await
    }

    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        if from == to && !self.is(Mutant::RenameOntoItselfMoves) {
            return rename_onto_itself(self, from).await;
        }
        self.call("rename", async {
            let mut map = self.map.lock().await;
            let Some(source) = map.get(from).filter(|s| self.live(s)).cloned() else {
                return Ok(Rename::SourceMissing);
            };
            if from == to {
                return Ok(Rename::Moved);
            }
            if !Self::decodes(&source) && !self.is(Mutant::CorruptMovedByRename) {
                return self.corrupt(from, Rename::SourceMissing);
            }
            let target = map.get(to);
            let target_taken = target.is_some_and(|t| self.live(t))
                || (target.is_some() && self.is(Mutant::RenameRefusesExpiredTarget));
            if target_taken && !self.is(Mutant::RenameOverwritesTarget) {
                return Ok(Rename::TargetTaken);
            }
            if self.is(Mutant::RenameNotAtomic) {
                drop(map);
                gap().await;
                map = self.map.lock().await;
            }
            if self.is(Mutant::LimitCountsTwins) {
                // Two steps, as the trait allows: copy, then retire the source unless a
                // destroy came first.
                map.insert(to.clone(), source);
                drop(map);
                gap().await;
                map = self.map.lock().await;
                if map.remove(from).is_none() {
                    map.remove(to);
                    return Ok(Rename::SourceMissing);
                }
                return Ok(Rename::Moved);
            }
            let mut moved = source;
            if self.is(Mutant::RenameDropsDeadline) {
                moved.deadline = None;
            }
            if self.is(Mutant::RenameResetsCreatedAt) {
                moved.created_at = now();
            }
            if self.is(Mutant::RenameResetsVersion) {
                moved.version = 1;
            }
            if self.is(Mutant::RenameDropsOwner) {
                moved.owner = None;
            }
            map.insert(to.clone(), moved);
            if !self.is(Mutant::RenameKeepsSource) {
                map.remove(from);
            }
            Ok(Rename::Moved)
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.call("delete_expired", async {
            let mut map = self.map.lock().await;
            let horizon = if self.is(Mutant::PurgeRemovesSoonExpiring) {
                now() + time::Duration::hours(1)
            } else {
                now()
            };
            let before = map.len();
            map.retain(|_, s| s.expires_at > horizon);
            Ok((before - map.len()) as u64)
        })
        .await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.call("list_by_owner", async {
            let map = self.map.lock().await;
            let mut listed = Vec::new();
            for (id, stored) in map.iter() {
                let live = self.live(stored) || self.is(Mutant::ListIncludesExpired);
                if live && self.owner_matches(stored, owner, false) {
                    listed.extend(self.options.on_corrupt(self.to_record(id, stored))?);
                }
            }
            Ok(listed)
        })
        .await
    }

    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.call("destroy_by_owner", async {
            let mut map = self.map.lock().await;
            let listed: Vec<(SessionId, u64)> = map
                .iter()
                .filter(|(_, s)| self.live(s) && self.owner_matches(s, owner, true))
                .map(|(id, s)| (id.clone(), s.version))
                .collect();
            if self.is(Mutant::RevokeSkipsBusySessions)
                || self.is(Mutant::RevokeMissesMovedSessions)
            {
                drop(map);
                gap().await;
                map = self.map.lock().await;
            }
            let mut removed = 0;
            for (id, version) in listed {
                let unchanged = map.get(&id).is_some_and(|s| s.version == version);
                if self.is(Mutant::RevokeSkipsBusySessions) && !unchanged {
                    continue;
                }
                if map.remove(&id).is_some() {
                    removed += 1;
                }
            }
            if self.is(Mutant::RevokeCountsNothing) {
                return Ok(0);
            }
            Ok(removed)
        })
        .await
    }

    async fn count(&self) -> Result<u64> {
        self.call("count", async {
            let map = self.map.lock().await;
            let counted = map
                .values()
                .filter(|s| self.live(s) || self.is(Mutant::CountIncludesExpired))
                .count();
            Ok(counted as u64)
        })
        .await
    }

    async fn limit_owner(&self, owner: &str, keep: usize) -> Result<u64> {
        if !self.is(Mutant::LimitKeepsOldest) && !self.is(Mutant::LimitCountsTwins) {
            return Provided(self).limit_owner(owner, keep).await;
        }
        let mut sessions = self.list_by_owner(owner).await?;
        sessions.sort_by_key(|s| s.created_at());
        if self.is(Mutant::LimitCountsTwins) {
            sessions.reverse(); // newest first, every listed record counted
        }
        let mut destroyed = 0;
        for session in sessions.iter().skip(keep) {
            self.destroy(session.id()).await?;
            destroyed += 1;
        }
        Ok(destroyed)
    }

    fn timeout(&self) -> StdDuration {
        self.options.timeout
    }
}

/// The reference store with the trait's provided `limit_owner`.
/// Pages in id order, the cursor being the last id of a page.
#[async_trait]
impl ScanSessions for Reference {
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage> {
        self.call("scan", async {
            let map = self.map.lock().await;
            let mut ids: Vec<&SessionId> = map
                .keys()
                .filter(|id| id.expose() > cursor.as_str())
                .collect();
            ids.sort_by_key(|id| id.expose());
            let more = ids.len() > limit;
            ids.truncate(limit.max(1));
            let (mut records, mut corrupt) = (Vec::new(), 0);
            for id in &ids {
                let stored = &map[*id];
                match self.to_record(id, stored) {
                    Ok(record) if self.live(stored) => records.push(record),
                    Ok(_) => {}
                    Err(_) => corrupt += 1,
                }
            }
            let next = more.then(|| ScanCursor::from_backend(ids[ids.len() - 1].expose()));
            Ok(ScanPage::new(records, corrupt, next))
        })
        .await
    }
}

#[derive(Debug)]
struct Provided<'a>(&'a Reference);

#[async_trait]
impl SessionStore for Provided<'_> {
    async fn get(&self, id: &SessionId) -> Result<Option<Record>> {
        self.0.get(id).await
    }
    async fn insert(&self, record: &mut Record) -> Result<bool> {
        self.0.insert(record).await
    }
    async fn set(&self, record: &mut Record) -> Result<()> {
        self.0.set(record).await
    }
    async fn update(&self, record: &mut Record) -> Result<()> {
        self.0.update(record).await
    }
    async fn touch(&self, id: &SessionId, at: OffsetDateTime) -> Result<bool> {
        self.0.touch(id, at).await
    }
    async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.0.destroy(id).await
    }
    async fn rename(&self, from: &SessionId, to: &SessionId) -> Result<Rename> {
        self.0.rename(from, to).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.0.delete_expired().await
    }
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<Record>> {
        self.0.list_by_owner(owner).await
    }
    async fn destroy_by_owner(&self, owner: &str) -> Result<u64> {
        self.0.destroy_by_owner(owner).await
    }
    async fn count(&self) -> Result<u64> {
        self.0.count().await
    }
}

struct ReferenceHarness(Option<Mutant>);

impl ReferenceHarness {
    fn build(&self, options: StoreOptions, slow: Option<StdDuration>) -> Reference {
        Reference {
            map: Arc::default(),
            options,
            mutant: self.0,
            slow,
        }
    }
}

#[async_trait]
impl Harness for ReferenceHarness {
    type Store = Reference;

    async fn store(&self, options: StoreOptions) -> Reference {
        self.build(options, None)
    }

    async fn write_corrupt(
        &self,
        store: &Reference,
        id: &SessionId,
    ) -> std::result::Result<(), Skip> {
        let stored = Stored {
            data: "{not json".into(),
            version: 1,
            created_at: now(),
            expires_at: now() + time::Duration::hours(1),
            deadline: None,
            owner: None,
        };
        store.map.lock().await.insert(id.clone(), stored);
        Ok(())
    }

    async fn slow_store(&self, options: StoreOptions) -> std::result::Result<Reference, Unrun> {
        let slow = options.timeout * 3;
        Ok(self.build(options, Some(slow)))
    }
}

/// The cases that fail for `mutant` (all of them run at once, each in a task of its own).
async fn failing_cases(mutant: Option<Mutant>) -> Vec<&'static str> {
    let harness = Arc::new(ReferenceHarness(mutant));
    let tasks: Vec<_> = conformance::cases::all::<ReferenceHarness>()
        .into_iter()
        .map(|(name, case)| {
            let harness = Arc::clone(&harness);
            let run = tokio::spawn(async move { case(&harness).await });
            (name, run)
        })
        .collect();
    let mut failing = Vec::new();
    for (name, task) in tasks {
        match tokio::time::timeout(StdDuration::from_secs(60), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(Unrun::NotApplicable(_)))) => {
                panic!("{name} does not apply to the reference store")
            }
            Ok(Ok(Err(Unrun::Skip(Skip(reason))))) => {
                panic!("{name} skipped on the reference store: {reason}")
            }
            // It panicked (a failed assertion), or hung.
            Ok(Err(_)) | Err(_) => failing.push(name),
        }
    }
    failing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_store_passes_every_case() {
    let failing = failing_cases(None).await;
    assert!(
        failing.is_empty(),
        "the reference store fails: {failing:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutant_fails_the_case_that_names_it() {
    assert!(MUTANTS.len() >= 40, "at least 40 mutants");
    // Every mutant at once: the cases mostly wait (expiries), so this takes about as long as
    // the slowest case.
    let runs: Vec<_> = MUTANTS
        .iter()
        .map(|(mutant, killer)| {
            let mutant = *mutant;
            (mutant, *killer, tokio::spawn(failing_cases(Some(mutant))))
        })
        .collect();
    let mut problems = Vec::new();
    for (mutant, killer, run) in runs {
        let failing = run.await.unwrap();
        eprintln!("{mutant:?}: killed by {failing:?}");
        if failing.is_empty() {
            problems.push(format!("{mutant:?} passes every case"));
        } else if !failing.contains(&killer) {
            problems.push(format!(
                "{mutant:?} is killed by {failing:?}, not by {killer} as the guide says"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_store_scans() {
    let store = ReferenceHarness(None).build(StoreOptions::default(), None);
    conformance::check_scan(&store).await;
}

/// A [`MigratingStore`] between two reference stores, sessions starting where `phase` says.
struct MigratingHarness(Phase);

#[async_trait]
impl Harness for MigratingHarness {
    type Store = PhasedMigration<Reference, Reference>;

    async fn store(&self, options: StoreOptions) -> Self::Store {
        let build = || ReferenceHarness(None).build(options.clone(), None);
        PhasedMigration::new(MigratingStore::new(build(), build()), self.0)
    }

    async fn write_corrupt(
        &self,
        store: &Self::Store,
        id: &SessionId,
    ) -> std::result::Result<(), Skip> {
        // Where a session of this phase would be found first.
        let holder = match self.0 {
            Phase::InOld => store.store.old(),
            Phase::Fresh | Phase::Copied => store.store.new_store(),
        };
        ReferenceHarness(None).write_corrupt(holder, id).await
    }

    async fn slow_store(&self, options: StoreOptions) -> std::result::Result<Self::Store, Unrun> {
        let slow = Some(options.timeout * 3);
        let build = || ReferenceHarness(None).build(options.clone(), slow);
        Ok(PhasedMigration::new(
            MigratingStore::new(build(), build()),
            self.0,
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrating_store_passes_every_case_at_each_phase() {
    let mut failing = Vec::new();
    for phase in [Phase::Fresh, Phase::InOld, Phase::Copied] {
        let harness = Arc::new(MigratingHarness(phase));
        let tasks: Vec<_> = conformance::cases::all::<MigratingHarness>()
            .into_iter()
            .map(|(name, case)| {
                let harness = Arc::clone(&harness);
                (name, tokio::spawn(async move { case(&harness).await }))
            })
            .collect();
        for (name, task) in tasks {
            match tokio::time::timeout(StdDuration::from_secs(60), task).await {
                Ok(Ok(Ok(()) | Err(Unrun::NotApplicable(_)))) => {}
                other => failing.push(format!("{phase:?}: {name}: {other:?}")),
            }
        }
    }
    assert!(
        failing.is_empty(),
        "the migrating store fails: {failing:#?}"
    );
}

/// Sessions not moved yet, each read (which copies it over) and destroyed at once: none may
/// come back. Without the tombstone, a read that took the old copy just before the destroy
/// lands it in the new store after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_racing_a_first_read_stays_destroyed() {
    let build = || ReferenceHarness(None).build(StoreOptions::default(), None);
    let store = Arc::new(MigratingStore::new(build(), build()));
    let mut resurrected = 0;
    for _ in 0..300 {
        let mut record = Record::new(now() + time::Duration::hours(1));
        store.old().insert(&mut record).await.unwrap();
        let id = record.id().clone();
        let (reader, destroyer) = (Arc::clone(&store), Arc::clone(&store));
        let (read_id, destroy_id) = (id.clone(), id.clone());
        let read = tokio::spawn(async move { reader.get(&read_id).await.unwrap() });
        let destroy = tokio::spawn(async move { destroyer.destroy(&destroy_id).await.unwrap() });
        read.await.unwrap();
        destroy.await.unwrap();
        if store.get(&id).await.unwrap().is_some() {
            resurrected += 1;
        }
    }
    assert_eq!(resurrected, 0, "destroyed sessions came back");
}

//! Read-modify-write with retry: the short, safe path for concurrent requests.

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::record::Record;
use crate::store::SessionStore;

/// The counter of lost races [`modify`] read again after.
pub const MODIFY_RETRIES: &str = "session_modify_retries_total";
/// The counter of [`modify`] calls that gave up with [`Error::Conflict`].
pub const MODIFY_GIVE_UPS: &str = "session_modify_give_ups_total";

/// Reads the session, applies `change` to it and stores it with a compare-and-swap
/// ([`SessionStore::update`]), reading again and re-applying `change` when another writer
/// got there first. Returns the stored record and what `change` returned, or `None` when
/// there is no live session (it is never resurrected).
///
/// `change` may run more than once, so it should only compute from the record it is given.
/// After `attempts` lost races the [`Error::Conflict`] is returned. Every lost race it reads
/// again after counts in the `session_modify_retries_total` metric, every give-up in
/// `session_modify_give_ups_total` (through the `metrics` facade: free when no recorder is
/// installed). With `n` writers that
/// each make one change, `n` attempts always suffice: every lost race is another writer's
/// success.
///
/// ```
/// # async fn demo(store: &dyn session_core::SessionStore, id: &session_core::SessionId)
/// # -> session_core::Result<()> {
/// let visits = session_core::modify(store, id, 8, |record| {
///     let visits = record.get::<u64>("visits").ok().flatten().unwrap_or(0) + 1;
///     record.insert("visits", visits).ok();
///     visits
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn modify<S, T, F>(
    store: &S,
    id: &SessionId,
    attempts: usize,
    mut change: F,
) -> Result<Option<(Record, T)>>
where
    S: SessionStore + ?Sized,
    F: FnMut(&mut Record) -> T + Send,
    T: Send,
{
    let attempts = attempts.max(1);
    for attempt in 1..=attempts {
        let Some(mut record) = store.get(id).await? else {
            return Ok(None);
        };
        let output = change(&mut record);
        match store.update(&mut record).await {
            Ok(()) => return Ok(Some((record, output))),
            Err(err) if err.is_conflict() => {
                if attempt < attempts {
                    metrics::counter!(MODIFY_RETRIES).increment(1);
                }
            }
            Err(err) => return Err(err),
        }
    }
    metrics::counter!(MODIFY_GIVE_UPS).increment(1);
    Err(Error::Conflict { id: id.clone() })
}

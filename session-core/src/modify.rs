//! Read-modify-write with retry: the short, safe path for concurrent requests.

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::record::Record;
use crate::store::SessionStore;

/// Reads the session, applies `change` to it and stores it with a compare-and-swap
/// ([`SessionStore::update`]), reading again and re-applying `change` when another writer
/// got there first. Returns the stored record and what `change` returned, or `None` when
/// there is no live session (it is never resurrected).
///
/// `change` may run more than once, so it should only compute from the record it is given.
/// After `attempts` lost races the [`Error::Conflict`] is returned. With `n` writers that
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
    for _ in 0..attempts.max(1) {
        let Some(mut record) = store.get(id).await? else {
            return Ok(None);
        };
        let output = change(&mut record);
        match store.update(&mut record).await {
            Ok(()) => return Ok(Some((record, output))),
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(err),
        }
    }
    Err(Error::Conflict { id: id.clone() })
}

//! The core of session-stores: the [`SessionStore`] trait every backend implements, the
//! session [`Record`], validated [`SessionId`]s, [`Expiry`] policies, one [`Error`] type,
//! and (feature `conformance`) the public conformance suite any store can run.
//!
//! ```
//! use session_core::{Expiry, SessionStore, modify};
//! use time::Duration;
//!
//! async fn login(store: &dyn SessionStore) -> session_core::Result<()> {
//!     let expiry = Expiry::idle_and_absolute(Duration::minutes(30), Duration::hours(12));
//!     let mut session = expiry.new_record();
//!     session.insert("user_id", 42).ok();
//!     session.set_owner(Some("42".into()));
//!     store.create(&mut session).await?; // never overwrites another session
//!
//!     // Later requests: read, change, compare-and-swap, retried on conflict.
//!     modify(store, session.id(), 8, |s| {
//!         let visits = s.get::<u32>("visits").ok().flatten().unwrap_or(0);
//!         s.insert("visits", visits + 1).ok();
//!     })
//!     .await?;
//!
//!     // At privilege changes, rotate the id (fixation defence); at logout, destroy.
//!     if let Some(new_id) = store.cycle_id(session.id()).await? {
//!         store.destroy(&new_id).await?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Backends: `session-memory`, `session-redis`, `session-postgres`, `session-mongo`.

pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod expired;
pub mod express;
#[doc = include_str!("../GUIDE.md")]
pub mod guide {}
mod expiry;
mod field_texts;
mod hashed;
mod id;
mod invalidation;
mod json_text;
mod migrating;
mod modify;
mod options;
mod owner_path;
mod pruner;
mod record;
mod scan;
mod signed_cookie;
mod store;
mod time_util;

pub use async_trait::async_trait;
pub use error::{BoxError, Error, Result};
pub use expired::{ClaimExpired, Expired, ExpiredSessions, ExpiryFeed, ExpirySink, WatchOptions};
pub use expiry::Expiry;
pub use field_texts::FieldTexts;
pub use hashed::HashedIds;
pub use id::{Fingerprint, InvalidId, MAX_ID_LEN, MIN_ID_LEN, SessionId};
pub use invalidation::{
    Invalidation, InvalidationFeed, InvalidationSink, Invalidations, TrackOptions,
};
pub use migrating::{MIGRATION_COPY_WINDOW, MigratingStore, TOMBSTONE_KEY, is_tombstone};
pub use modify::{MODIFY_GIVE_UPS, MODIFY_RETRIES, modify};
pub use options::{CorruptPolicy, StoreOptions};
pub use owner_path::OwnerPath;
pub use pruner::Pruner;
pub use record::{Data, Record};
pub use scan::{KeysetPage, ScanCursor, ScanPage, ScanSessions};
pub use signed_cookie::SignedCookie;
pub use store::{MAX_ID_ATTEMPTS, Rename, SessionStore, rename_onto_itself};
pub use time_util::{from_unix_millis, now, to_millis, unix_millis};

//! The Lua scripts (in `lua/`), shared by both clients. Times come from the caller (`now`,
//! Unix milliseconds) so the store judges expiry by one clock.
//!
//! Most scripts touch exactly one key, so they are valid on a Redis Cluster. Three span
//! keys ([`ScriptId::Rename`], [`ScriptId::RevokeOwner`], [`ScriptId::ListOwner`]): they make a
//! move, a revocation and a listing atomic on one server (standalone or Sentinel), and are
//! never sent to a cluster, where those steps run one key at a time. On one server the
//! writes of an owned session also raise its owner's index in the same script (the set and
//! update scripts take the index as a second key, the touch script finds it from the
//! session's owner): one round trip where a cluster needs two or three.

macro_rules! lua {
    ($name:literal) => {
        include_str!(concat!("lua/", $name, ".lua"))
    };
}

macro_rules! native {
    () => {
        lua!("native_prelude")
    };
}

/// What a write script runs first: on one server, raising the owner's index (KEYS[2]).
macro_rules! owned {
    () => {
        concat!(lua!("index_prelude"), lua!("index_first"))
    };
}

macro_rules! express {
    () => {
        concat!(lua!("expiry_prelude"), lua!("express_prelude"))
    };
}

/// The scripts this store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScriptId {
    Insert,
    Update,
    Set,
    Touch,
    CompareAndDelete,
    IndexAdd,
    IndexList,
    ExpressRead,
    ExpressTake,
    ExpressUpdate,
    ExpressSet,
    ExpressTouch,
    Rename,
    OwnerDelete,
    RevokeOwner,
    ListOwner,
}

impl ScriptId {
    pub(crate) const ALL: [ScriptId; 16] = [
        Self::Insert,
        Self::Update,
        Self::Set,
        Self::Touch,
        Self::CompareAndDelete,
        Self::IndexAdd,
        Self::IndexList,
        Self::ExpressRead,
        Self::ExpressTake,
        Self::ExpressUpdate,
        Self::ExpressSet,
        Self::ExpressTouch,
        Self::Rename,
        Self::OwnerDelete,
        Self::RevokeOwner,
        Self::ListOwner,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether the caller asked for a read: reading a session with its expiry
    /// (`ExpressRead`) or an owner's sessions (`IndexList`, `ListOwner`). These scripts also
    /// write in passing (an express-session value Node wrote is stamped with its creation
    /// time; expired members leave the owner's index), but nothing the caller asked for:
    /// under `Durability::Replicated` they are sent without `WAIT` (and outside the write
    /// turns), so reads go on while no replica confirms writes. A failover may lose such a
    /// side write; it is made again by the next read (a stamp lost this way is replaced by
    /// a later creation time).
    pub(crate) fn reads(self) -> bool {
        matches!(self, Self::ExpressRead | Self::IndexList | Self::ListOwner)
    }

    pub(crate) fn source(self) -> &'static str {
        match self {
            Self::Insert => concat!(owned!(), lua!("insert")),
            Self::Update => concat!(native!(), owned!(), lua!("update")),
            Self::Set => concat!(native!(), lua!("version_prelude"), owned!(), lua!("set")),
            Self::Touch => concat!(native!(), lua!("index_prelude"), lua!("touch")),
            Self::CompareAndDelete => concat!(lua!("expiry_prelude"), lua!("compare_and_delete")),
            Self::IndexAdd => concat!(lua!("index_prelude"), lua!("index_add")),
            Self::IndexList => lua!("index_list"),
            Self::ExpressRead => concat!(express!(), lua!("express_read")),
            Self::ExpressTake => concat!(express!(), lua!("express_take")),
            Self::ExpressUpdate => concat!(express!(), owned!(), lua!("express_update")),
            Self::ExpressSet => concat!(
                express!(),
                lua!("version_prelude"),
                owned!(),
                lua!("express_set")
            ),
            Self::ExpressTouch => concat!(express!(), lua!("express_touch")),
            Self::Rename => concat!(
                lua!("expiry_prelude"),
                lua!("index_prelude"),
                lua!("rename")
            ),
            Self::OwnerDelete => concat!(express!(), lua!("owner_prelude"), lua!("owner_delete")),
            Self::RevokeOwner => concat!(express!(), lua!("owner_prelude"), lua!("revoke_owner")),
            Self::ListOwner => concat!(express!(), lua!("list_owner")),
        }
    }
}

/// Replies of `Update` and of the touch scripts.
pub(crate) const MISSING: i64 = 0;
pub(crate) const DONE: i64 = 1;
pub(crate) const CORRUPT: i64 = -1;
/// A touch found another owner than the caller read: read again.
pub(crate) const OWNER_CHANGED: i64 = 2;
/// `Set`: the next version would pass `Record::MAX_VERSION`.
pub(crate) const VERSION_EXHAUSTED: i64 = -2;
/// `RevokeOwner`, `ListOwner`: the index gained a member since the caller listed it.
pub(crate) const INDEX_CHANGED: i64 = -1;
/// `Rename`: the source changed since read, or the target is taken.
pub(crate) const SOURCE_CHANGED: i64 = 2;
pub(crate) const TARGET_TAKEN: i64 = 3;

#[cfg(test)]
mod tests {
    use session_core::{Record, StoreOptions, codec, now, unix_millis};

    use super::ScriptId;

    /// `UPDATE` reads the front of what the codec writes: if the codec's field order or
    /// format number changes, this fails instead of every update quietly decoding in full.
    #[test]
    fn update_fast_path_matches_what_the_codec_writes() {
        let mut record = Record::new(now() + time::Duration::hours(1));
        record.set_owner(Some("user-7".into()));
        let bytes = codec::encode(&record, &StoreOptions::default()).unwrap();
        let front = format!(
            r#"{{"format":{},"version":1,"created_at":{},"expires_at":{},"#,
            codec::CURRENT_FORMAT,
            unix_millis(record.created_at()),
            unix_millis(record.expires_at()),
        );
        assert!(bytes.starts_with(front.as_bytes()), "{front}");
        assert!(bytes.ends_with(b"}"));
        let pattern = format!(r#"'^{{"format":{},"version":"#, codec::CURRENT_FORMAT);
        assert!(ScriptId::Update.source().contains(&pattern), "{pattern}");
    }
}

//! The Lua scripts, shared by both clients. Each touches exactly one key, so each is valid
//! on a Redis Cluster; times come from the caller (`now`, Unix milliseconds) so the store
//! judges expiry by one clock.

/// The scripts this store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScriptId {
    Update,
    Touch,
    CompareAndDelete,
    IndexAdd,
    IndexList,
    IndexRemove,
}

impl ScriptId {
    pub(crate) const ALL: [ScriptId; 6] = [
        Self::Update,
        Self::Touch,
        Self::CompareAndDelete,
        Self::IndexAdd,
        Self::IndexList,
        Self::IndexRemove,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn source(self) -> &'static str {
        match self {
            Self::Update => UPDATE,
            Self::Touch => TOUCH,
            Self::CompareAndDelete => COMPARE_AND_DELETE,
            Self::IndexAdd => INDEX_ADD,
            Self::IndexList => INDEX_LIST,
            Self::IndexRemove => INDEX_REMOVE,
        }
    }
}

/// Replies of `Update` and the first element of `Touch`'s reply.
pub(crate) const MISSING: i64 = 0;
pub(crate) const DONE: i64 = 1;
pub(crate) const CORRUPT: i64 = -1;

/// Compare-and-swap on the stored `version`.
/// KEYS[1] session; ARGV: expected version, new value, PXAT, now.
/// Returns 1 (written), 0 (missing, expired or another version), -1 (stored value corrupt).
const UPDATE: &str = r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, rec = pcall(cjson.decode, raw)
if not ok or type(rec) ~= 'table' or type(rec.version) ~= 'number'
  or type(rec.expires_at) ~= 'number' then return -1 end
if rec.expires_at <= tonumber(ARGV[4]) then return 0 end
if rec.version ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
"#;

/// Moves the expiry (capped at the stored deadline) without the data crossing the wire: the
/// stored JSON's top-level `expires_at` number is replaced in place (the JSON is not
/// re-encoded, so large integers and empty objects in the data stay byte for byte).
/// KEYS[1] session; ARGV: target expiry, now.
/// Returns {0} (missing or expired), {-1} (corrupt), {1} or {1, owner, new expiry}.
const TOUCH: &str = r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
local ok, rec = pcall(cjson.decode, raw)
if not ok or type(rec) ~= 'table' or type(rec.expires_at) ~= 'number' then return {-1} end
local now = tonumber(ARGV[2])
if rec.expires_at <= now then return {0} end
local target = tonumber(ARGV[1])
if type(rec.deadline) == 'number' and rec.deadline < target then target = rec.deadline end
local s, e, old = string.find(raw, '"expires_at":(%-?%d+)')
if not s or tonumber(old) ~= rec.expires_at then return {-1} end
local at = string.format('%d', target)
if target <= now then
  redis.call('DEL', KEYS[1])
  return {1}
end
redis.call('SET', KEYS[1], string.sub(raw, 1, s - 1) .. '"expires_at":' .. at .. string.sub(raw, e + 1), 'PXAT', at)
if type(rec.owner) == 'string' then return {1, rec.owner, at} end
return {1}
"#;

/// Deletes the key only if it still holds exactly the given value.
/// KEYS[1]; ARGV[1] expected value. Returns 1 (deleted) or 0.
const COMPARE_AND_DELETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Adds (or raises) an owner index entry, prunes stale ones, and makes the index key expire
/// with its last member. KEYS[1] index; ARGV: session id, expiry, now.
const INDEX_ADD: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(top[2]))) end
return 1
"#;

/// Prunes entries that expired and lists the rest. KEYS[1] index; ARGV[1] now.
const INDEX_LIST: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;

/// Removes an index entry unless a concurrent write raised it past the removed record's
/// expiry. KEYS[1] index; ARGV: session id, the removed record's expiry.
const INDEX_REMOVE: &str = r#"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"#;

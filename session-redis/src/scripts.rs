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
    ExpressRead,
    ExpressTake,
    ExpressUpdate,
    ExpressSet,
    ExpressTouch,
}

impl ScriptId {
    pub(crate) const ALL: [ScriptId; 11] = [
        Self::Update,
        Self::Touch,
        Self::CompareAndDelete,
        Self::IndexAdd,
        Self::IndexList,
        Self::IndexRemove,
        Self::ExpressRead,
        Self::ExpressTake,
        Self::ExpressUpdate,
        Self::ExpressSet,
        Self::ExpressTouch,
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
            Self::ExpressRead => EXPRESS_READ,
            Self::ExpressTake => EXPRESS_TAKE,
            Self::ExpressUpdate => EXPRESS_UPDATE,
            Self::ExpressSet => EXPRESS_SET,
            Self::ExpressTouch => EXPRESS_TOUCH,
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
///
/// A value this crate wrote begins with its format, version, creation and expiry, in that
/// order and without spaces: those are read off the front, because decoding the whole
/// record with cjson made this script cost ~30 µs of the server's single thread against
/// ~2 µs for a `SET`. Anything else (another field order, another format, damage at the
/// front, a value cut short) is decoded in full as before.
const UPDATE: &str = r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local version, expires_at
local v, e = string.match(raw,
  '^{"format":1,"version":(%d+),"created_at":%-?%d+,"expires_at":(%-?%d+),')
if v and string.sub(raw, -1) == '}' then
  version, expires_at = tonumber(v), tonumber(e)
else
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.version) ~= 'number'
    or type(rec.expires_at) ~= 'number' then return -1 end
  version, expires_at = rec.version, rec.expires_at
end
if expires_at <= tonumber(ARGV[4]) then return 0 end
if version ~= tonumber(ARGV[1]) then return 0 end
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

// ---------------------------------------------------------------------------------------
// The express-session format (`Format::ExpressSession`): the value is express-session's
// session object, `{"cookie":{...},<data>...,"__session_stores":{"version":n,...}}`, and the
// key's expiry is the session's (connect-redis's touch only moves the expiry). These
// scripts only ever decode a value (never `cjson.encode` one, which would round big
// integers): they read the metadata and splice strings.

/// Shared Lua: the key's absolute expiry, and the metadata / cookie helpers.
macro_rules! express_prelude {
    () => {
        r#"
-- The key's expiry in Unix ms, -1 if it has none: PEXPIRETIME (Redis 7, exact), else
-- the server's clock plus PTTL (Redis 6.2, within a millisecond).
local function expiry(key)
  local at = redis.pcall('PEXPIRETIME', key)
  if type(at) == 'number' then return at end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then return ttl end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
end

-- The decoded value and its metadata (an empty table for a value Node wrote), or nil
-- when the value is not an express-session session (the Rust decoder agrees).
local function session(raw)
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.cookie) ~= 'table' then return nil end
  local meta = rec.__session_stores
  if meta == nil then return rec, {}, 0 end
  if type(meta) ~= 'table' or type(meta.version) ~= 'number' then return nil end
  return rec, meta, meta.version
end

-- The new value: `value` (ours, `{"cookie":<default cookie>` then `head` bytes in) with
-- the stored cookie object kept in place of our default one, its `expires` set to `iso`
-- (a browser-session cookie, `expires` null, stays one). The cookie is found by scanning
-- the stored JSON from `{"cookie":{`, where express-session and this store put it; a
-- value shaped otherwise gets the default cookie.
local function keep_cookie(raw, rec, value, head, iso)
  local prefix = '{"cookie":{'
  if string.sub(raw, 1, #prefix) ~= prefix then return value end
  local depth, i, n, quoted, stop = 0, #prefix, #raw, false, nil
  while i <= n do
    local c = string.byte(raw, i)
    if quoted then
      if c == 92 then i = i + 1 elseif c == 34 then quoted = false end
    elseif c == 34 then quoted = true
    elseif c == 123 or c == 91 then depth = depth + 1
    elseif c == 125 or c == 93 then
      depth = depth - 1
      if depth == 0 then stop = i; break end
    end
    i = i + 1
  end
  if not stop then return value end
  local cookie = string.sub(raw, #prefix, stop)
  if type(rec.cookie.expires) == 'string' then
    local s, e, old = string.find(cookie, '"expires":"([^"\\]*)"')
    if not s or old ~= rec.cookie.expires then return value end
    cookie = string.sub(cookie, 1, s - 1) .. '"expires":"' .. iso .. '"' .. string.sub(cookie, e + 1)
  end
  return '{"cookie":' .. cookie .. string.sub(value, head + 1)
end
"#
    };
}

/// GET with the key's expiry. KEYS[1] session. Returns nil or {value, expiry ms | -1}.
const EXPRESS_READ: &str = concat!(
    express_prelude!(),
    r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
return {raw, expiry(KEYS[1])}
"#
);

/// GETDEL with the key's expiry. KEYS[1] session. Returns nil or {value, expiry ms | -1}.
const EXPRESS_TAKE: &str = concat!(
    express_prelude!(),
    r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local at = expiry(KEYS[1])
redis.call('DEL', KEYS[1])
return {raw, at}
"#
);

/// Compare-and-swap on the metadata's version (missing metadata: version 0). The key's
/// existence is its liveness. KEYS[1] session; ARGV: expected version, new value, PXAT,
/// now (unused), head length, new cookie.expires. Returns 1, 0 or -1 like `Update`.
const EXPRESS_UPDATE: &str = concat!(
    express_prelude!(),
    r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec, _, version = session(raw)
if not rec then return -1 end
if version ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], keep_cookie(raw, rec, ARGV[2], tonumber(ARGV[5]), ARGV[6]), 'PXAT', ARGV[3])
return 1
"#
);

/// Last-writer-wins write that keeps the stored cookie object. KEYS[1] session; ARGV: new
/// value, PXAT, head length, new cookie.expires. Returns 1.
const EXPRESS_SET: &str = concat!(
    express_prelude!(),
    r#"
local value = ARGV[1]
local raw = redis.call('GET', KEYS[1])
if raw then
  local rec = session(raw)
  if rec then value = keep_cookie(raw, rec, value, tonumber(ARGV[3]), ARGV[4]) end
end
redis.call('SET', KEYS[1], value, 'PXAT', ARGV[2])
return 1
"#
);

/// Moves the key's expiry only (`PEXPIREAT`, as connect-redis's touch does with EXPIRE),
/// capped at the metadata's deadline; the value is not rewritten. KEYS[1] session; ARGV:
/// target expiry, now. Returns like `Touch`.
const EXPRESS_TOUCH: &str = concat!(
    express_prelude!(),
    r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
local rec, meta = session(raw)
if not rec then return {-1} end
local now = tonumber(ARGV[2])
local target = tonumber(ARGV[1])
if type(meta.deadline) == 'number' and meta.deadline < target then target = meta.deadline end
local at = string.format('%d', target)
if target <= now then
  redis.call('DEL', KEYS[1])
  return {1}
end
redis.call('PEXPIREAT', KEYS[1], at)
if type(meta.owner) == 'string' then return {1, meta.owner, at} end
return {1}
"#
);

#[cfg(test)]
mod tests {
    use session_core::{Record, StoreOptions, codec, now, unix_millis};

    use super::UPDATE;

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
        assert!(UPDATE.contains(&pattern), "{pattern}");
    }
}

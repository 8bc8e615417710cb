-- The whole move, on one server (standalone or Sentinel): atomic, keeps the key's expiry.
-- The old id's index entry stays until its score passes (see index_add.lua).
-- KEYS[1] from, KEYS[2] to, KEYS[3] the owner's index (only when the session has an owner);
-- ARGV: the value the caller read under `from`, `to`'s id, `from`'s id, expiry, now.
-- Returns 1 (moved), 0 (source missing), 2 (source changed since read: read again),
-- 3 (target taken).
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if raw ~= ARGV[1] then return 2 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 3 end
redis.call('RENAME', KEYS[1], KEYS[2])
-- Indexed at the key's own expiry, which RENAME kept: an express-session touch since the
-- read moved only that, not the value.
local at = expiry(KEYS[2])
if at < 0 then at = ARGV[4] end
if KEYS[3] then index_add(KEYS[3], ARGV[2], at, ARGV[5]) end
return 1

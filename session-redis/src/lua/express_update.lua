-- Compare-and-swap on the stored version and, for a record read as a sealed value, on that
-- value's seal; keeps the stored cookie object (see `keep_cookie`).
-- KEYS[1] session; ARGV: expected version, new value, PXAT, now (unused), head length, new
-- cookie.expires, the seal of the value read ('' for none).
-- Returns the written value's seal, 0 (missing, or another value), -1 (stored value corrupt).
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec, meta = session(raw)
if not rec then return -1 end
if version_of(raw, meta) ~= tonumber(ARGV[1]) then return 0 end
-- The value read, not only its version: a stale Node save brings an old sealed version back,
-- and a Rust write of the next version differs from the caller's read in its seal. At the
-- caller's version the stored value's seal held (`version_of` checked it), so its digits
-- are compared as text.
if ARGV[7] ~= '' and string.sub(raw, -(40 + #SEAL_TAIL), -(1 + #SEAL_TAIL)) ~= ARGV[7] then
  return 0
end
local value = seal(keep_cookie(raw, rec, ARGV[2], tonumber(ARGV[5]), ARGV[6]))
redis.call('SET', KEYS[1], value, 'PXAT', ARGV[3])
return string.sub(value, -(40 + #SEAL_TAIL), -(1 + #SEAL_TAIL))

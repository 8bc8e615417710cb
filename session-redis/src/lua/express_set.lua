-- Last-writer-wins write that keeps the stored cookie object and never reuses a version
-- (`version_of`'s; the key's existence is its liveness).
-- KEYS[1] session; ARGV: new value, PXAT, the caller's version, now (unused), where the
-- version's digits start in the value, their length, head length, new cookie.expires.
-- Returns the stored version, or -2 past MAX_VERSION.
local caller = tonumber(ARGV[3])
local version = caller + 1
local raw = redis.call('GET', KEYS[1])
local rec, stored
if raw then
  local meta
  rec, meta = session(raw)
  if rec then
    stored = version_of(raw, meta)
    if stored >= version then version = stored + 1 end
  end
end
if version > MAX_VERSION then return -2 end
local value = at_version(ARGV[1], version, caller, tonumber(ARGV[5]), tonumber(ARGV[6]))
if rec then value = keep_cookie(raw, rec, value, tonumber(ARGV[7]), ARGV[8]) end
redis.call('SET', KEYS[1], seal(value), 'PXAT', ARGV[2])
return version

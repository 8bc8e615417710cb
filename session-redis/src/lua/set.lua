-- Last-writer-wins write that never reuses a version: the stored version becomes one more
-- than the larger of the live stored version and the caller's.
-- KEYS[1] session; ARGV: new value (at the caller's version + 1), PXAT, the caller's
-- version, now, where the version's digits start in the value, their length.
-- Returns the stored version, or -2 past MAX_VERSION.
local caller = tonumber(ARGV[3])
local version = caller + 1
-- The usual case, a write of what was just read: the stored value still starts as the
-- codec writes the caller's version. Then the answer is the caller's version + 1 whatever
-- the rest holds (live or expired, readable or not), so only that front is read (GETRANGE,
-- not the whole value) and nothing is decoded: `front` cost the server's thread several
-- times a SET.
local head = '{"format":1,"version":' .. ARGV[3] .. ','
if caller == 0 or redis.call('GETRANGE', KEYS[1], 0, #head - 1) ~= head then
  local raw = redis.call('GET', KEYS[1])
  if raw then
    local stored, expires_at = front(raw)
    if stored and expires_at > tonumber(ARGV[4]) and stored >= version then version = stored + 1 end
  end
end
if version > MAX_VERSION then return -2 end
local value = at_version(ARGV[1], version, caller, tonumber(ARGV[5]), tonumber(ARGV[6]))
redis.call('SET', KEYS[1], value, 'PXAT', ARGV[2])
return version

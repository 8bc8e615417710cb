-- The value and its expiry. A session Node created and this store never wrote gets its
-- creation time here, the first time it is read: the metadata (`created_at` now, sealed)
-- is appended to the stored value in place, keeping its expiry. Node keeps it from then on
-- (express-session writes back every field it read), so `created_at` stays. The stamp's
-- version is the one the value had before it (derived from its bytes), so a write based on
-- a read from before a Node save still fails after a later read stamps Node's new value.
-- KEYS[1] session; ARGV: now (Unix ms).
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local at = expiry(KEYS[1])
local rec = session(raw)
if rec and rec.__session_stores == nil then
  -- Trailing whitespace (a custom serializer's) goes: the object must end the value.
  local body = string.sub(raw, 1, (string.find(raw, '%s*$')) - 1)
  if string.sub(body, -1) == '}' then
    raw = seal(string.sub(body, 1, -2) .. ',"__session_stores":{"version":'
      .. string.format('%d', foreign_version(raw)) .. ',"created_at":' .. ARGV[1]
      .. ',"digest":"' .. ZEROS .. SEAL_TAIL)
    redis.call('SET', KEYS[1], raw, 'KEEPTTL')
  end
end
return {raw, at}

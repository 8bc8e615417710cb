-- The value and its expiry. A session Node created and this store never wrote gets its
-- creation time here, the first time it is read: the metadata (version 0, `created_at`
-- now, sealed) is appended to the stored value in place, keeping its expiry. Node keeps it
-- from then on (express-session writes back every field it read), so `created_at` stays.
-- KEYS[1] session; ARGV: now (Unix ms).
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local at = expiry(KEYS[1])
local rec = decode(raw)
if type(rec) == 'table' and type(rec.cookie) == 'table' and rec.__session_stores == nil
  and string.sub(raw, -1) == '}' then
  raw = seal(string.sub(raw, 1, -2) .. ',"__session_stores":{"version":0,"created_at":'
    .. ARGV[1] .. ',"digest":"' .. ZEROS .. SEAL_TAIL)
  redis.call('SET', KEYS[1], raw, 'KEEPTTL')
end
return {raw, at}

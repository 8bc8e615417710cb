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

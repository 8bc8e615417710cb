-- "Log out everywhere" on one server (standalone or Sentinel), atomic.
-- KEYS[1] the owner's index, KEYS[2..] the session keys of the members the caller listed;
-- ARGV: owner, now, key prefix, format.
-- Returns how many live sessions it removed, or -1 when the index holds a member the caller
-- did not list (a session joined meanwhile: list again).
local now = tonumber(ARGV[2])
local listed = {}
for i = 2, #KEYS do listed[KEYS[i]] = true end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not listed[ARGV[3] .. member] then return -1 end
end
local removed = 0
for i = 2, #KEYS do removed = removed + revoke_one(KEYS[i], ARGV[1], ARGV[4], now) end
-- The index keeps its entries (each leaves at its score, the session's expiry): an entry of
-- a write still in flight, indexed before its session, must not go.
return removed

-- The sessions of an owner on one server (standalone or Sentinel), as of one instant.
-- KEYS[1] the owner's index, KEYS[2..] the session keys of the members the caller listed;
-- ARGV: now, key prefix, whether to read each key's expiry ('1' for the express format).
-- Returns {i, value, expiry, ...} for each listed key i (1-based among KEYS[2..]) that holds a
-- value (expiry -1 when not read), or -1 when the index holds a member the caller did not
-- list (list again).
local listed = {}
for i = 2, #KEYS do listed[KEYS[i]] = true end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not listed[ARGV[2] .. member] then return -1 end
end
local out = {}
for i = 2, #KEYS do
  local raw = redis.call('GET', KEYS[i])
  if raw then
    local at = -1
    if ARGV[3] == '1' then at = expiry(KEYS[i]) end
    out[#out + 1] = i - 1
    out[#out + 1] = raw
    out[#out + 1] = at
  end
end
return out

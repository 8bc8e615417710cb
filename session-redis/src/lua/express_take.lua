local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local at = expiry(KEYS[1])
redis.call('DEL', KEYS[1])
return {raw, at}

local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec, _, version = session(raw)
if not rec then return -1 end
if version ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], keep_cookie(raw, rec, ARGV[2], tonumber(ARGV[5]), ARGV[6]), 'PXAT', ARGV[3])
return 1

local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec, meta = session(raw)
if not rec then return -1 end
if version_of(raw, meta) ~= tonumber(ARGV[1]) then return 0 end
local value = seal(keep_cookie(raw, rec, ARGV[2], tonumber(ARGV[5]), ARGV[6]))
redis.call('SET', KEYS[1], value, 'PXAT', ARGV[3])
return 1

-- Compare-and-swap on the stored version.
-- KEYS[1] session; ARGV: expected version, new value, PXAT, now.
-- Returns 1 (written), 0 (missing, expired or another version), -1 (stored value corrupt).
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local version, expires_at = front(raw)
if not version then return -1 end
if expires_at <= tonumber(ARGV[4]) then return 0 end
if version ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1

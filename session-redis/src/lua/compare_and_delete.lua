-- Deletes a key only if it still holds the value the caller read.
-- KEYS[1] key; ARGV[1] that value.
-- Returns 0 (not deleted), else the key's expiry when deleted (Unix ms, -1 for none): a
-- move copies a value with the expiry it read, and carries over one changed since (an
-- express-session touch moves only the expiry).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local at = expiry(KEYS[1])
redis.call('DEL', KEYS[1])
return at

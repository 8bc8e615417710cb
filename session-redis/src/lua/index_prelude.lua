-- Adds (or raises) an owner index entry, prunes entries whose sessions expired, and makes the
-- index key expire with its last member.
local function index_add(key, member, expires_ms, now_ms)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  redis.call('ZADD', key, 'GT', expires_ms, member)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', key, string.format('%d', tonumber(top[2]))) end
end

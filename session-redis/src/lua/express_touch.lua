-- Moves the key's expiry only (`PEXPIREAT`, as connect-redis's touch does with EXPIRE),
-- capped at the metadata's deadline; the value is not rewritten. The caller names the owner
-- whose index it raised first, marked as for the native touch ('' for none, '=' and the
-- owner for one).
-- KEYS[1] session; ARGV: target expiry, now, that owner, marked.
-- Returns like the native touch.
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
local rec, meta = session(raw)
if not rec then return {-1} end
local owner = ''
if type(meta.owner) == 'string' then owner = '=' .. meta.owner end
if owner ~= ARGV[3] then return {2, owner} end
local now = tonumber(ARGV[2])
local target = tonumber(ARGV[1])
if type(meta.deadline) == 'number' and meta.deadline < target then target = meta.deadline end
if target <= now then
  redis.call('DEL', KEYS[1])
  return {1}
end
redis.call('PEXPIREAT', KEYS[1], string.format('%d', target))
return {1}

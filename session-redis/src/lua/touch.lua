-- Moves the expiry (capped at the stored deadline) without the data crossing the wire: the
-- stored JSON's top-level `expires_at` number is replaced in place (the JSON is not
-- re-encoded, so large integers and empty objects in the data stay byte for byte). The
-- caller names the owner whose index it raised first ('' for none): a session of another
-- owner is not touched, and the reply names its owner, so the caller raises that index
-- (which must never expire before its session) and asks again. On one server (standalone
-- or Sentinel) the caller also gives the owner indexes' key prefix and the session id, and
-- the script raises the session's owner index itself, before the session changes: one
-- round trip instead of three. (The index key is then not among KEYS, which one server
-- allows; a cluster, where it would be in another slot, never gets these arguments.)
-- KEYS[1] session; ARGV: target expiry, now, that owner ('' for none)[, the owner indexes'
-- key prefix (up to and with '{'), the session id].
-- Returns {0} (missing or expired), {-1} (corrupt), {1} (done), or {2, owner}.
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
local ok, rec = pcall(cjson.decode, raw)
if not ok or not readable(rec) then return {-1} end
local now = tonumber(ARGV[2])
if rec.expires_at <= now then return {0} end
local owner = ''
if type(rec.owner) == 'string' then owner = rec.owner end
local index_prefix = ARGV[4]
if owner ~= ARGV[3] and not index_prefix then return {2, owner} end
local target = tonumber(ARGV[1])
if type(rec.deadline) == 'number' and rec.deadline < target then target = rec.deadline end
local s, e, old = string.find(raw, '"expires_at":(%-?%d+)')
if not s or tonumber(old) ~= rec.expires_at then return {-1} end
local at = string.format('%d', target)
if target <= now then
  redis.call('DEL', KEYS[1])
  return {1}
end
if owner ~= ARGV[3] and owner ~= '' then
  index_add(index_prefix .. owner .. '}', ARGV[5], target, now)
end
redis.call('SET', KEYS[1], string.sub(raw, 1, s - 1) .. '"expires_at":' .. at .. string.sub(raw, e + 1), 'PXAT', at)
return {1}

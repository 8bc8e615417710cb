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
-- Owners travel marked: '' for none, '=' and the owner for one (so that an owner that is
-- the empty string is still an owner, with an index of its own).
-- KEYS[1] session; ARGV: target expiry, now, that owner, marked[, the owner indexes' key
-- prefix (up to and with '{'), the session id].
-- Returns {0} (missing or expired), {-1} (corrupt), {1} (done), or {2, owner marked}.

-- Whether `s` is UTF-8 as session-core's decoder requires (cjson passes any bytes through,
-- so a record `get` reports corrupt would otherwise be touched, and its owner indexed).
local function utf8_ok(s)
  local i = 1
  while true do
    i = string.find(s, '[\128-\255]', i)
    if not i then return true end
    local c, c2 = string.byte(s, i, i + 1)
    local len
    if c >= 0xC2 and c <= 0xDF then len = 1
    elseif c >= 0xE0 and c <= 0xEF then len = 2
    elseif c >= 0xF0 and c <= 0xF4 then len = 3
    else return false end
    for k = 1, len do
      local b = string.byte(s, i + k)
      if not b or b < 0x80 or b > 0xBF then return false end
    end
    -- Overlong forms, surrogates and code points past U+10FFFF.
    if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F)
      or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then return false end
    i = i + len + 1
  end
end

local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
-- Control characters other than JSON's whitespace appear in no JSON session-core reads.
if not utf8_ok(raw) or string.find(raw, '[%z\1-\8\11\12\14-\31]') then return {-1} end
local ok, rec = pcall(cjson.decode, raw)
if not ok or not readable(rec) then return {-1} end
local now = tonumber(ARGV[2])
if rec.expires_at <= now then return {0} end
local owner = ''
if type(rec.owner) == 'string' then owner = '=' .. rec.owner end
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
  index_add(index_prefix .. rec.owner .. '}', ARGV[5], target, now)
end
redis.call('SET', KEYS[1], string.sub(raw, 1, s - 1) .. '"expires_at":' .. at .. string.sub(raw, e + 1), 'PXAT', at)
return {1}

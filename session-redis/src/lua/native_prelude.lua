-- The version and expiry (Unix ms) of a stored record, or nil when the value is not one.
-- A value this crate wrote begins with its format, version, creation and expiry, in that
-- order and without spaces: those are read off the front, because decoding the whole record
-- with cjson cost ~30 us of the server's single thread against ~2 us for a SET. Anything
-- else (another field order, damage at the front, a value cut short) is decoded in full.
local function front(raw)
  local v, e = string.match(raw,
    '^{"format":1,"version":(%d+),"created_at":%-?%d+,"expires_at":(%-?%d+),')
  if v and string.sub(raw, -1) == '}' then return tonumber(v), tonumber(e) end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.version) ~= 'number'
    or type(rec.expires_at) ~= 'number' then return nil end
  return rec.version, rec.expires_at
end

-- The version and expiry (Unix ms) of a stored record, or nil when the value is not one
-- that session-core's decoder reads (so a script never acts on a record `get` reports
-- corrupt). A value this crate wrote has its fields in one order and without spaces:
-- they are checked off the front, because decoding the whole record with cjson cost ~30 us
-- of the server's single thread against ~2 us for a SET. Anything else (another field
-- order, an owner with escapes, damage) is decoded in full.
local MAX_VERSION = 9007199254740991
-- The Unix ms range of the `time` crate's dates (years -9999 to 9999).
local MIN_MS, MAX_MS = -377705116800000, 253402300799999

local function in_range(ms)
  return type(ms) == 'number' and ms >= MIN_MS and ms <= MAX_MS
end

-- Whether a decoded record has the fields and types session-core's decoder requires.
local function readable(rec)
  return type(rec) == 'table' and rec.format == 1
    and type(rec.version) == 'number' and rec.version >= 0 and rec.version <= MAX_VERSION
    and in_range(rec.created_at) and in_range(rec.expires_at)
    and (rec.deadline == nil or rec.deadline == cjson.null or in_range(rec.deadline))
    and (rec.owner == nil or rec.owner == cjson.null or type(rec.owner) == 'string')
    and type(rec.data) == 'table'
end

local function front(raw)
  local s, e, v, created, expires = string.find(raw,
    '^{"format":1,"version":(%d+),"created_at":(%-?%d+),"expires_at":(%-?%d+),')
  if s and string.sub(raw, -1) == '}' then
    local at = e + 1
    local _, d_end, deadline = string.find(raw, '^"deadline":(%-?%d+),', at)
    if d_end then at = d_end + 1 end
    local _, o_end = string.find(raw, '^"owner":"[^"\\]*",', at)
    if o_end then at = o_end + 1 end
    v, created, expires = tonumber(v), tonumber(created), tonumber(expires)
    if string.find(raw, '^"data":{', at) and v <= MAX_VERSION and in_range(created)
      and in_range(expires) and (deadline == nil or in_range(tonumber(deadline))) then
      return v, expires
    end
  end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or not readable(rec) then return nil end
  return rec.version, rec.expires_at
end

-- 2^52: where the versions of values this store did not seal start (see `version_of`).
local FOREIGN = 4503599627370496
-- A seal's digest while it is computed (see `seal`).
local ZEROS = string.rep('0', 40)
-- How every value this store writes ends: its metadata last, the digest last in that.
local SEAL_TAIL = '"}}'

local function decode(raw)
  local ok, rec = pcall(cjson.decode, raw)
  if ok then return rec end
  -- cjson refuses a lone UTF-16 surrogate escape (`\ud83d`, which JSON.stringify writes for
  -- half an emoji). The scripts read only the cookie and the metadata, and store the value
  -- itself, never this copy: every surrogate escape may read as U+FFFD here.
  ok, rec = pcall(cjson.decode, (string.gsub(raw, '\\u[dD][89a-fA-F]%x%x', '\\ufffd')))
  if ok then return rec end
  return nil
end

-- The Unix ms range of the times the Rust decoder accepts (years -9999 to 9999).
local MIN_MS, MAX_MS = -377705116800000, 253402300799999

-- Whether a metadata time is absent or one the Rust decoder accepts.
local function time_field(value)
  if value == nil or value == cjson.null then return true end
  return type(value) == 'number' and value == math.floor(value)
    and value >= MIN_MS and value <= MAX_MS
end

-- Whether `cookie` (decoded from `raw`) is a JSON object: cjson reads `[]` and `{}` alike,
-- so an empty one is told apart in the text (express-session's cookie is never empty).
local function is_object(cookie, raw)
  if type(cookie) ~= 'table' or cookie[1] ~= nil then return false end
  return next(cookie) ~= nil or not string.find(raw, '"cookie"%s*:%s*%[')
end

-- The decoded value and its metadata (an empty table for a value Node wrote), or nil
-- when the value is not an express-session session: the checks of the Rust decoder
-- (`decode_express`), so a script never accepts what `get` reports as corrupt.
local function session(raw)
  local rec = decode(raw)
  if type(rec) ~= 'table' or not is_object(rec.cookie, raw) then return nil end
  local meta = rec.__session_stores
  if meta == nil then return rec, {} end
  if type(meta) ~= 'table' or not time_field(meta.created_at)
    or not time_field(meta.deadline) then
    return nil
  end
  local owner = meta.owner
  if owner ~= nil and owner ~= cjson.null and type(owner) ~= 'string' then return nil end
  if owner == cjson.null then meta.owner = nil end
  if meta.deadline == cjson.null then meta.deadline = nil end
  return rec, meta
end

-- The version of a value this store did not seal: derived from its bytes.
local function foreign_version(raw)
  return FOREIGN + tonumber(string.sub(redis.sha1hex(raw), 1, 12), 16)
end

-- `value` (which ends with its digest then SEAL_TAIL) with the digest of its bytes, the
-- digest's own place read as ZEROS, written in.
local function seal(value)
  local head = string.sub(value, 1, -(41 + #SEAL_TAIL))
  return head .. redis.sha1hex(head .. ZEROS .. SEAL_TAIL) .. SEAL_TAIL
end

-- The version of `raw` for a compare-and-swap. A value as this store wrote it (its seal
-- holds) is at its metadata's version. Any other value (Node wrote it, or changed one of
-- ours and kept our metadata, as express-session keeps every field it read) is at a
-- version derived from its bytes: any change Node makes changes the version, so a write
-- based on an earlier read fails instead of overwriting Node's change.
local function version_of(raw, meta)
  local version = meta.version
  if type(version) == 'number' and version >= 0 and version <= 9007199254740991
    and version == math.floor(version) and #raw > 40 + #SEAL_TAIL
    and string.sub(raw, -#SEAL_TAIL) == SEAL_TAIL and seal(raw) == raw then
    return version
  end
  return foreign_version(raw)
end

-- The new value: `value` (ours, `{"cookie":<default cookie>` then `head` bytes in) with
-- the stored cookie object kept in place of our default one, its `expires` set to `iso`
-- (`head` 0: the caller chose the cookie in `value`, which stays)
-- (a browser-session cookie, `expires` null, stays one). The cookie is found by scanning
-- the stored JSON from `{"cookie":{`, where express-session and this store put it; a
-- value shaped otherwise gets the default cookie.
local function keep_cookie(raw, rec, value, head, iso)
  local prefix = '{"cookie":{'
  if head == 0 or string.sub(raw, 1, #prefix) ~= prefix then return value end
  local depth, i, n, quoted, stop = 0, #prefix, #raw, false, nil
  while i <= n do
    local c = string.byte(raw, i)
    if quoted then
      if c == 92 then i = i + 1 elseif c == 34 then quoted = false end
    elseif c == 34 then quoted = true
    elseif c == 123 or c == 91 then depth = depth + 1
    elseif c == 125 or c == 93 then
      depth = depth - 1
      if depth == 0 then stop = i; break end
    end
    i = i + 1
  end
  if not stop then return value end
  local cookie = string.sub(raw, #prefix, stop)
  if type(rec.cookie.expires) == 'string' then
    local s, e, old = string.find(cookie, '"expires":"([^"\\]*)"')
    if not s or old ~= rec.cookie.expires then return value end
    cookie = string.sub(cookie, 1, s - 1) .. '"expires":"' .. iso .. '"' .. string.sub(cookie, e + 1)
  end
  return '{"cookie":' .. cookie .. string.sub(value, head + 1)
end

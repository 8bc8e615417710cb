-- The decoded value and its metadata (an empty table for a value Node wrote), or nil
-- when the value is not an express-session session (the Rust decoder agrees).
local function session(raw)
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.cookie) ~= 'table' then return nil end
  local meta = rec.__session_stores
  if meta == nil then return rec, {}, 0 end
  if type(meta) ~= 'table' or type(meta.version) ~= 'number' then return nil end
  return rec, meta, meta.version
end

-- The new value: `value` (ours, `{"cookie":<default cookie>` then `head` bytes in) with
-- the stored cookie object kept in place of our default one, its `expires` set to `iso`
-- (a browser-session cookie, `expires` null, stays one). The cookie is found by scanning
-- the stored JSON from `{"cookie":{`, where express-session and this store put it; a
-- value shaped otherwise gets the default cookie.
local function keep_cookie(raw, rec, value, head, iso)
  local prefix = '{"cookie":{'
  if string.sub(raw, 1, #prefix) ~= prefix then return value end
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

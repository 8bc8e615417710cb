-- Whose session `raw` is, and whether it is live at `now`: returns owner (nil when it has
-- none), live; or false when the value is not a session record (corrupt). `format` is
-- 'native' or 'express' (where the key's existence is its liveness).
local function owner_of(raw, format, now)
  if format == 'express' then
    local rec, meta = session(raw)
    if not rec then return false end
    if type(meta.owner) == 'string' then return meta.owner, true end
    return nil, true
  end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.expires_at) ~= 'number' then return false end
  if type(rec.owner) == 'string' then return rec.owner, rec.expires_at > now end
  return nil, rec.expires_at > now
end

-- Deletes the session under `key` if `owner` owns it (or it is corrupt: the owner index lists
-- it for `owner`, and a record nobody can read is no one else's session). Returns 1 when it
-- removed a live session of `owner`, else 0.
local function revoke_one(key, owner, format, now)
  local raw = redis.call('GET', key)
  if not raw then return 0 end
  local found, live = owner_of(raw, format, now)
  if found == false or found == owner then
    redis.call('DEL', key)
    if found == owner and live then return 1 end
  end
  return 0
end

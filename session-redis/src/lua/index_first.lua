-- On one server (standalone or Sentinel) a write of an owned session names its owner's index
-- as KEYS[2], and the index entry's member, expiry and now as its last three arguments: the
-- index is raised here, in the same script and before the session changes, instead of in a
-- round trip of its own. The three arguments are then dropped, so the rest of the script
-- sees the arguments it always had. (A cluster keeps the round trip: the index and the
-- session live in different slots.)
if KEYS[2] then
  local n = #ARGV
  if tonumber(ARGV[n - 1]) > tonumber(ARGV[n]) then
    index_add(KEYS[2], ARGV[n - 2], ARGV[n - 1], ARGV[n])
  end
  ARGV[n], ARGV[n - 1], ARGV[n - 2] = nil, nil, nil
end

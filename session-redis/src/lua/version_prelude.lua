-- Record::MAX_VERSION: 2^53 - 1, exact in Lua's numbers.
local MAX_VERSION = 9007199254740991

-- `value`, written at the caller's version + 1 (its digits start `at` bytes in and are
-- `len` long), stored at `version` instead.
local function at_version(value, version, caller, at, len)
  if version == caller + 1 then return value end
  return string.sub(value, 1, at) .. string.format('%d', version) .. string.sub(value, at + len + 1)
end

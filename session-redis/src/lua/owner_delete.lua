-- One step of "log out everywhere" on a cluster: deletes the session if `owner` owns it
-- (whatever its version: a session kept busy is revoked too) or it is corrupt.
-- KEYS[1] session; ARGV: owner, now, format. Returns 1 (a live session removed) or 0.
return revoke_one(KEYS[1], ARGV[1], ARGV[3], tonumber(ARGV[2]))

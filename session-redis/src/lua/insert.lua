-- `insert` of an owned session on one server: the owner's index raised first (KEYS[2], see
-- index_first), then the same SET NX PXAT that an unowned insert sends as a plain command.
-- KEYS[1] session[, KEYS[2] owner index]; ARGV: value, PXAT[, member, expiry, now].
-- Returns the SET's reply: OK when written, nil when the key was taken.
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PXAT', ARGV[2])

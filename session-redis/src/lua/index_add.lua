-- Index entries are only ever pruned by score (the session's expiry, raised by every write
-- and touch before the session changes), never removed early: a writer indexes a session
-- before writing it, so removing an entry whose session is missing could drop the entry of a
-- write still in flight, and that session would then escape listing and revocation.
-- KEYS[1] index; ARGV: session id, expiry, now. Returns 1.
index_add(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1

-- KEYS[1] index; ARGV: session id, expiry, now. Returns 1.
index_add(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1

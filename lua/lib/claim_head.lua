--- @include "lib/record"
-- The head of a record (lib/record) as claim reads it: attempts, the position of finished
-- (everything from there on is kept byte for byte), and lease_ms. Claim rewrites the fields
-- before finished by splicing; a record whose head does not match is refused (BAD_RECORD)
-- before anything is written. The untouched rest is checked by the client that parses the
-- record (redisq/_core/records.py). Position captures are plain numbers: reading three fields
-- this way costs a fraction of rec_parse, which makes 20 strings.
local CLAIM_HEAD = '^j3\n%l+\n(%d+)\n%d*\n[^\n]*\n%d*\n%d*\n()%d*\n[^\n]*\n(%d*)\n'

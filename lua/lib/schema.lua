-- The data layout version. Bump it when the meaning of a key or field changes; every script
-- refuses to touch a queue whose meta hash records another version (SCHEMA_MISMATCH).
-- Mirrored by redisq/_core/schema.py (SCHEMA_VERSION); a test checks parity.
-- 2: job records are packed strings in one hash per queue (lib/record).
-- 3: the record's fields reordered, what a lease changes first (lib/record, layout 3).
local SCHEMA_VERSION = '3'

-- The bounds of a job's attempt history (lib/attempt_entry): the last KEEP failed attempts are
-- kept, each with at most TEXT_BYTES of its error text (the first HEAD_BYTES, the summary
-- line, and the last bytes, the end of the traceback, around a marker). Mirrored by
-- redisq/_core/attempts.py; a test checks parity.
local ATTEMPT_CAPS = {
  KEEP = 10,
  TEXT_BYTES = 4096,
  HEAD_BYTES = 1024,
}

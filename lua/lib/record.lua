-- A job record is ONE string, the value of field <id> in the queue's jobs hash (layout 3):
--   'j3' \n state \n attempts \n token \n worker \n leased_at \n deadline \n finished \n
--   ended \n lease_ms \n ukey \n prio \n max \n created \n run_at \n seq \n name \n
--   len(error) \n len(result) \n len(progress) \n error .. result .. progress .. payload
-- What a lease changes comes first: claim rewrites only the head (state to deadline) and ack
-- only state, finished and ended, each by splicing the untouched rest (lib/claim_head,
-- lib/ack_head), while the other transitions parse the whole record (rec_parse) and pack it
-- again (lib/rec_pack).
-- The text fields never hold a newline (names, ids, workers and unique keys are free of control
-- characters); '' means unset. The blobs are opaque bytes, the payload is never decoded here.
-- rec_parse gives a list indexed by F: the 16 text fields, the 3 lengths, then the blob tail.
-- Mirrored by redisq/_core/records.py.
local F = {STATE = 1, ATTEMPTS = 2, TOKEN = 3, WORKER = 4, LEASED_AT = 5, DEADLINE = 6,
  FINISHED = 7, ENDED = 8, LEASE_MS = 9, UKEY = 10, PRIO = 11, MAX = 12, CREATED = 13,
  RUN_AT = 14, SEQ = 15, NAME = 16, LEN_ERROR = 17, LEN_RESULT = 18, LEN_PROGRESS = 19,
  TAIL = 20}
local REC_PATTERN = '^j3\n(%l+)\n(%d+)\n(%d*)\n([^\n]*)\n(%d*)\n(%d*)\n(%d*)\n([^\n]*)\n'
  .. '(%d*)\n([^\n]*)\n(%-?%d+)\n(%d+)\n(%d+)\n(%d+)\n(%d+)\n([^\n]*)\n'
  .. '(%d+)\n(%d+)\n(%d+)\n()'

-- Parses a stored record; nil when it is not a layout-3 record (or its lengths do not fit).
-- The pattern ends with the position of the blob tail, which string.sub then copies: a '(.*)$'
-- capture would step through the blobs one character at a time (2 ms for a 512 KiB payload).
local function rec_parse(s)
  local t = {string.match(s, REC_PATTERN)}
  if not t[1] then
    return nil
  end
  local tail = string.sub(s, t[20])
  if tonumber(t[17]) + tonumber(t[18]) + tonumber(t[19]) > #tail then
    return nil
  end
  t[20] = tail
  return t
end

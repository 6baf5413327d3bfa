-- A job record is ONE string, the value of field <id> in the queue's jobs hash (layout 2):
--   'j2' \n state \n prio \n attempts \n max \n created \n run_at \n seq \n token \n worker \n
--   leased_at \n deadline \n finished \n lease_ms \n ukey \n name \n ended \n
--   len(error) \n len(result) \n len(progress) \n error .. result .. progress .. payload
-- The text fields never hold a newline (names, ids, workers and unique keys are free of control
-- characters); '' means unset. The blobs are opaque bytes, the payload is never decoded here.
-- rec_parse gives a list indexed by F: the 16 text fields, the 3 lengths, then the blob tail.
-- Mirrored by redisq/_core/records.py.
local F = {STATE = 1, PRIO = 2, ATTEMPTS = 3, MAX = 4, CREATED = 5, RUN_AT = 6, SEQ = 7,
  TOKEN = 8, WORKER = 9, LEASED_AT = 10, DEADLINE = 11, FINISHED = 12, LEASE_MS = 13,
  UKEY = 14, NAME = 15, ENDED = 16, LEN_ERROR = 17, LEN_RESULT = 18, LEN_PROGRESS = 19,
  TAIL = 20}
local REC_PATTERN = '^j2\n(%l+)\n(%-?%d+)\n(%d+)\n(%d+)\n(%d+)\n(%d+)\n(%d+)\n(%d*)\n'
  .. '([^\n]*)\n(%d*)\n(%d*)\n(%d*)\n(%d*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n'
  .. '(%d+)\n(%d+)\n(%d+)\n(.*)$'

-- Parses a stored record; nil when it is not a layout-2 record (or its lengths do not fit).
local function rec_parse(s)
  local t = {string.match(s, REC_PATTERN)}
  if not t[1] or tonumber(t[17]) + tonumber(t[18]) + tonumber(t[19]) > #t[20] then
    return nil
  end
  return t
end


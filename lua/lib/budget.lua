-- The work one call of claim, claim_and_ack or reap may do, so that no argument and no payload
-- size can make it block Redis for long (each call stays within about 20 ms on a small machine;
-- bench/bench_recovery.py and tests/integration/test_claim_caps.py measure and test it):
--   MAX_BATCH  most expired leases reaped, and most due jobs promoted, per call (a larger
--              `limit` or `batch` is refused: the client loops over calls of at most this many);
--   BYTES      job record bytes a call moves (promoted, reaped, leased) before it stops and
--              reports that it left work behind (at least one job always moves, whatever its
--              size: a record can be as large as the writer's payload limit);
--   READ_AHEAD bytes read ahead in one HMGET: records are read in chunks of READ_AHEAD / hint
--              ids (1 to 1,000), `hint` being the largest record the client expects, so that a
--              chunk of large records never reads far past the budget.
-- Mirrored by redisq/_core/claim.py (MAX_REAP_BATCH).
local MAX_BATCH = 250
local BYTES = 524288
local READ_AHEAD = 2097152

-- A fresh budget for one script call: bytes left, and the chunk size of its reads.
local function budget(hint)
  local step = math.floor(READ_AHEAD / math.max(1, hint))
  if step < 1 then
    step = 1
  elseif step > 1000 then
    step = 1000
  end
  return {left = BYTES, step = step}
end

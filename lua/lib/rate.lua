-- A queue's rate limit, kept in its meta hash (on the Redis clock, so it holds across every
-- worker and every cluster shard is just another queue):
--   rate     '<interval_us> <tolerance_us> <spec>'  set by set_rate_limit; absent = no limit
--   rate_at  the bucket's theoretical arrival time (GCRA), in microseconds of the Redis clock:
--            a job may start when rate_at - tolerance <= now; each job taken adds interval.
--            A hold (a handler's RateLimited) moves it forward. Absent = nothing held.
-- Claim reads both fields with the meta read it makes anyway: a queue that uses no limit pays
-- two empty fields of one HMGET. Mirrored by redisq/_core/rates.py.

--- @include "lib/rate_allow"

-- Records that `taken` jobs started (a queue with a limit), or forgets a hold that has passed
-- (a queue without one: its claims go back to the cheap path). Returns the ms until the next
-- job may start (0: now).
local function rate_take(meta_key, spec, tat, interval, taken, now)
  if not spec then
    redis.call('HDEL', meta_key, 'rate_at')
    return 0
  end
  if taken > 0 then
    tat = tat + taken * interval
    redis.call('HSET', meta_key, 'rate_at', string.format('%d', tat))
  end
  local _, tol = string.match(spec, '^(%d+) (%d+)')
  return math.max(0, math.ceil((tat - (tonumber(tol) or 0) - now * 1000) / 1000))
end

--- @include "lib/num"
--- @include "lib/chunks"
--- @include "lib/caps"
-- Keeps a finished-jobs set (done, dead, cancelled) within its count and age limits, deleting at
-- most `batch` job records per call (one HDEL from the jobs hash), and never more than
-- CAPS.TRIM (lib/caps). Each finishing script adds its entries and may remove more, so the set
-- converges to its limits under any steady load. Returns the number removed.
local function trim_retention(set_key, jobs_key, keep, max_age_ms, now, batch)
  batch = math.min(batch, CAPS.TRIM)
  local removed = 0
  local excess = redis.call('ZCARD', set_key) - keep
  if excess > 0 then
    if excess > batch then
      excess = batch
    end
    local ids = redis.call('ZRANGE', set_key, 0, excess - 1)
    chunks({'HDEL', jobs_key}, ids)
    redis.call('ZREMRANGEBYRANK', set_key, 0, excess - 1)
    removed = excess
  end
  if max_age_ms > 0 and removed < batch then
    local ids = redis.call('ZRANGEBYSCORE', set_key, '-inf', num(now - max_age_ms),
      'LIMIT', 0, batch - removed)
    if #ids > 0 then
      chunks({'HDEL', jobs_key}, ids)
      chunks({'ZREM', set_key}, ids)
      removed = removed + #ids
    end
  end
  return removed
end

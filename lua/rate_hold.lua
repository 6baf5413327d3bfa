--[[ rate_hold: (queue) -> held
  Holds a queue's claims back for `hold_ms` (a handler met the limit of the service it calls:
  redisq.RateLimited), for every worker: the bucket's position (lib/rate) moves to at least
  now + hold_ms, so no claim leases a job of this queue before then. It never moves back: a
  shorter hold, or the same hold sent again, changes nothing (a re-send through the Redis clock
  ends at most the re-send's delay later; no job is leased by it).
  KEYS[1] meta        hash   schema, rate, rate_at
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] hold_ms     int    how long to hold back (1 to 31,622,400,000, about a year)
  Returns: {status, until_ms}; until_ms = when claims may lease again (0: no such queue, nothing
           written)
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/read_meta"

local meta_key = KEYS[1]
local now_arg = ARGV[1]
local hold_ms = tonumber(ARGV[2])

if not hold_ms or hold_ms < 1 or hold_ms > 31622400000 or hold_ms % 1 ~= 0 then
  return {STATUS.BAD_ARGUMENT, 'hold_ms'}
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_key, 'rate', 'rate_at')
if not meta then
  return err
end
if not meta[1] then
  return {STATUS.OK, 0}
end
local tolerance = 0
if meta[2] then
  tolerance = tonumber(string.match(meta[2], '^%d+ (%d+)')) or 0
end
local at = (now + hold_ms) * 1000 + tolerance
local current = tonumber(meta[3]) or 0
if current < at then
  redis.call('HSET', meta_key, 'rate_at', string.format('%d', at))
else
  at = current
end
return {STATUS.OK, math.floor((at - tolerance) / 1000)}

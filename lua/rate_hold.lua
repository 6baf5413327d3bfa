--[[ rate_hold: (queue) -> held
  Holds a queue's claims back for `hold_ms` (a handler met the limit of the service it calls:
  redisq.RateLimited), for every worker: the bucket's position (lib/rate) moves to at least
  now + hold_ms, so no claim leases a job of this queue before then. It never moves back: a
  shorter hold, or the same hold sent again, changes nothing (a re-send through the Redis clock
  ends at most the re-send's delay later; no job is leased by it).
  With a rate key (`key`, or the group of job `id` in gjob: a job's rate key is its group,
  lib/groups), only that key is held: its own bucket position (grate <key> \0 'at') moves, it
  leaves the rotation (gturn) and waits in gwait until then, and meta grate = '1' tells claim
  to look. A job id without a group holds the whole queue.
  KEYS[1] meta        hash   schema, rate, rate_at, grate
  KEYS[2] grate       hash   group -> rate limit, <group> \0 'at' -> its bucket (lib/rate)
  KEYS[3] gturn       zset   group -> turn, the groups that may lease now
  KEYS[4] gwait       zset   group -> when it may lease again (ms)
  KEYS[5] gjob        hash   job id -> group
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] hold_ms     int    how long to hold back (1 to 31,622,400,000, about a year)
  ARGV[3] key         str    the rate key to hold ('' = the job's, or the queue)
  ARGV[4] id          str    a job whose rate key (group) to hold ('' = none)
  Returns: {status, until_ms, key}; until_ms = when claims may lease again (0: no such queue,
           nothing written); key = the rate key held ('' = the queue)
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/read_meta"
--- @include "lib/key_types"

local meta_key = KEYS[1]
local grate_key = KEYS[2]
local gturn_key = KEYS[3]
local gwait_key = KEYS[4]
local gjob_key = KEYS[5]
local now_arg = ARGV[1]
local hold_ms = tonumber(ARGV[2])
local key = ARGV[3]
local id = ARGV[4]

if not hold_ms or hold_ms < 1 or hold_ms > 31622400000 or hold_ms % 1 ~= 0 then
  return {STATUS.BAD_ARGUMENT, 'hold_ms'}
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_key, 'rate', 'rate_at')
if not meta then
  return err
end
if not meta[1] then
  return {STATUS.OK, 0, ''}
end
local bad = key_types({grate_key, 'hash', gturn_key, 'zset', gwait_key, 'zset', gjob_key, 'hash'})
if bad then
  return wrong_type(bad)
end
if key == '' and id ~= '' then
  key = redis.call('HGET', gjob_key, id) or ''
end

-- The bucket position (µs) at least now + hold_ms, past the limit's tolerance.
local function hold(spec, current)
  local tolerance = 0
  if spec then
    tolerance = tonumber(string.match(spec, '^%d+ (%d+)')) or 0
  end
  local at = (now + hold_ms) * 1000 + tolerance
  current = tonumber(current) or 0
  if current >= at then
    return current, tolerance, false
  end
  return at, tolerance, true
end

if key ~= '' then
  local r = redis.call('HMGET', grate_key, key, key .. '\0at')
  local at, tolerance, moved = hold(r[1], r[2])
  local until_ms = math.floor((at - tolerance) / 1000)
  if moved then
    redis.call('HSET', grate_key, key .. '\0at', string.format('%d', at))
    redis.call('HSET', meta_key, 'grate', '1')
  end
  -- Out of the rotation until then (claim puts it back; a later wait is kept).
  redis.call('ZREM', gturn_key, key)
  local waits = tonumber(redis.call('ZSCORE', gwait_key, key))
  if not waits or waits < until_ms then
    redis.call('ZADD', gwait_key, until_ms, key)
  end
  return {STATUS.OK, until_ms, key}
end

local at, tolerance, moved = hold(meta[2], meta[3])
if moved then
  redis.call('HSET', meta_key, 'rate_at', string.format('%d', at))
end
return {STATUS.OK, math.floor((at - tolerance) / 1000), ''}

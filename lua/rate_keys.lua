--[[ rate_keys: read-only
  Reads the rate keys of a queue that are held back now (lib/groups gwait: a key without a
  token of its own limit, or held by a handler's RateLimited): how many, and the first `limit`
  of them, soonest due first, each with when it may lease again, its ready jobs and its limit.
  What `stats` and `show` print. Bounded: never more than `limit` keys are read.
  KEYS[1] meta        hash   schema
  KEYS[2] gwait       zset   group -> when it may lease again (ms)
  KEYS[3] gready      zset   grouped ready jobs (lib/groups)
  KEYS[4] grate       hash   group -> rate limit (lib/rate)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] limit       int    most keys listed (1 to 100)
  Returns: {status, now_ms, keys held, key, until_ms, ready jobs, limit ('' = none: a hold),
           key, ...}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(limit log N)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/check_queue"

local meta_key = KEYS[1]
local gwait_key = KEYS[2]
local gready_key = KEYS[3]
local grate_key = KEYS[4]
local now_arg = ARGV[1]
local limit = tonumber(ARGV[2])

if not limit or limit < 1 or limit > 100 or limit % 1 ~= 0 then
  return {STATUS.BAD_ARGUMENT, 'limit'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', gwait_key, 'zset', gready_key, 'zset', grate_key,
  'hash'})
if err then
  return err
end
local after = '(' .. string.format('%d', now)
local out = {STATUS.OK, now, redis.call('ZCOUNT', gwait_key, after, '+inf')}
local rows = redis.call('ZRANGEBYSCORE', gwait_key, after, '+inf', 'WITHSCORES', 'LIMIT', 0,
  limit)
for i = 1, #rows, 2 do
  local g = rows[i]
  out[#out + 1] = g
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = redis.call('ZLEXCOUNT', gready_key, '[' .. g .. '\0', '(' .. g .. '\1')
  out[#out + 1] = redis.call('HGET', grate_key, g) or ''
end
return out

--[[ set_rate_limit: (queue) -> limited | unlimited
  Sets or clears a queue's rate limit, for every worker: claims then lease only what its bucket
  allows (lib/rate). The client parses the spec ('100/s') into the stored form. Setting the
  same value again changes nothing; a changed limit applies from the next claim (the bucket's
  position is kept). Clearing it keeps a hold under way (a handler's RateLimited) until it ends.
  KEYS[1] meta        hash   schema, rate
  KEYS[2] wake        zset   signalled, so that waiting workers claim under the new limit
  ARGV[1] lib_version str    redisq version, recorded in meta on the first write
  ARGV[2] rate        str    '<interval_us> <tolerance_us> <spec>' (lib/rate); '' = no limit
  Returns: {status}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/init_meta"
--- @include "lib/wake"

local meta_key = KEYS[1]
local wake_key = KEYS[2]
local lib_version = ARGV[1]
local rate = ARGV[2]

if rate ~= '' and not string.match(rate, '^[1-9]%d* %d+ [1-9]%d*/[smh]$') then
  return {STATUS.BAD_ARGUMENT, 'rate'}
end
local err, is_new = check_queue({meta_key, 'hash'})
if err then
  return err
end
if is_new then
  init_meta(meta_key, lib_version)
end
if rate == '' then
  redis.call('HDEL', meta_key, 'rate')
else
  redis.call('HSET', meta_key, 'rate', rate)
end
wake(wake_key)
return {STATUS.OK}

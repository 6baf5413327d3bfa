--[[ set_rate_limit: (queue) -> limited | unlimited
  Sets or clears a queue's rate limit, for every worker: claims then lease only what its bucket
  allows (lib/rate). With a key, the limit of that concurrency group of the queue instead (its
  jobs' rate key; lib/groups): kept in grate, and meta grate = '1' tells claim to look. The
  client parses the spec ('100/s') into the stored form. Setting the same value again changes
  nothing; a changed limit applies from the next claim (the bucket's
  position is kept). Clearing it keeps a hold under way (a handler's RateLimited) until it ends.
  KEYS[1] meta        hash   schema, rate
  KEYS[2] wake        zset   signalled, so that waiting workers claim under the new limit
  KEYS[3] grate       hash   group -> limit, <group> \0 'at' -> its bucket (lib/groups)
  KEYS[4] gwait       zset   group -> when its next token is due: made due now, so that the
                             next claim looks at the group under its new limit
  ARGV[1] lib_version str    redisq version, recorded in meta on the first write
  ARGV[2] rate        str    '<interval_us> <tolerance_us> <spec>' (lib/rate); '' = no limit
  ARGV[3] key         str    a group ('' = the queue's own limit)
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
local grate_key = KEYS[3]
local gwait_key = KEYS[4]
local lib_version = ARGV[1]
local rate = ARGV[2]
local key = ARGV[3]

if rate ~= '' and not string.match(rate, '^[1-9]%d* %d+ [1-9]%d*/[smh]$') then
  return {STATUS.BAD_ARGUMENT, 'rate'}
end
local err, is_new = check_queue({meta_key, 'hash', grate_key, 'hash', gwait_key, 'zset'})
if err then
  return err
end
if is_new then
  init_meta(meta_key, lib_version)
end
if key ~= '' then
  if rate == '' then
    redis.call('HDEL', grate_key, key, key .. '\0at')
  else
    redis.call('HSET', grate_key, key, rate)
    redis.call('HSET', meta_key, 'grate', '1')
  end
  redis.call('ZADD', gwait_key, 'XX', 0, key)
elseif rate == '' then
  redis.call('HDEL', meta_key, 'rate')
else
  redis.call('HSET', meta_key, 'rate', rate)
end
wake(wake_key)
return {STATUS.OK}

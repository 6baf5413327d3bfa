--[[ counts: read-only
  Counts the jobs of a queue in each state, O(1) per state (the cardinality of each set), and
  reports whether the queue is paused. Ready jobs include those waiting in concurrency groups.
  KEYS[1] meta        hash   schema, paused
  KEYS[2] ready       zset   job ids
  KEYS[3] scheduled   zset   job ids
  KEYS[4] leased      zset   job ids
  KEYS[5] done        zset   job ids
  KEYS[6] dead        zset   job ids
  KEYS[7] cancelled   zset   job ids
  KEYS[8] gready      zset   grouped ready jobs (lib/groups)
  Returns: {status, ready, scheduled, leased, completed, dead, cancelled, paused (0 or 1)}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/check_queue"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local done_key = KEYS[5]
local dead_key = KEYS[6]
local cancelled_key = KEYS[7]
local gready_key = KEYS[8]

local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', done_key, 'zset', dead_key, 'zset', cancelled_key, 'zset', gready_key,
  'zset'})
if err then
  return err
end
local paused = 0
if redis.call('HGET', meta_key, 'paused') == '1' then
  paused = 1
end
-- Ready jobs include those waiting in concurrency groups (lib/groups).
return {STATUS.OK, redis.call('ZCARD', ready_key) + redis.call('ZCARD', gready_key),
  redis.call('ZCARD', scheduled_key),
  redis.call('ZCARD', leased_key), redis.call('ZCARD', done_key), redis.call('ZCARD', dead_key),
  redis.call('ZCARD', cancelled_key), paused}

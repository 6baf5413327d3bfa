--[[ counts: read-only
  Counts the jobs of a queue in each state, O(1) per state (the cardinality of each set), and
  reports whether the queue is paused. Ready jobs include those waiting in concurrency groups.
  Held: the ready jobs no claim can take now because of a limit: all of them while the leases
  reach the queue's concurrency cap or its rate limit (or a handler's RateLimited) holds it,
  else the grouped ones while no group may lease (each at its limit, its rate key or group
  held). A rate key held while others may lease is not counted here (Store.rate_keys).
  KEYS[1] meta        hash   schema, paused, conc, rate, rate_at (lib/rate, lib/rate_allow)
  KEYS[2] ready       zset   job ids
  KEYS[3] scheduled   zset   job ids
  KEYS[4] leased      zset   job ids
  KEYS[5] done        zset   job ids
  KEYS[6] dead        zset   job ids
  KEYS[7] cancelled   zset   job ids
  KEYS[8] gready      zset   grouped ready jobs (lib/groups)
  KEYS[9] waiting     zset   job ids waiting for parents
  KEYS[10] gturn      zset   group -> turn, the groups that may lease now (lib/groups)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  Returns: {status, ready, scheduled, leased, completed, dead, cancelled, paused (0 or 1),
           waiting, held}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/now_ms"
--- @include "lib/rate_allow"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local done_key = KEYS[5]
local dead_key = KEYS[6]
local cancelled_key = KEYS[7]
local gready_key = KEYS[8]
local waiting_key = KEYS[9]
local gturn_key = KEYS[10]

local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', done_key, 'zset', dead_key, 'zset', cancelled_key, 'zset', gready_key,
  'zset', waiting_key, 'zset', gturn_key, 'zset'})
if err then
  return err
end
local m = redis.call('HMGET', meta_key, 'paused', 'conc', 'rate', 'rate_at')
local paused = 0
if m[1] == '1' then
  paused = 1
end
-- Ready jobs include those waiting in concurrency groups (lib/groups).
local plain, grouped = redis.call('ZCARD', ready_key), redis.call('ZCARD', gready_key)
local leased = redis.call('ZCARD', leased_key)
local held = 0
if plain + grouped > 0 then
  local cap = tonumber(m[2])
  if (cap and leased >= cap)
      or ((m[3] or m[4]) and rate_allow(m[3], m[4], now_ms(ARGV[1])) < 1) then
    held = plain + grouped
  elseif grouped > 0 and redis.call('ZCARD', gturn_key) == 0 then
    held = grouped
  end
end
return {STATUS.OK, plain + grouped, redis.call('ZCARD', scheduled_key), leased,
  redis.call('ZCARD', done_key), redis.call('ZCARD', dead_key),
  redis.call('ZCARD', cancelled_key), paused, redis.call('ZCARD', waiting_key), held}

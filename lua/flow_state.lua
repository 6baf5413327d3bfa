--[[ flow_state: read-only
  Reads a queue's concurrency limits and what they hold back (lib/groups), and, for one job,
  its group and that group's standing: what `stats` and `show` print.
  KEYS[1] meta        hash   schema, conc, gconc, groups
  KEYS[2] ready       zset   job ids
  KEYS[3] leased      zset   job ids, score = lease deadline (ms)
  KEYS[4] gready      zset   grouped ready jobs (lib/groups)
  KEYS[5] gturn       zset   group -> turn, the groups that may lease now
  KEYS[6] gleased     zset   leased grouped jobs, member <group> \0 <id>
  KEYS[7] gjob        hash   job id -> group
  ARGV[1] id          str    a job id ('' = none)
  Returns: {status, conc ('' = none), gconc ('' = none), ready, leased, grouped ready,
           groups that may lease now, grouped leased, the job's group ('' = none), its
           group's leased jobs, its group's turn (1 = it may lease now)}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/check_queue"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local leased_key = KEYS[3]
local gready_key = KEYS[4]
local gturn_key = KEYS[5]
local gleased_key = KEYS[6]
local gjob_key = KEYS[7]
local id = ARGV[1]

local err = check_queue({meta_key, 'hash', ready_key, 'zset', leased_key, 'zset', gready_key,
  'zset', gturn_key, 'zset', gleased_key, 'zset', gjob_key, 'hash'})
if err then
  return err
end
local m = redis.call('HMGET', meta_key, 'conc', 'gconc')
local turns = redis.call('ZCARD', gturn_key)
if redis.call('ZSCORE', gturn_key, '') then
  turns = turns - 1
end
local g = id ~= '' and redis.call('HGET', gjob_key, id) or ''
local g_leased, g_turn = 0, 0
if g ~= '' then
  g_leased = redis.call('ZLEXCOUNT', gleased_key, '[' .. g .. '\0', '(' .. g .. '\1')
  g_turn = redis.call('ZSCORE', gturn_key, g) and 1 or 0
end
return {STATUS.OK, m[1] or '', m[2] or '', redis.call('ZCARD', ready_key),
  redis.call('ZCARD', leased_key), redis.call('ZCARD', gready_key), turns,
  redis.call('ZCARD', gleased_key), g, g_leased, g_turn}

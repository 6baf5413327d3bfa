--[[ deps_deliver: waiting -> ready | scheduled | cancelled
  The second step of a release across queues: run in the child's queue, it tells each child
  that its parent in another queue ended (lib/deps_apply, by the child's policy), as the
  parent's end recorded in its queue's outbox (lib/deps_settle). Idempotent: a parent already
  struck off the child's list changes nothing, so an outbox entry delivered twice (the client
  died before removing it) releases nothing twice. A release for a child that does not exist
  yet (its enqueue is between its two steps) is kept as an early record ('<child>\n<parent
  ref>' -> '<outcome>\n<ms>'), which enqueue_deps reads; records older than a day are dropped
  by reap (lib/deps_drain).
  KEYS[1] meta        hash   schema, deps
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] waiting     zset   job ids waiting for parents
  KEYS[5] cancelled   zset   job ids, score = time of cancellation (ms)
  KEYS[6] jobs        hash   job id -> packed job record (lib/record)
  KEYS[7] deps_prefix prefix dependency keys (lib/deps_keys)
  KEYS[8] wake        zset   signalled when children were released
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] count       int    number of releases that follow (1 to 100)
  ARGV[3+] releases   list   3 values per release: child id, parent ref ('<queue>\t<id>'),
                             outcome ('completed', 'dead', 'cancelled' or 'deleted')
  Returns: {status, released, cancelled}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(n (p + log N)) for n releases of children with p parents
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/read_meta"
--- @include "lib/key_types"
--- @include "lib/deps_keys"
--- @include "lib/deps_apply"
--- @include "lib/deps_after"
--- @include "lib/wake"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local waiting_key = KEYS[4]
local cancelled_key = KEYS[5]
local jobs_key = KEYS[6]
local deps_prefix = KEYS[7]
local wake_key = KEYS[8]
local now_arg = ARGV[1]
local count = tonumber(ARGV[2])
local at = 3
local STRIDE = 3

if not count or count < 1 or count > 100 or #ARGV ~= at - 1 + count * STRIDE then
  return {STATUS.BAD_ARGUMENT, 'deps_deliver'}
end
for i = 1, count do
  local outcome = ARGV[at + (i - 1) * STRIDE + 2]
  if outcome ~= 'completed' and outcome ~= 'dead' and outcome ~= 'cancelled'
      and outcome ~= 'deleted' then
    return {STATUS.BAD_ARGUMENT, 'outcome', i}
  end
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_key)
if not meta then
  return err
end
local bad_key, bad_type = key_types({jobs_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  waiting_key, 'zset', cancelled_key, 'zset', deps_prefix .. 'pending', 'hash',
  deps_prefix .. 'early', 'hash'})
if bad_key then
  return {STATUS.WRONG_TYPE, bad_key, bad_type}
end
local dk = deps_keys(deps_prefix, jobs_key, waiting_key, ready_key, scheduled_key,
  cancelled_key, wake_key)
local released, cancelled = 0, 0
for i = 1, count do
  local b = at + (i - 1) * STRIDE
  local child, ref, outcome = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  if redis.call('HEXISTS', jobs_key, child) == 0 then
    redis.call('HSET', dk.early, child .. '\n' .. ref, outcome .. '\n' .. num(now))
  else
    local r = deps_apply(dk, child, ref, outcome, now)
    if deps_after(dk, child, r) then
      released = released + 1
    elseif r == 'cancelled' then
      cancelled = cancelled + 1
    end
  end
end
if released > 0 then
  wake(wake_key)
end
return {STATUS.OK, released, cancelled}

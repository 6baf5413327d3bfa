--[[ deps_link: read-mostly, no state change
  The first step of enqueueing a job whose parents are in another queue (maybe another cluster
  slot): run in the parents' queue, it checks that every parent exists and records the child
  (another queue's job, maybe not yet created) in each live parent's set of far children
  (deps_prefix .. 'x/' .. <parent>), so that the parent's end puts a release in this queue's
  outbox (lib/deps_settle). All or nothing: a missing parent refuses the call before anything
  is written. Idempotent (set members), so a re-sent or retried enqueue adds nothing twice; a
  child whose enqueue never took its second step leaves a member that only makes one
  undeliverable release (dropped by lua/deps_deliver.lua's early records after a day).
  KEYS[1] meta        hash   schema, deps (set to 1: the queue has dependencies)
  KEYS[2] jobs        hash   job id -> packed job record (lib/record)
  KEYS[3] deps_prefix prefix dependency keys (lib/deps_keys)
  KEYS[4] done        zset   completed job ids (a parent's state, without reading its record)
  KEYS[5] dead        zset   dead job ids (the same)
  KEYS[6] cancelled   zset   cancelled job ids (the same)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] child       str    '<child queue>\n<child id>'
  ARGV[3] count       int    number of parents that follow (1 to 1000)
  ARGV[4+] parents    list   parent job ids (of this queue)
  Returns: {status, {state of each parent: 'completed', 'dead', 'cancelled' or 'live'}}
  Status: OK, NOT_FOUND, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(p log N) for p parents (their records are not read: lib/deps_state)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/read_meta"
--- @include "lib/deps_state"
--- @include "lib/key_types"

local meta_key = KEYS[1]
local jobs_key = KEYS[2]
local deps_prefix = KEYS[3]
local done_key = KEYS[4]
local dead_key = KEYS[5]
local cancelled_key = KEYS[6]
local now_arg = ARGV[1]
local child = ARGV[2]
local count = tonumber(ARGV[3])
local parents_at = 4

if not string.match(child, '^[^\n]+\n[^\n]+$') or not count or count < 1 or count > 1000
    or #ARGV ~= parents_at - 1 + count then
  return {STATUS.BAD_ARGUMENT, 'deps_link'}
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_key)
if not meta then
  return err
end
local bad_key, bad_type = key_types({jobs_key, 'hash', deps_prefix .. 'parents', 'zset',
  done_key, 'zset', dead_key, 'zset', cancelled_key, 'zset'})
if bad_key then
  return {STATUS.WRONG_TYPE, bad_key, bad_type}
end
local states = {}
for i = 1, count do
  local p = ARGV[parents_at + i - 1]
  local state = deps_state(jobs_key, done_key, dead_key, cancelled_key, p)
  if not state then
    return {STATUS.NOT_FOUND, p}
  end
  states[i] = state
end
local any = false
for i = 1, count do
  if states[i] == 'live' then
    local p = ARGV[parents_at + i - 1]
    redis.call('SADD', deps_prefix .. 'x/' .. p, child)
    redis.call('ZADD', deps_prefix .. 'parents', 'NX', num(now), p)
    any = true
  end
end
if any and meta[2] ~= '1' then
  redis.call('HSET', meta_key, 'deps', '1')
end
return {STATUS.OK, states}

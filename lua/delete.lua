--[[ delete: any -> (deleted)
  Removes a job and every index entry that points at it, in whatever state it is, and its
  stored result. A leased job can be deleted; its holder's later ack or nack then finds no job
  (NOT_FOUND).
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids
  KEYS[3] scheduled   zset   job ids
  KEYS[4] leased      zset   job ids
  KEYS[5] done        zset   job ids
  KEYS[6] dead        zset   job ids
  KEYS[7] cancelled   zset   job ids
  KEYS[8] unique      hash   unique key -> job id
  KEYS[9] jobs        hash   job id -> packed job record (lib/record)
  KEYS[10] result_prefix prefix stored results are result_prefix .. <id> (strings with a TTL)
  KEYS[11] gready     zset   grouped ready jobs (lib/groups)
  KEYS[12] gturn      zset   group -> turn, the groups that may lease now
  KEYS[13] gleased    zset   leased grouped jobs, member <group> \0 <id>
  KEYS[14] gjob       hash   job id -> group
  KEYS[15] waiting    zset   job ids waiting for parents
  KEYS[16] deps_prefix prefix dependency keys (lib/deps_keys), used only when meta deps = 1
  KEYS[17] wake       zset   signalled when children were released
  ARGV[1] id          str    job id
  Returns: {status, 1 = deleted | 0 = there was no such job (nor a stored result of it)}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/clear_unique"
--- @include "lib/grp_ctx"
--- @include "lib/record"
--- @include "lib/now_ms"
--- @include "lib/deps_keys"
--- @include "lib/deps_finish"
--- @include "lib/chunks"
--- @include "lib/attempt_fields"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local done_key = KEYS[5]
local dead_key = KEYS[6]
local cancelled_key = KEYS[7]
local unique_key = KEYS[8]
local jobs_key = KEYS[9]
local result_prefix = KEYS[10]
local gready_key = KEYS[11]
local gturn_key = KEYS[12]
local gleased_key = KEYS[13]
local gjob_key = KEYS[14]
local waiting_key = KEYS[15]
local deps_prefix = KEYS[16]
local wake_key = KEYS[17]
local id = ARGV[1]

local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', done_key, 'zset', dead_key, 'zset', cancelled_key, 'zset',
  unique_key, 'hash', jobs_key, 'hash'})
if err then
  return err
end
-- A record that does not parse can still be deleted; its unique key (if any) cannot be read.
local stored = redis.call('HGET', jobs_key, id)
local ukey = stored and string.match(stored, '^j3\n' .. string.rep('[^\n]*\n', 9) .. '([^\n]*)\n')
-- A grouped job (lib/groups) leaves its group: its waiting place or its lease slot.
local g = redis.call('HGET', gjob_key, id)
if g then
  local gctx = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)
  local t = stored and rec_parse(stored)  -- (a record that does not parse: claim drops it)
  gctx.forget(g, t and gctx.member(g, t[F.PRIO], t[F.SEQ], id), id)
end
local existed = redis.call('HDEL', jobs_key, id)
chunks({'HDEL', jobs_key}, attempt_fields({id}))  -- its attempt history (lib/attempt_entry)
if redis.call('DEL', result_prefix .. id) == 1 then
  existed = 1
end
local sets = {ready_key, scheduled_key, leased_key, done_key, dead_key, cancelled_key}
for i = 1, #sets do
  redis.call('ZREM', sets[i], id)
end
if ukey then
  clear_unique(unique_key, {ukey, id})
end
-- Dependencies: a waiting job leaves its parents' lists behind (they find no entry for it,
-- lib/deps_apply); a parent's children are settled as for a parent cancelled ('deleted').
if redis.call('HGET', meta_key, 'deps') == '1' then
  local dk = deps_keys(deps_prefix, jobs_key, waiting_key, ready_key, scheduled_key,
    cancelled_key, wake_key)
  redis.call('ZREM', waiting_key, id)
  redis.call('HDEL', dk.deps, id)
  deps_finish(dk, {id}, 'deleted', now_ms(''))
end
return {STATUS.OK, existed}

--[[ enqueue_deps: (new) -> waiting | ready | scheduled | cancelled
  Creates a job that runs only after its parents (jobs of the same queue) completed. Parents
  still live hold it in the waiting state; the transition that ends the last of them releases
  it (lib/deps_settle). A parent that already completed counts as done; one already dead or
  cancelled is judged by the policy at once ('fail' creates the job cancelled, with the parent
  named in its error; 'continue' and 'ignore' count it as done). A missing parent refuses the
  call before anything is written. An id that exists returns the stored job unchanged, so a
  re-sent call (client retry) never creates a second job or a second edge. The edges are also
  kept for flow_ttl_ms under prefix u/<child> (its parents) and d/<parent> (its children) for
  `flow`. Parents in other queues were linked first (lua/deps_link.lua, in their queue): a
  live one is waited for like a local one, unless its release came already (an early record
  of lua/deps_deliver.lua). Bounded: at most 1000 parents.
  KEYS[1] meta         hash   schema, lib_version, seq, enqueued, deps (1 once a job waited)
  KEYS[2] ready        zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled    zset   job ids, score = due time (ms)
  KEYS[4] waiting      zset   job ids waiting for parents, score = enqueue sequence
  KEYS[5] cancelled    zset   job ids, score = time of cancellation (ms)
  KEYS[6] jobs         hash   job id -> packed job record (lib/record)
  KEYS[7] deps         hash   waiting job id -> '<policy>\n<parent>\n...' (parents not done)
  KEYS[8] deps_parents zset   parents with waiting children, score = last checked (ms)
  KEYS[9] deps_prefix  prefix children sets c/<parent>; flow edges u/<child>, d/<parent>
  KEYS[10] wake        zset   signalled when the job is ready at once
  KEYS[11] done        zset   completed job ids (a parent's state, without reading its record)
  KEYS[12] dead        zset   dead job ids (the same)
  KEYS[13] events      stream the queue's events while they are on (lib/events)
  KEYS[14] wait_prefix prefix result waiters' counters and lists (lib/events)
  ARGV[1] now_ms       int    test clock override; '' = Redis TIME
  ARGV[2] lib_version  str    redisq version, recorded in meta on the first write
  ARGV[3] flow_ttl_ms  int    how long the flow edges are kept (ms)
  ARGV[4] id           str    job id
  ARGV[5] payload      bytes  encoded payload
  ARGV[6] job_name     str    task name
  ARGV[7] priority     int    priority
  ARGV[8] run_at_ms    int    '' = now + delay_ms
  ARGV[9] delay_ms     int    delay
  ARGV[10] max_attempts int   attempts
  ARGV[11] lease_ms    int    '' = claim's
  ARGV[12] policy      str    fail | continue | ignore
  ARGV[13] count       int    number of parents of this queue that follow (0 to 1000)
  ARGV[14+] parents    list   parent job ids, then: the number of parents in other queues
                             (0 to 1000, 1 to 1000 parents in all) and 2 values per such
                             parent: its ref '<queue>\t<id>' and its state as lua/deps_link.lua
                             found it (completed, dead, cancelled or live)
  Returns: {status, now_ms, 0 = created | 1 = existed, state or the stored record, new_queue}
  Status: OK, NOT_FOUND, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(p log N) for p parents (their records are not read: lib/deps_state)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/read_meta"
--- @include "lib/key_types"
--- @include "lib/wake"
--- @include "lib/deps_name"
--- @include "lib/deps_state"
--- @include "lib/events"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local waiting_key = KEYS[4]
local cancelled_key = KEYS[5]
local jobs_key = KEYS[6]
local deps_key = KEYS[7]
local parents_key = KEYS[8]
local deps_prefix = KEYS[9]
local wake_key = KEYS[10]
local done_key = KEYS[11]
local dead_key = KEYS[12]
local events_key = KEYS[13]
local wait_prefix = KEYS[14]
local now_arg = ARGV[1]
local lib_version = ARGV[2]
local flow_ttl_ms = tonumber(ARGV[3])
local id = ARGV[4]
local payload = ARGV[5]
local name = ARGV[6]
local priority = tonumber(ARGV[7])
local run_at_arg = ARGV[8]
local delay_ms = tonumber(ARGV[9])
local max_attempts = tonumber(ARGV[10])
local lease_ms = ARGV[11]
local policy = ARGV[12]
local count = tonumber(ARGV[13])
local parents_at = 14

if id == '' or not priority or not delay_ms or not max_attempts or not flow_ttl_ms
    or flow_ttl_ms < 1 or (policy ~= 'fail' and policy ~= 'continue' and policy ~= 'ignore')
    or not count or count < 0 or count > 1000 or #ARGV < parents_at + count then
  return {STATUS.BAD_ARGUMENT, 'enqueue_deps'}
end
local far_at = parents_at + count + 1
local far_count = tonumber(ARGV[far_at - 1])
if not far_count or far_count < 0 or count + far_count < 1 or count + far_count > 1000
    or #ARGV ~= far_at - 1 + 2 * far_count then
  return {STATUS.BAD_ARGUMENT, 'enqueue_deps'}
end
local FAR_STATES = {completed = true, dead = true, cancelled = true, live = true}
for i = 1, far_count do
  local ref, state = ARGV[far_at + 2 * (i - 1)], ARGV[far_at + 2 * (i - 1) + 1]
  if not string.match(ref, '^[^\t\n]+\t[^\t\n]+$') or not FAR_STATES[state] then
    return {STATUS.BAD_ARGUMENT, 'far parents', i}
  end
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_key, 'seq', 'enqueued', 'deps', 'events')
if not meta then
  return err
end
local bad_key, bad_type = key_types({jobs_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  waiting_key, 'zset', cancelled_key, 'zset', deps_key, 'hash', parents_key, 'zset',
  done_key, 'zset', dead_key, 'zset'})
if bad_key then
  return {STATUS.WRONG_TYPE, bad_key, bad_type}
end
local stored = redis.call('HGET', jobs_key, id)
if stored then
  return {STATUS.OK, now, 1, stored, 0}
end

-- Validate: every parent exists (and is not the job itself); judge the ones that ended.
local parents = {}
local seen = {}
for i = 1, count do
  local p = ARGV[parents_at + i - 1]
  if p == id or p == '' then
    return {STATUS.BAD_ARGUMENT, 'depends_on', i}
  end
  if not seen[p] then
    seen[p] = true
    parents[#parents + 1] = p
  end
end
local pending = {}
local failed = nil
for i = 1, #parents do
  local state = deps_state(jobs_key, done_key, dead_key, cancelled_key, parents[i])
  if not state then
    return {STATUS.NOT_FOUND, parents[i]}
  end
  if state == 'dead' or state == 'cancelled' then
    if policy == 'fail' and not failed then
      failed = {parents[i], state}
    end
  elseif state ~= 'completed' then
    pending[#pending + 1] = parents[i]
  end
end

local early_key = deps_prefix .. 'early'
local early_used = {}
for i = 1, far_count do
  local ref, state = ARGV[far_at + 2 * (i - 1)], ARGV[far_at + 2 * (i - 1) + 1]
  -- Its release may have come between the link and this call (then the link said 'live'),
  -- or before a retry of this enqueue whose first try died after its link.
  local early = redis.call('HGET', early_key, id .. '\n' .. ref)
  if early then
    early_used[#early_used + 1] = id .. '\n' .. ref
    if state == 'live' then
      state = string.match(early, '^(%l+)')
    end
  end
  if state == 'dead' or state == 'cancelled' or state == 'deleted' then
    if policy == 'fail' and not failed then
      failed = {ref, state}
    end
  elseif state ~= 'completed' then
    pending[#pending + 1] = ref
  end
end

-- Write.
local run_at = now + delay_ms
if run_at_arg ~= '' then
  run_at = tonumber(run_at_arg)
end
local seq = (tonumber(meta[2]) or 0) + 1
local state, finished, ended, error_text = 'waiting', '', '', ''
if failed then
  state, finished, ended = 'cancelled', num(now), 'parent/' .. deps_name(failed[1])
  error_text = 'parent ' .. deps_name(failed[1]) .. ' ended ' .. failed[2]
  redis.call('ZADD', cancelled_key, num(now), id)
elseif #pending > 0 then
  redis.call('ZADD', waiting_key, num(seq), id)
  redis.call('HSET', deps_key, id, policy .. '\n' .. table.concat(pending, '\n'))
  for i = 1, #pending do
    if not string.find(pending[i], '\t', 1, true) then
      redis.call('SADD', deps_prefix .. 'c/' .. pending[i], id)
      redis.call('ZADD', parents_key, 'NX', num(now), pending[i])
    end
  end
elseif run_at > now then
  state = 'scheduled'
  redis.call('ZADD', scheduled_key, num(run_at), id)
else
  state = 'ready'
  redis.call('ZADD', ready_key, num((1000 - priority) * 4398046511104 + seq), id)
end
local record = 'j3\n' .. state .. '\n0\n\n\n\n\n' .. finished .. '\n' .. ended
  .. '\n' .. lease_ms .. '\n\n' .. num(priority) .. '\n' .. num(max_attempts) .. '\n' .. num(now)
  .. '\n' .. num(run_at) .. '\n' .. num(seq) .. '\n' .. name .. '\n' .. #error_text .. '\n0\n0\n'
  .. error_text .. payload
redis.call('HSET', jobs_key, id, record)
if #early_used > 0 then
  redis.call('HDEL', early_key, unpack(early_used))
end
-- The edges for `flow`, kept for flow_ttl_ms (inspection only: the release never reads them).
local up = deps_prefix .. 'u/' .. id
if #parents > 0 then
  redis.call('SET', up, table.concat(parents, '\n'), 'PX', flow_ttl_ms)
end
for i = 1, #parents do
  local down = deps_prefix .. 'd/' .. parents[i]
  redis.call('SADD', down, id)
  redis.call('PEXPIRE', down, flow_ttl_ms)
end
local enqueued = num((tonumber(meta[3]) or 0) + 1)
local is_new = 0
if meta[1] then
  redis.call('HSET', meta_key, 'seq', num(seq), 'enqueued', enqueued, 'deps', '1')
else
  is_new = 1
  redis.call('HSET', meta_key, 'seq', num(seq), 'enqueued', enqueued, 'deps', '1',
    'schema', SCHEMA_VERSION, 'lib_version', lib_version)
end
if state == 'ready' then
  wake(wake_key)
end
events(meta_key, events_key, wait_prefix, {meta[5], false}, now, 'enqueued', {id, record})
return {STATUS.OK, now, 0, state, is_new}

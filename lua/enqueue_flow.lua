--[[ enqueue_flow: (new) -> waiting | ready | scheduled | cancelled (many jobs at once)
  Creates the jobs of one queue of a workflow (chain, group, chord: redisq/canvas.py) with the
  dependency links among them, in one atomic step: either every new job of the call exists,
  with its links, or none. Each job lists its parents, which are jobs of this queue created
  earlier in the same call or stored already (a missing one refuses the whole call before
  anything is written, NOT_FOUND). A job is written as lua/enqueue_deps.lua writes one: waiting
  while a parent is live, ready (or scheduled) when it has none left, cancelled when a parent
  already ended dead or cancelled under policy 'fail' (a parent created cancelled in this call
  counts). An id that exists is left unchanged (its stored job is the answer), so a re-sent
  call (client retry) creates nothing twice. Parents in other queues are not taken here (the
  client sends such a job through lua/deps_link.lua and lua/enqueue_deps.lua). Flow edges as
  enqueue_deps. Bounded: at most CAPS.BATCH jobs, CAPS.ARG_BYTES of payloads beyond the
  first job, 1000 parents per job.
  KEYS[1] meta         hash   schema, lib_version, seq, enqueued, deps (1 once a job waited)
  KEYS[2] ready        zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled    zset   job ids, score = due time (ms)
  KEYS[4] waiting      zset   job ids waiting for parents, score = enqueue sequence
  KEYS[5] cancelled    zset   job ids, score = time of cancellation (ms)
  KEYS[6] jobs         hash   job id -> packed job record (lib/record)
  KEYS[7] deps         hash   waiting job id -> '<policy>\n<parent>\n...' (parents not done)
  KEYS[8] deps_parents zset   parents with waiting children, score = last checked (ms)
  KEYS[9] deps_prefix  prefix children sets c/<parent>; flow edges u/<child>, d/<parent>
  KEYS[10] wake        zset   signalled when a job is ready at once
  KEYS[11] done        zset   completed job ids (a parent's state, without reading its record)
  KEYS[12] dead        zset   dead job ids (the same)
  ARGV[1] now_ms       int    test clock override; '' = Redis TIME
  ARGV[2] lib_version  str    redisq version, recorded in meta on the first write
  ARGV[3] flow_ttl_ms  int    how long the flow edges are kept (ms)
  ARGV[4] count        int    number of jobs that follow (1 to CAPS.BATCH)
  ARGV[5+] jobs        list   per job, parents before children: id, payload, job_name,
                             priority, run_at_ms ('' = now + delay_ms), delay_ms, max_attempts,
                             lease_ms ('' = claim's), policy (fail | continue | ignore), the
                             number of its parents (0 to 1000), then their ids
  Returns: {status, now_ms, new_queue, {per job: 1 = created | 0 = existed}}
  Status: OK, NOT_FOUND, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(sum of parents * log N) (records of stored parents are not read: lib/deps_state)
]]
--- @include "lib/status"
--- @include "lib/caps"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/read_meta"
--- @include "lib/key_types"
--- @include "lib/wake"
--- @include "lib/deps_name"
--- @include "lib/deps_state"

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
local now_arg = ARGV[1]
local lib_version = ARGV[2]
local flow_ttl_ms = tonumber(ARGV[3])
local count = tonumber(ARGV[4])

if not flow_ttl_ms or flow_ttl_ms < 1 or not count or count < 1 or count > CAPS.BATCH then
  return {STATUS.BAD_ARGUMENT, 'enqueue_flow'}
end

-- Parse and validate every job before anything is written.
local jobs = {}
local at = 5
local bytes = 0
for j = 1, count do
  local job = {id = ARGV[at], payload = ARGV[at + 1], name = ARGV[at + 2],
    priority = tonumber(ARGV[at + 3]), run_at = ARGV[at + 4], delay = tonumber(ARGV[at + 5]),
    max_attempts = tonumber(ARGV[at + 6]), lease_ms = ARGV[at + 7], policy = ARGV[at + 8]}
  local n = tonumber(ARGV[at + 9])
  if not job.id or job.id == '' or not job.priority or not job.delay or not job.max_attempts
      or (job.policy ~= 'fail' and job.policy ~= 'continue' and job.policy ~= 'ignore')
      or not n or n < 0 or n > 1000 or #ARGV < at + 9 + n then
    return {STATUS.BAD_ARGUMENT, 'jobs', j}
  end
  if j > 1 then
    bytes = bytes + #job.payload
  end
  job.parents = {}
  for i = 1, n do
    local p = ARGV[at + 9 + i]
    if p == '' or p == job.id then
      return {STATUS.BAD_ARGUMENT, 'depends_on', j}
    end
    job.parents[i] = p
  end
  jobs[j] = job
  at = at + 10 + n
end
if #ARGV ~= at - 1 or bytes > CAPS.ARG_BYTES then
  return {STATUS.BAD_ARGUMENT, 'jobs', count}
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_key, 'seq', 'enqueued')
if not meta then
  return err
end
local bad_key, bad_type = key_types({jobs_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  waiting_key, 'zset', cancelled_key, 'zset', deps_key, 'hash', parents_key, 'zset',
  done_key, 'zset', dead_key, 'zset'})
if bad_key then
  return {STATUS.WRONG_TYPE, bad_key, bad_type}
end
-- The state of each parent: a job of this call (created or stored), else a stored job.
local made = {}   -- id -> true when created by this call (its state is in `state_of`)
local state_of = {}
local created = {}
for j = 1, count do
  local job = jobs[j]
  if made[job.id] ~= nil or redis.call('HEXISTS', jobs_key, job.id) == 1 then
    created[j] = 0
    job.skip = true
    made[job.id] = made[job.id] or false
  else
    created[j] = 1
    made[job.id] = true
  end
  for i = 1, #job.parents do
    local p = job.parents[i]
    if made[p] == nil and not deps_state(jobs_key, done_key, dead_key, cancelled_key, p) then
      return {STATUS.NOT_FOUND, p}
    end
  end
end

local new = 0
for j = 1, count do
  new = new + created[j]
end
if new == 0 then
  return {STATUS.OK, now, 0, created}  -- a re-sent call: every job exists
end

-- Write, parents first.
local seq = tonumber(meta[2]) or 0
local enqueued = tonumber(meta[3]) or 0
local woke = false
for j = 1, count do
  local job = jobs[j]
  if not job.skip then
    local pending, failed, seen = {}, nil, {}
    for i = 1, #job.parents do
      local p = job.parents[i]
      if not seen[p] then
        seen[p] = true
        local ps = made[p] and state_of[p]
        if ps == 'waiting' or ps == 'ready' or ps == 'scheduled' then
          ps = 'live'
        elseif not ps then
          ps = deps_state(jobs_key, done_key, dead_key, cancelled_key, p)
        end
        if ps == 'dead' or ps == 'cancelled' then
          if job.policy == 'fail' and not failed then
            failed = {p, ps}
          end
        elseif ps ~= 'completed' then
          pending[#pending + 1] = p
        end
      end
    end
    local run_at = now + job.delay
    if job.run_at ~= '' then
      run_at = tonumber(job.run_at) or run_at
    end
    seq = seq + 1
    enqueued = enqueued + 1
    local state, finished, ended, error_text = 'waiting', '', '', ''
    if failed then
      state, finished, ended = 'cancelled', num(now), 'parent/' .. deps_name(failed[1])
      error_text = 'parent ' .. deps_name(failed[1]) .. ' ended ' .. failed[2]
      redis.call('ZADD', cancelled_key, num(now), job.id)
    elseif #pending > 0 then
      redis.call('ZADD', waiting_key, num(seq), job.id)
      redis.call('HSET', deps_key, job.id, job.policy .. '\n' .. table.concat(pending, '\n'))
      for i = 1, #pending do
        redis.call('SADD', deps_prefix .. 'c/' .. pending[i], job.id)
        redis.call('ZADD', parents_key, 'NX', num(now), pending[i])
      end
    elseif run_at > now then
      state = 'scheduled'
      redis.call('ZADD', scheduled_key, num(run_at), job.id)
    else
      state = 'ready'
      woke = true
      redis.call('ZADD', ready_key, num((1000 - job.priority) * 4398046511104 + seq), job.id)
    end
    state_of[job.id] = state
    redis.call('HSET', jobs_key, job.id, 'j3\n' .. state .. '\n0\n\n\n\n\n' .. finished .. '\n'
      .. ended .. '\n' .. job.lease_ms .. '\n\n' .. num(job.priority) .. '\n'
      .. num(job.max_attempts) .. '\n' .. num(now) .. '\n' .. num(run_at) .. '\n' .. num(seq)
      .. '\n' .. job.name .. '\n' .. #error_text .. '\n0\n0\n' .. error_text .. job.payload)
    if #job.parents > 0 then
      redis.call('SET', deps_prefix .. 'u/' .. job.id, table.concat(job.parents, '\n'), 'PX',
        flow_ttl_ms)
      for i = 1, #job.parents do
        local down = deps_prefix .. 'd/' .. job.parents[i]
        redis.call('SADD', down, job.id)
        redis.call('PEXPIRE', down, flow_ttl_ms)
      end
    end
  end
end
local is_new = 0
if meta[1] then
  redis.call('HSET', meta_key, 'seq', num(seq), 'enqueued', num(enqueued), 'deps', '1')
else
  is_new = 1
  redis.call('HSET', meta_key, 'seq', num(seq), 'enqueued', num(enqueued), 'deps', '1',
    'schema', SCHEMA_VERSION, 'lib_version', lib_version)
end
if woke then
  wake(wake_key)
end
return {STATUS.OK, now, is_new, created}

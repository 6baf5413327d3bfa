--[[ enqueue: (new) -> ready | scheduled
  Creates each job at most once: an id that already exists, or a unique key held by a live job,
  returns the stored job unchanged, so a re-sent call (client retry) never creates a second job.
  All or nothing: every job is validated before the first write.
  KEYS[1] meta        hash   schema, lib_version, seq (enqueue counter), token, paused
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] unique      hash   unique key -> job id, while the job is live
  KEYS[5] job_prefix  prefix job record hashes are job_prefix .. <id>
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] lib_version str    redisq version, recorded in meta on the first write
  ARGV[3] count       int    number of jobs that follow
  ARGV[4+] jobs       list   9 values per job: id, payload, name, priority, run_at_ms ('' = now +
                             delay_ms), delay_ms, max_attempts, lease_ms ('' = claim's), unique_key
  Returns: {status, now_ms, entries, new_queue}; entry per job: 0 = created, k > 0 = same job as
           entry k, or {id, field, value, ...} = the existing job; new_queue = 1 when this call
           created the queue's meta hash (the client then adds the queue to the registry)
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(n log N) for n jobs
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/init_meta"
--- @include "lib/read_job"
--- @include "lib/ready_score"
--- @include "lib/chunks"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local unique_key = KEYS[4]
local job_prefix = KEYS[5]
local now_arg = ARGV[1]
local lib_version = ARGV[2]
local count = tonumber(ARGV[3])
local jobs_at = 4
local STRIDE = 9

if not count or count < 1 or #ARGV ~= jobs_at - 1 + count * STRIDE then
  return {STATUS.BAD_ARGUMENT, 'count'}
end
local now = now_ms(now_arg)
local err, is_new = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  unique_key, 'hash'})
if err then
  return err
end

-- Validate every job and find the ones that already exist, before any write.
local entries = {}
local fresh = {}
local seen_id = {}
local seen_ukey = {}
for i = 1, count do
  local b = jobs_at + (i - 1) * STRIDE
  local id = ARGV[b]
  local ukey = ARGV[b + 8]
  local prio = tonumber(ARGV[b + 3])
  if id == '' or not prio or not tonumber(ARGV[b + 5]) or not tonumber(ARGV[b + 6]) then
    return {STATUS.BAD_ARGUMENT, 'jobs', i}
  end
  if seen_id[id] then
    entries[i] = seen_id[id]
  elseif ukey ~= '' and seen_ukey[ukey] then
    entries[i] = seen_ukey[ukey]
  else
    local key = job_prefix .. id
    local t = redis.call('TYPE', key)
    if type(t) == 'table' then
      t = t['ok']
    end
    local existing = nil
    if t == 'hash' then
      existing = id
    elseif t ~= 'none' then
      return {STATUS.WRONG_TYPE, key, t}
    elseif ukey ~= '' then
      local holder = redis.call('HGET', unique_key, ukey)
      if holder then
        local f = read_job(job_prefix .. holder, 'state')
        if f and (f[1] == 'ready' or f[1] == 'scheduled' or f[1] == 'leased') then
          existing = holder
        end
      end
    end
    if existing then
      local record = redis.call('HGETALL', job_prefix .. existing)
      table.insert(record, 1, existing)
      entries[i] = record
    else
      entries[i] = 0
      fresh[#fresh + 1] = b
    end
    seen_id[id] = i
    if ukey ~= '' then
      seen_ukey[ukey] = i
    end
  end
end

if #fresh == 0 then
  return {STATUS.OK, now, entries, 0}
end

-- Write.
if is_new then
  init_meta(meta_key, lib_version)
end
local seq = redis.call('HINCRBY', meta_key, 'seq', #fresh) - #fresh
local ready_pairs = {}
local scheduled_pairs = {}
local n = num(now)
for i = 1, #fresh do
  local b = fresh[i]
  local id = ARGV[b]
  local run_at = ARGV[b + 4]
  if run_at == '' then
    run_at = now + tonumber(ARGV[b + 5])
  else
    run_at = tonumber(run_at)
  end
  seq = seq + 1
  local state = 'ready'
  if run_at > now then
    state = 'scheduled'
    scheduled_pairs[#scheduled_pairs + 1] = num(run_at)
    scheduled_pairs[#scheduled_pairs + 1] = id
  else
    ready_pairs[#ready_pairs + 1] = ready_score(ARGV[b + 3], seq)
    ready_pairs[#ready_pairs + 1] = id
  end
  local fields = {'HSET', job_prefix .. id, 'state', state, 'payload', ARGV[b + 1],
    'prio', ARGV[b + 3], 'attempts', '0', 'max', ARGV[b + 6], 'created', n,
    'run_at', num(run_at), 'seq', num(seq)}
  if ARGV[b + 2] ~= '' then
    fields[#fields + 1] = 'name'
    fields[#fields + 1] = ARGV[b + 2]
  end
  if ARGV[b + 7] ~= '' then
    fields[#fields + 1] = 'lease_ms'
    fields[#fields + 1] = ARGV[b + 7]
  end
  local ukey = ARGV[b + 8]
  if ukey ~= '' then
    fields[#fields + 1] = 'ukey'
    fields[#fields + 1] = ukey
    redis.call('HSET', unique_key, ukey, id)
  end
  redis.call(unpack(fields))
end
if #ready_pairs > 0 then
  chunks({'ZADD', ready_key}, ready_pairs)
end
if #scheduled_pairs > 0 then
  chunks({'ZADD', scheduled_key}, scheduled_pairs)
end
local new_queue = 0
if is_new then
  new_queue = 1
end
return {STATUS.OK, now, entries, new_queue}

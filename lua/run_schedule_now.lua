--[[ run_schedule_now: schedule -> schedule + (new) ready job
  Enqueues one run of a schedule now, outside its ticks (whose timing it leaves alone), with
  the payload and options of the stored version `digest`. The job id comes from the client
  (<id>@now-<request>), so a re-sent call finds its job and creates none.
  KEYS[1] meta           hash   schema, lib_version, seq, enqueued
  KEYS[2] ready          zset   job ids, score = ready_score(priority, seq)
  KEYS[3] jobs           hash   job id -> packed job record (lib/record)
  KEYS[4] wake           zset   signalled for a waiting worker
  KEYS[5] schedules      hash   schedule id -> packed schedule (lib/sched_record)
  ARGV[1] now_ms         int    test clock override; '' = Redis TIME
  ARGV[2] lib_version    str    redisq version, recorded in meta on the first write
  ARGV[3] id             str    schedule id
  ARGV[4] digest         str    the version the job fields come from
  ARGV[5] job_id         str    the job's id
  ARGV[6] job_name       str    the job's name (task)
  ARGV[7] priority       int    the job's priority
  ARGV[8] max_attempts   int    the job's attempts
  ARGV[9] lease_ms       int    the job's lease ('' = claim's)
  ARGV[10] payload       bytes  the job's payload (msgpack)
  Returns: {status, outcome, now_ms}; outcome 'created', 'exists' (an earlier call made it)
           or 'changed' (another version is stored: read it and call again)
  Status: OK, NOT_FOUND, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/schema"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/key_types"
--- @include "lib/read_meta"
--- @include "lib/ready_score"
--- @include "lib/wake"
--- @include "lib/job_record"
--- @include "lib/sched_record"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local jobs_key = KEYS[3]
local wake_key = KEYS[4]
local schedules_key = KEYS[5]
local now_arg = ARGV[1]
local lib_version = ARGV[2]
local id = ARGV[3]
local digest = ARGV[4]
local job_id = ARGV[5]
local job_name = ARGV[6]
local priority = ARGV[7]
local max_attempts = ARGV[8]
local lease_ms = ARGV[9]
local payload = ARGV[10]

local prio = tonumber(priority)
if id == '' or job_id == '' or string.find(job_id, '\n', 1, true) then
  return {STATUS.BAD_ARGUMENT, 'id'}
end
if not prio or prio < -1000 or prio > 1000 or not string.match(max_attempts, '^%d+$')
    or (lease_ms ~= '' and not string.match(lease_ms, '^%d+$'))
    or string.find(job_name, '\n', 1, true) then
  return {STATUS.BAD_ARGUMENT, 'job'}
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_key, 'seq', 'enqueued')
if not meta then
  return err
end
local bad_key, bad_type = key_types({ready_key, 'zset', jobs_key, 'hash', schedules_key, 'hash'})
if bad_key then
  return {STATUS.WRONG_TYPE, bad_key, bad_type}
end
local stored = redis.call('HGET', schedules_key, id)
if not stored then
  return {STATUS.NOT_FOUND, id}
end
local rec = sched_parse(stored)
if not rec then
  return {STATUS.BAD_RECORD, schedules_key, id}
end
if redis.call('HEXISTS', jobs_key, job_id) == 1 then
  return {STATUS.OK, 'exists', now}
end
if rec[S.DIGEST] ~= digest then
  return {STATUS.OK, 'changed', now}
end

local seq = (tonumber(meta[2]) or 0) + 1
redis.call('ZADD', ready_key, ready_score(priority, seq), job_id)
redis.call('HSET', jobs_key, job_id, job_record('ready', lease_ms, '', priority, max_attempts,
  now, now, seq, job_name, payload))
rec[S.LAST] = num(now)
redis.call('HSET', schedules_key, id, sched_pack(rec))
local enqueued = num((tonumber(meta[3]) or 0) + 1)
if meta[1] then
  redis.call('HSET', meta_key, 'seq', num(seq), 'enqueued', enqueued)
else
  redis.call('HSET', meta_key, 'seq', num(seq), 'enqueued', enqueued, 'schema', SCHEMA_VERSION,
    'lib_version', lib_version)
end
wake(wake_key)
return {STATUS.OK, 'created', now}

--[[ tick_schedule: schedule -> schedule + (new) ready | scheduled jobs
  Enqueues a schedule's due tick exactly once, however many drivers race for it: the call
  names the pending tick it computed from (`expect`) and the stored version (`digest`), and
  only the call that still finds both moves the schedule on to `next` (compare and set, on
  the Redis clock: the tick must be due). Every other call, a re-sent one included, changes
  nothing and learns where the schedule is. Each job's id is derived from the schedule id and
  its tick time (<id>@<tick ms>), so no tick becomes two jobs even then. The client computes
  the ticks (cron in a time zone), since Lua cannot; this script checks them against its
  clock: each tick in [expect, now], and `next` after now. Bounded: at most
  SCHED_CAPS.CATCH_UP jobs per call.
  KEYS[1] meta           hash   schema, lib_version, seq, enqueued
  KEYS[2] ready          zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled      zset   job ids, score = due time (ms)
  KEYS[4] jobs           hash   job id -> packed job record (lib/record)
  KEYS[5] wake           zset   signalled for a waiting worker when jobs arrive
  KEYS[6] schedules      hash   schedule id -> packed schedule (lib/sched_record)
  KEYS[7] schedule_due   zset   schedule ids, score = next tick (ms)
  ARGV[1] now_ms         int    test clock override; '' = Redis TIME
  ARGV[2] lib_version    str    redisq version, recorded in meta on the first write
  ARGV[3] id             str    schedule id
  ARGV[4] digest         str    the version the ticks were computed from
  ARGV[5] expect         int    the pending tick the client read (ms)
  ARGV[6] next           int    the pending tick after this call (ms); '' = none left
  ARGV[7] job_name       str    the jobs' name (task)
  ARGV[8] priority       int    the jobs' priority
  ARGV[9] max_attempts   int    the jobs' attempts
  ARGV[10] lease_ms      int    the jobs' lease ('' = claim's)
  ARGV[11] payload       bytes  the jobs' payload (msgpack)
  ARGV[12] count         int    number of jobs that follow (0 to SCHED_CAPS.CATCH_UP)
  ARGV[13+] ticks        list   2 values per job: tick time (ms), due time (tick + jitter)
  Returns: {status, outcome, now_ms, earliest, jobs}; outcome 'ticked', 'not_due', 'moved'
           (another call moved it on), 'changed' (another version is stored), 'paused',
           'gone' or 'behind' (next is not after now: compute again from now_ms); earliest =
           the queue's next pending tick ('' = none), jobs = the ids created by this call
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O(k log N) for k <= SCHED_CAPS.CATCH_UP jobs
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
--- @include "lib/sched_caps"
--- @include "lib/sched_record"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local jobs_key = KEYS[4]
local wake_key = KEYS[5]
local schedules_key = KEYS[6]
local due_key = KEYS[7]
local now_arg = ARGV[1]
local lib_version = ARGV[2]
local id = ARGV[3]
local digest = ARGV[4]
local expect_arg = ARGV[5]
local next_tick = ARGV[6]
local job_name = ARGV[7]
local priority = ARGV[8]
local max_attempts = ARGV[9]
local lease_ms = ARGV[10]
local payload = ARGV[11]
local count = tonumber(ARGV[12])
local ticks_at = 13
local expect = tonumber(expect_arg)

if id == '' or not expect or not count or count < 0 or count > SCHED_CAPS.CATCH_UP
    or #ARGV ~= ticks_at - 1 + 2 * count then
  return {STATUS.BAD_ARGUMENT, 'count'}
end
if next_tick ~= '' and not string.match(next_tick, '^%d+$') then
  return {STATUS.BAD_ARGUMENT, 'next'}
end
local prio = tonumber(priority)
if not prio or prio < -1000 or prio > 1000 or not string.match(max_attempts, '^%d+$')
    or (lease_ms ~= '' and not string.match(lease_ms, '^%d+$'))
    or string.find(job_name, '\n', 1, true) then
  return {STATUS.BAD_ARGUMENT, 'job'}
end
local now = now_ms(now_arg)

local function earliest()
  local first = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  return first[2] or ''
end

local bad_key, bad_type = key_types({schedules_key, 'hash', due_key, 'zset'})
if bad_key then
  return {STATUS.WRONG_TYPE, bad_key, bad_type}
end
local stored = redis.call('HGET', schedules_key, id)
if not stored then
  return {STATUS.OK, 'gone', now, earliest(), {}}
end
local rec = sched_parse(stored)
if not rec then
  return {STATUS.BAD_RECORD, schedules_key, id}
end
if rec[S.DIGEST] ~= digest then
  return {STATUS.OK, 'changed', now, earliest(), {}}
end
if rec[S.PAUSED] == '1' then
  return {STATUS.OK, 'paused', now, earliest(), {}}
end
if rec[S.NEXT] ~= expect_arg then
  return {STATUS.OK, 'moved', now, earliest(), {}}
end
if expect > now then
  return {STATUS.OK, 'not_due', now, earliest(), {}}
end
if next_tick ~= '' and tonumber(next_tick) <= now then
  return {STATUS.OK, 'behind', now, earliest(), {}}
end
-- The ticks: ascending, each in [expect, now], within the limit and the end.
local last = tonumber(rec[S.LAST]) or -1
local limit = tonumber(rec[S.LIMIT])
local end_at = tonumber(rec[S.END_AT])
if limit and tonumber(rec[S.RUNS]) + count > limit then
  return {STATUS.BAD_ARGUMENT, 'limit', limit}
end
local ids = {}
for i = 1, count do
  local tick = tonumber(ARGV[ticks_at + 2 * i - 2])
  local due = tonumber(ARGV[ticks_at + 2 * i - 1])
  if not tick or not due or tick < expect or tick > now or tick <= last or due < tick
      or (end_at and tick > end_at) then
    return {STATUS.BAD_ARGUMENT, 'ticks', i}
  end
  last = tick
  ids[i] = id .. '@' .. num(tick)
end
local meta, err = read_meta(meta_key, 'seq', 'enqueued')
if not meta then
  return err
end
bad_key, bad_type = key_types({ready_key, 'zset', scheduled_key, 'zset', jobs_key, 'hash'})
if bad_key then
  return {STATUS.WRONG_TYPE, bad_key, bad_type}
end

-- Write: the jobs not stored yet, then the schedule.
local seq = tonumber(meta[2]) or 0
local created = {}
for i = 1, count do
  local job_id = ids[i]
  if redis.call('HEXISTS', jobs_key, job_id) == 0 then
    local due = tonumber(ARGV[ticks_at + 2 * i - 1])
    seq = seq + 1
    local state = 'ready'
    if due > now then
      state = 'scheduled'
      redis.call('ZADD', scheduled_key, num(due), job_id)
    else
      redis.call('ZADD', ready_key, ready_score(priority, seq), job_id)
    end
    redis.call('HSET', jobs_key, job_id, job_record(state, lease_ms, '', priority, max_attempts,
      now, due, seq, job_name, payload))
    created[#created + 1] = job_id
  end
end
if count > 0 then
  rec[S.LAST] = ARGV[ticks_at + 2 * count - 2]
end
rec[S.RUNS] = num(tonumber(rec[S.RUNS]) + count)
rec[S.NEXT] = next_tick
redis.call('HSET', schedules_key, id, sched_pack(rec))
if next_tick ~= '' then
  redis.call('ZADD', due_key, next_tick, id)
else
  redis.call('ZREM', due_key, id)
end
if #created > 0 then
  local enqueued = num((tonumber(meta[3]) or 0) + #created)
  if meta[1] then
    redis.call('HSET', meta_key, 'seq', num(seq), 'enqueued', enqueued)
  else
    redis.call('HSET', meta_key, 'seq', num(seq), 'enqueued', enqueued, 'schema',
      SCHEMA_VERSION, 'lib_version', lib_version)
  end
  wake(wake_key)
end
return {STATUS.OK, 'ticked', now, earliest(), created}

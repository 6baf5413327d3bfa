--[[ set_schedule_paused: schedule -> paused | active
  Pauses a schedule (no tick is enqueued until it is resumed) or resumes it from `next`, the
  first tick after now that the client computed from the stored version `digest` (ticks that
  fell in the pause are not run). Setting the state it has changes nothing, so a re-sent call
  is harmless.
  KEYS[1] meta           hash   schema
  KEYS[2] schedules      hash   schedule id -> packed schedule
  KEYS[3] schedule_due   zset   schedule ids, score = next tick (ms)
  KEYS[4] schedule_events stream signalled for every driver on a change
  ARGV[1] id             str    schedule id
  ARGV[2] paused         int    1 = pause, 0 = resume
  ARGV[3] digest         str    the version `next` was computed from ('' when pausing)
  ARGV[4] next           int    resume from this tick (ms); '' = none left
  Returns: {status, outcome, record}; outcome 'same' (already so), 'written', or 'conflict'
           (another version is stored: compute `next` again from the record)
  Status: OK, NOT_FOUND, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/sched_record"
--- @include "lib/sched_signal"

local meta_key = KEYS[1]
local schedules_key = KEYS[2]
local due_key = KEYS[3]
local events_key = KEYS[4]
local id = ARGV[1]
local paused = ARGV[2]
local digest = ARGV[3]
local next_tick = ARGV[4]

if id == '' then
  return {STATUS.BAD_ARGUMENT, 'id'}
end
if paused ~= '0' and paused ~= '1' then
  return {STATUS.BAD_ARGUMENT, 'paused'}
end
if next_tick ~= '' and not string.match(next_tick, '^%d+$') then
  return {STATUS.BAD_ARGUMENT, 'next'}
end
local err = check_queue({meta_key, 'hash', schedules_key, 'hash', due_key, 'zset'})
if err then
  return err
end
local stored = redis.call('HGET', schedules_key, id)
if not stored then
  return {STATUS.NOT_FOUND, id}
end
local rec = sched_parse(stored)
if not rec then
  return {STATUS.BAD_RECORD, schedules_key, id}
end
if rec[S.PAUSED] == paused then
  return {STATUS.OK, 'same', stored}
end
if paused == '0' and rec[S.DIGEST] ~= digest then
  return {STATUS.OK, 'conflict', stored}
end
rec[S.PAUSED] = paused
if paused == '1' then
  redis.call('ZREM', due_key, id)
else
  rec[S.NEXT] = next_tick
  if next_tick ~= '' then
    redis.call('ZADD', due_key, next_tick, id)
  end
end
local record = sched_pack(rec)
redis.call('HSET', schedules_key, id, record)
sched_signal(events_key, id)
return {STATUS.OK, 'written', record}

--[[ remove_schedule: schedule -> (none)
  Deletes a schedule: no tick of it is enqueued after this call (jobs of earlier ticks stay).
  Removing a schedule that does not exist changes nothing, so a re-sent call is harmless.
  KEYS[1] meta           hash   schema
  KEYS[2] schedules      hash   schedule id -> packed schedule
  KEYS[3] schedule_due   zset   schedule ids, score = next tick (ms)
  KEYS[4] schedule_events stream signalled for every driver on a change
  ARGV[1] id             str    schedule id
  Returns: {status, removed}   removed = 1 when it existed
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/sched_signal"

local meta_key = KEYS[1]
local schedules_key = KEYS[2]
local due_key = KEYS[3]
local events_key = KEYS[4]
local id = ARGV[1]

if id == '' then
  return {STATUS.BAD_ARGUMENT, 'id'}
end
local err = check_queue({meta_key, 'hash', schedules_key, 'hash', due_key, 'zset'})
if err then
  return err
end
local removed = redis.call('HDEL', schedules_key, id)
redis.call('ZREM', due_key, id)
if removed == 1 then
  sched_signal(events_key, id)
end
return {STATUS.OK, removed}

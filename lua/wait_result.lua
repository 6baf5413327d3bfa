--[[ wait_result: (any) -> (any)
  Registers a result waiter for a job that is not final yet: the script that makes it final
  (ack, claim_and_ack, nack to dead, cancel, reap to dead) pushes onto the list
  wait_prefix .. 'q' .. <id>, which the caller then blocks on (BLPOP). A job already final,
  or gone, registers nothing (reply 1): the caller reads it at once. A waiter is counted under
  wait_prefix .. 'n' .. <id>, kept for wait_ms and a second more, and the queue's meta field
  `wait` holds the latest such deadline, so that finishing scripts look for waiters only while
  someone may wait (lib/events). A re-sent call counts the waiter twice: one more element is
  pushed, which expires with the list.
  KEYS[1] meta        hash   schema, wait (latest waiter deadline, ms)
  KEYS[2] jobs        hash   job id -> packed job record (lib/record)
  KEYS[3] wait_prefix prefix waiter counters and lists (see above)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] wait_ms     int    how long the caller blocks (1 to 3,600,000)
  Returns: {status, 1 = final or gone | 0 = registered}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/read_meta"
--- @include "lib/wrong_type"
--- @include "lib/bad_record"

local meta_key = KEYS[1]
local jobs_key = KEYS[2]
local wait_prefix = KEYS[3]
local now_arg = ARGV[1]
local id = ARGV[2]
local wait_ms = tonumber(ARGV[3])

if not wait_ms or wait_ms < 1 or wait_ms > 3600000 then
  return {STATUS.BAD_ARGUMENT, 'wait_ms'}
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_key, 'wait')
if not meta then
  return err
end
local s = redis.pcall('HGET', jobs_key, id)
if type(s) == 'table' then
  return wrong_type(jobs_key, s)
end
if not s then
  return {STATUS.OK, 1}
end
local state = string.match(s, '^j3\n(%l+)\n')
if not state then
  return bad_record(jobs_key, id)
end
if state == 'completed' or state == 'dead' or state == 'cancelled' then
  return {STATUS.OK, 1}
end
local keep = wait_ms + 1000
local n_key = wait_prefix .. 'n' .. id
redis.call('INCR', n_key)
redis.call('PEXPIRE', n_key, keep)
if (tonumber(meta[2]) or 0) < now + keep then
  redis.call('HSET', meta_key, 'wait', num(now + keep))
end
return {STATUS.OK, 0}

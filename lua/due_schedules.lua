--[[ due_schedules: (read only)
  Reads what a schedule driver needs for one pass over a queue, on the Redis clock: the due
  schedules (pending tick at or before now; the earliest first, at most `limit` and about
  `max_bytes` of records beyond the first), the queue's earliest pending tick, and the id of
  the latest change signalled on the queue's schedule stream (the driver then blocks for
  changes after it, so none that comes after this read is missed).
  KEYS[1] schedules      hash   schedule id -> packed schedule (lib/sched_record)
  KEYS[2] schedule_due   zset   schedule ids, score = next tick (ms)
  KEYS[3] schedule_events stream the latest change
  ARGV[1] now_ms         int    test clock override; '' = Redis TIME
  ARGV[2] limit          int    most due schedules returned (1 to 100)
  ARGV[3] max_bytes      int    record bytes returned beyond the first schedule
  Returns: {status, now_ms, event_id, earliest, {id, record, ...}}; earliest = '' when no
           schedule is pending, event_id = '0-0' when no change was ever signalled
  Status: OK, WRONG_TYPE, BAD_ARGUMENT
  Cost: O(log N + k) for k <= limit
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/key_types"

local schedules_key = KEYS[1]
local due_key = KEYS[2]
local events_key = KEYS[3]
local now_arg = ARGV[1]
local limit = tonumber(ARGV[2])
local max_bytes = tonumber(ARGV[3])

if not limit or limit < 1 or limit > 100 or not max_bytes then
  return {STATUS.BAD_ARGUMENT, 'limit'}
end
local bad_key, bad_type = key_types({schedules_key, 'hash', due_key, 'zset'})
if bad_key then
  return {STATUS.WRONG_TYPE, bad_key, bad_type}
end
local now = now_ms(now_arg)
local event_id = '0-0'
local last = redis.pcall('XREVRANGE', events_key, '+', '-', 'COUNT', 1)
if type(last) == 'table' and not last['err'] and last[1] then
  event_id = last[1][1]
end
local first = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
local earliest = first[2] or ''
local out = {}
if first[1] and tonumber(first[2]) <= now then
  local ids = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, limit)
  local bytes = 0
  for i = 1, #ids do
    local rec = redis.call('HGET', schedules_key, ids[i])
    if rec then
      if i > 1 and bytes + #rec > max_bytes then
        break
      end
      bytes = bytes + #rec
      out[#out + 1] = ids[i]
      out[#out + 1] = rec
    end
  end
end
return {STATUS.OK, now, event_id, earliest, out}

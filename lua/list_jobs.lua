--[[ list_jobs: read-only
  Lists a page of a queue's jobs in a stable order: by state (ready, scheduled, leased,
  completed, dead, cancelled) and, within a state, in that set's order (claim order, due time,
  lease deadline, then time finished). `offset` and `limit` count across the states listed.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids
  KEYS[3] scheduled   zset   job ids
  KEYS[4] leased      zset   job ids
  KEYS[5] done        zset   job ids
  KEYS[6] dead        zset   job ids
  KEYS[7] cancelled   zset   job ids
  KEYS[8] jobs        hash   job id -> packed job record (lib/record)
  ARGV[1] state       str    one state name, or '' for all
  ARGV[2] offset      int    jobs to skip
  ARGV[3] limit       int    most jobs listed
  Returns: {status, id, record, id, record, ...}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(limit log N)
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/read_jobs"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local done_key = KEYS[5]
local dead_key = KEYS[6]
local cancelled_key = KEYS[7]
local jobs_key = KEYS[8]
local state = ARGV[1]
local offset = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])

local by_state = {ready = ready_key, scheduled = scheduled_key, leased = leased_key,
  completed = done_key, dead = dead_key, cancelled = cancelled_key}
local order = {'ready', 'scheduled', 'leased', 'completed', 'dead', 'cancelled'}
if not offset or offset < 0 or not limit or limit < 1 or (state ~= '' and not by_state[state]) then
  return {STATUS.BAD_ARGUMENT, 'list'}
end
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', done_key, 'zset', dead_key, 'zset', cancelled_key, 'zset'})
if err then
  return err
end
local sets = order
if state ~= '' then
  sets = {state}
end
local out = {STATUS.OK}
local left = limit
for i = 1, #sets do
  if left <= 0 then
    break
  end
  local set_key = by_state[sets[i]]
  local size = redis.call('ZCARD', set_key)
  if offset >= size then
    offset = offset - size
  else
    local ids = redis.call('ZRANGE', set_key, offset, offset + left - 1)
    offset = 0
    if #ids > 0 then
      local recs, bad = read_jobs(jobs_key, ids)
      if not recs then
        return bad
      end
      for j = 1, #ids do
        if recs[j] then
          out[#out + 1] = ids[j]
          out[#out + 1] = recs[j]
        end
      end
    end
    left = left - #ids
  end
end
return out

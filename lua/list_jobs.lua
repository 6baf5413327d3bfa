--[[ list_jobs: read-only
  Lists a page of a queue's jobs in a stable order: by state (ready, the ready jobs of
  concurrency groups by group, scheduled, leased, completed, dead, cancelled) and, within a
  state, in that set's order (claim order, due time, lease deadline, then time finished).
  `offset` and `limit` count across the states listed. Bounded (lib/caps): at most
  CAPS.BATCH positions per call, and once the records read pass CAPS.READ_BYTES the page stops
  there; `more` then says the client should ask again from offset + covered.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids
  KEYS[3] scheduled   zset   job ids
  KEYS[4] leased      zset   job ids
  KEYS[5] done        zset   job ids
  KEYS[6] dead        zset   job ids
  KEYS[7] cancelled   zset   job ids
  KEYS[8] jobs        hash   job id -> packed job record (lib/record)
  KEYS[9] gready      zset   grouped ready jobs (lib/groups), listed after the ready set
  ARGV[1] state       str    one state name, or '' for all
  ARGV[2] offset      int    jobs to skip
  ARGV[3] limit       int    most jobs listed (more than CAPS.BATCH counts as CAPS.BATCH)
  Returns: {status, positions covered, more (1 = stopped short of `limit` for a cap), id,
           record, id, record, ...} (a position whose record is missing is covered, not listed)
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(limit log N), limit <= CAPS.BATCH; bytes bounded by lib/caps
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/caps"
--- @include "lib/read_some"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local done_key = KEYS[5]
local dead_key = KEYS[6]
local cancelled_key = KEYS[7]
local jobs_key = KEYS[8]
local gready_key = KEYS[9]
local state = ARGV[1]
local offset = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])

local by_state = {ready = ready_key, scheduled = scheduled_key, leased = leased_key,
  completed = done_key, dead = dead_key, cancelled = cancelled_key}
local order = {'ready', 'gready', 'scheduled', 'leased', 'completed', 'dead', 'cancelled'}
if not offset or offset < 0 or not limit or limit < 1 or (state ~= '' and not by_state[state]) then
  return {STATUS.BAD_ARGUMENT, 'list'}
end
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', done_key, 'zset', dead_key, 'zset', cancelled_key, 'zset', gready_key,
  'zset'})
if err then
  return err
end
local sets = order
if state == 'ready' then
  sets = {'ready', 'gready'}  -- the ready jobs of concurrency groups too
elseif state ~= '' then
  sets = {state}
end
by_state.gready = gready_key
local out = {STATUS.OK, 0, 0}
local left = math.min(limit, CAPS.BATCH)
local covered = 0
local used = 0
local more = 0
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
    if set_key == gready_key then  -- members <group> \0 <16 digits> <id> (lib/groups)
      for j = 1, #ids do
        ids[j] = string.sub(ids[j], string.find(ids[j], '\0', 1, true) + 17)
      end
    end
    if #ids > 0 then
      -- The first record of the call is always read; after it, the budget decides.
      local recs, n, bytes = read_some(jobs_key, ids, CAPS.READ_BYTES - used)
      if not recs then
        return n
      end
      if covered > 0 and n == 1 and bytes > CAPS.READ_BYTES - used then
        n = 0
      end
      used = used + bytes
      for j = 1, n do
        if recs[j] then
          out[#out + 1] = ids[j]
          out[#out + 1] = recs[j]
        end
      end
      covered = covered + n
      left = left - n
      if n < #ids then
        more = 1
        break
      end
    end
  end
end
if left <= 0 and limit > CAPS.BATCH then
  more = 1
end
out[2] = covered
out[3] = more
return out

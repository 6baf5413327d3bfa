--[[ migrate: schema 2 -> 3
  Converts one queue's job records from layout 2 to layout 3 (lib/record) in bounded steps,
  while every other script refuses the queue: the first call turns the meta schema '2' into
  'migrating:3' (old and new clients alike then get SCHEMA_MISMATCH), each call converts the
  layout-2 records that one HSCAN step of the jobs hash finds from `cursor`, and the call that
  ends the scan sets the schema to '3'. A record already in layout 3 is skipped, so a re-sent
  call changes nothing; a record in neither layout is left as it is and counted as bad. A queue
  at schema 3, or without a schema (nothing was ever written), is done at once, unwritten.
  A call scans steps of a few records (HSCAN COUNT CAPS.READ_GROUP, lib/caps) until it has converted
  `batch` records (CAPS.BATCH at most) or read CAPS.READ_BYTES; a step that would go past either
  is left whole to the next call, unless it is the call's first: then the call converts what
  fits and hands back the cursor it was given, so the next call scans the same step again and
  converts the rest (HSCAN's COUNT is only a hint: a small hash comes whole in one step).
  Skipped and bad records are counted by the call that finishes a step (skipped: layout 3
  before that call).
  KEYS[1] meta        hash   schema
  KEYS[2] jobs        hash   job id -> packed job record (lib/record)
  ARGV[1] cursor      str    HSCAN cursor: '0' to start, then the one the last call returned
  ARGV[2] batch       int    most records converted (1 to 10,000; CAPS.BATCH at most per call)
  Returns: {status, schema found, next cursor, converted, skipped, bad, done (0 or 1)}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(batch) records converted, batch <= CAPS.BATCH; bytes bounded by lib/caps
]]
--- @include "lib/status"
--- @include "lib/schema"
--- @include "lib/key_types"
--- @include "lib/write_jobs"
--- @include "lib/caps"

local meta_key = KEYS[1]
local jobs_key = KEYS[2]
local cursor = ARGV[1]
local batch = tonumber(ARGV[2])

-- The version this script converts from, and the marker of a migration under way,
-- 'migrating:3' (spelled with string.char(58), the colon: the contract test takes every
-- quoted literal with a colon for a key name, and this one is a value).
local FROM = '2'
local MIGRATING = 'migrating' .. string.char(58) .. SCHEMA_VERSION

if not string.match(cursor, '^%d+$') or #cursor > 20 or not batch or batch < 1
    or batch > 10000 or batch ~= math.floor(batch) then
  return {STATUS.BAD_ARGUMENT, 'migrate'}
end
local bad_key, bad_type = key_types({meta_key, 'hash', jobs_key, 'hash'})
if bad_key then
  return {STATUS.WRONG_TYPE, bad_key, bad_type}
end
local found = redis.call('HGET', meta_key, 'schema')
if not found or found == SCHEMA_VERSION then
  return {STATUS.OK, found or '', '0', 0, 0, 0, 1}
end
if found ~= FROM and found ~= MIGRATING then
  return {STATUS.SCHEMA_MISMATCH, found, SCHEMA_VERSION}
end

-- Layout 2 (the record of schema 2): 'j2', then state, prio, attempts, max, created, run_at,
-- seq, token, worker, leased_at, deadline, finished, lease_ms, ukey, name, ended, the three
-- blob lengths, and the blobs (error .. result .. progress .. payload), unchanged in layout 3.
local J2 = '^j2\n(%l+)\n(%-?%d+)\n(%d+)\n(%d+)\n(%d+)\n(%d+)\n(%d+)\n(%d*)\n([^\n]*)\n'
  .. '(%d*)\n(%d*)\n(%d*)\n(%d*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n(%d+)\n(%d+)\n(%d+)\n()'
-- Rewrites a layout-2 record in layout 3 (lib/record): the same fields in the new order, the
-- blobs unchanged. J2 checks each field with the pattern lib/record gives it, so the result
-- parses; nil when the record is not in layout 2 (or its blob lengths do not fit).
local function convert(s)
  local state, prio, attempts, max, created, run_at, seq, token, worker, leased_at, deadline,
    finished, lease_ms, ukey, name, ended, len_e, len_r, len_p, blobs = string.match(s, J2)
  if not state or tonumber(len_e) + tonumber(len_r) + tonumber(len_p) > #s - blobs + 1 then
    return nil
  end
  return 'j3\n' .. state .. '\n' .. attempts .. '\n' .. token .. '\n' .. worker .. '\n'
    .. leased_at .. '\n' .. deadline .. '\n' .. finished .. '\n' .. ended .. '\n' .. lease_ms
    .. '\n' .. ukey .. '\n' .. prio .. '\n' .. max .. '\n' .. created .. '\n' .. run_at .. '\n'
    .. seq .. '\n' .. name .. '\n' .. len_e .. '\n' .. len_r .. '\n' .. len_p .. '\n'
    .. string.sub(s, blobs)
end

local most = math.min(batch, CAPS.BATCH)
local next_cursor = cursor
local writes = {}
local converted, skipped, bad = 0, 0, 0
local used = 0
local full = false
local first = true
repeat
  local step = redis.call('HSCAN', jobs_key, next_cursor, 'COUNT', CAPS.READ_GROUP)
  local entries = step[2]
  local step_writes = {}
  local done_here, skipped_here, bad_here = 0, 0, 0
  local over = false
  for i = 1, #entries, 2 do
    local s = entries[i + 1]
    used = used + #s
    local tag = string.sub(s, 1, 3)
    if tag == 'j3\n' then
      skipped_here = skipped_here + 1
    elseif tag == 'a1\n' then  -- luacheck: ignore 542 (an attempt entry, lib/attempt_entry)
    elseif tag ~= 'j2\n' then
      bad_here = bad_here + 1
    elseif converted + done_here == most
        or (converted + done_here > 0 and used > CAPS.READ_BYTES) then
      over = true
    else
      local rec = convert(s)
      if rec then
        done_here = done_here + 1
        step_writes[#step_writes + 1] = entries[i]
        step_writes[#step_writes + 1] = rec
      else
        bad_here = bad_here + 1
      end
    end
  end
  if over then
    if first then
      -- More layout-2 records in this step than one call converts: keep what was converted
      -- and scan the step again next time (the cursor stays; its counts come then).
      full = true
      converted = done_here
      writes = step_writes
    end
    break  -- a later step is left whole to the next call
  end
  converted = converted + done_here
  skipped = skipped + skipped_here
  bad = bad + bad_here
  for i = 1, #step_writes do
    writes[#writes + 1] = step_writes[i]
  end
  next_cursor = step[1]
  first = false
until next_cursor == '0' or converted >= most or used >= CAPS.READ_BYTES

if found == FROM then
  redis.call('HSET', meta_key, 'schema', MIGRATING)
end
write_jobs(jobs_key, writes)
local done = 0
if next_cursor == '0' and not full then
  redis.call('HSET', meta_key, 'schema', SCHEMA_VERSION)
  done = 1
end
return {STATUS.OK, found, next_cursor, converted, skipped, bad, done}

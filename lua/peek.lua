--[[ peek: read-only
  Lists the jobs the next claims would take, in claim order: the ready set merged with scheduled
  jobs that are already due (a claim promotes those first). Nothing is written or locked.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] jobs        hash   job id -> packed job record (lib/record)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] limit       int    most jobs listed
  ARGV[3] batch       int    most due scheduled jobs a claim would promote first
  Returns: {status, id, record, id, record, ...}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O((limit + batch) log N)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/record"
--- @include "lib/bad_record"
--- @include "lib/read_jobs"
--- @include "lib/ready_score"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local jobs_key = KEYS[4]
local now_arg = ARGV[1]
local limit = tonumber(ARGV[2])
local batch = tonumber(ARGV[3])

if not limit or limit < 1 or not batch or batch < 1 then
  return {STATUS.BAD_ARGUMENT, 'limit'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset'})
if err then
  return err
end
local candidates = {}
local ready = redis.call('ZRANGE', ready_key, 0, limit - 1, 'WITHSCORES')
for i = 1, #ready, 2 do
  candidates[#candidates + 1] = {tonumber(ready[i + 1]), ready[i]}
end
-- A claim promotes the first `batch` due jobs (by due time) before it takes the best ready
-- ones, so the next claims see exactly those: merge them all by their ready score.
local due = redis.call('ZRANGEBYSCORE', scheduled_key, '-inf', num(now), 'LIMIT', 0, batch)
if #due > 0 then
  local recs, bad = read_jobs(jobs_key, due)
  if not recs then
    return bad
  end
  for i = 1, #due do
    if recs[i] then
      local t = rec_parse(recs[i])
      if not t then
        return bad_record(jobs_key, due[i])
      end
      candidates[#candidates + 1] = {tonumber(ready_score(t[F.PRIO], t[F.SEQ])), due[i]}
    end
  end
end
table.sort(candidates, function(a, b) return a[1] < b[1] end)
local ids = {}
for i = 1, math.min(limit, #candidates) do
  ids[i] = candidates[i][2]
end
local out = {STATUS.OK}
if #ids == 0 then
  return out
end
local recs, bad = read_jobs(jobs_key, ids)
if not recs then
  return bad
end
for i = 1, #ids do
  if recs[i] then
    out[#out + 1] = ids[i]
    out[#out + 1] = recs[i]
  end
end
return out

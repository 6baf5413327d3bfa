--[[ peek: read-only
  Lists the jobs the next claims would take, in claim order: the ready set merged with scheduled
  jobs that are already due (a claim promotes those first). Nothing is written or locked.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] job_prefix  prefix job record hashes are job_prefix .. <id>
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] limit       int    most jobs listed
  Returns: {status, id, {field, value, ...}, ...}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(limit log N)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/read_job"
--- @include "lib/ready_score"
--- @include "lib/wrong_type"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local job_prefix = KEYS[4]
local now_arg = ARGV[1]
local limit = tonumber(ARGV[2])

if not limit or limit < 1 then
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
local due = redis.call('ZRANGEBYSCORE', scheduled_key, '-inf', num(now), 'LIMIT', 0, limit)
for i = 1, #due do
  local f, bad = read_job(job_prefix .. due[i], 'state', 'prio', 'seq')
  if bad then
    return wrong_type(bad)
  end
  if f then
    candidates[#candidates + 1] = {tonumber(ready_score(f[2], f[3])), due[i]}
  end
end
table.sort(candidates, function(a, b) return a[1] < b[1] end)
local out = {STATUS.OK}
for i = 1, math.min(limit, #candidates) do
  local record = redis.pcall('HGETALL', job_prefix .. candidates[i][2])
  if record['err'] then
    return wrong_type(job_prefix .. candidates[i][2])
  end
  if #record > 0 then
    out[#out + 1] = candidates[i][2]
    out[#out + 1] = record
  end
end
return out

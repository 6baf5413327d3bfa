--- @include "lib/status"
--- @include "lib/num"
--- @include "lib/chunks"
--- @include "lib/read_job"
--- @include "lib/ready_score"
--- @include "lib/wrong_type"
--- @include "lib/key_types"
-- Moves up to `limit` scheduled jobs whose due time has come into the ready set, at the
-- position their priority and original enqueue sequence give them. Index entries that point at
-- no job record are dropped. Returns the number promoted, or nil and an error reply when a
-- key holds another type (nothing of this step is written then).
local function promote_due(scheduled_key, ready_key, job_prefix, now, limit)
  local ids = redis.pcall('ZRANGEBYSCORE', scheduled_key, '-inf', num(now), 'LIMIT', 0, limit)
  if ids['err'] then
    return nil, wrong_type(scheduled_key)
  end
  if #ids == 0 then
    return 0
  end
  if key_types({ready_key, 'zset'}) then
    return nil, wrong_type(ready_key)
  end
  local moves = {}
  local promoted = {}
  for i = 1, #ids do
    local f, bad = read_job(job_prefix .. ids[i], 'state', 'prio', 'seq')
    if bad then
      return nil, wrong_type(bad)
    end
    if f then
      moves[#moves + 1] = ready_score(f[2], f[3])
      moves[#moves + 1] = ids[i]
      promoted[#promoted + 1] = ids[i]
    end
  end
  for i = 1, #promoted do
    redis.call('HSET', job_prefix .. promoted[i], 'state', 'ready')
  end
  if #moves > 0 then
    chunks({'ZADD', ready_key}, moves)
  end
  chunks({'ZREM', scheduled_key}, ids)
  return #promoted
end

--- @include "lib/status"
--- @include "lib/num"
--- @include "lib/chunks"
--- @include "lib/read_job"
--- @include "lib/ready_score"
--- @include "lib/clear_unique"
--- @include "lib/key_types"
--- @include "lib/wrong_type"
--- @include "lib/wrong_type"
-- Returns up to `limit` jobs whose lease deadline has passed to the ready set, or to the dead
-- set when their attempts are used up. The lease's token stays on the record (ended is
-- 'reap/<token>'), so a late ack, nack or renew by the old holder is refused. Returns reaped,
-- dead-lettered; or nil, nil and an error reply when a key holds another type (then nothing of
-- this step is written).
local function reap_expired(keys, now, limit)
  local ids = redis.pcall('ZRANGEBYSCORE', keys.leased, '-inf', num(now), 'LIMIT', 0, limit)
  if ids['err'] then
    return nil, nil, wrong_type(keys.leased)
  end
  if #ids == 0 then
    return 0, 0
  end
  local to_ready = {}
  local ready_ids = {}
  local dead = {}
  for i = 1, #ids do
    local f, bad = read_job(keys.job_prefix .. ids[i], 'state', 'prio', 'seq', 'attempts', 'max',
      'ukey', 'token')
    if bad then
      return nil, nil, wrong_type(bad)
    end
    if f then
      if tonumber(f[4]) >= tonumber(f[5]) then
        dead[#dead + 1] = {ids[i], f[4], f[5], f[6], f[7]}
      else
        to_ready[#to_ready + 1] = ready_score(f[2], f[3])
        to_ready[#to_ready + 1] = ids[i]
        ready_ids[#ready_ids + 1] = {ids[i], f[7]}
      end
    end
  end
  local bad = key_types({keys.ready, 'zset', keys.dead, 'zset', keys.unique, 'hash'})
  if bad then
    return nil, nil, wrong_type(bad)
  end
  for i = 1, #ready_ids do
    redis.call('HSET', keys.job_prefix .. ready_ids[i][1], 'state', 'ready',
      'ended', 'reap/' .. ready_ids[i][2])
  end
  if #to_ready > 0 then
    chunks({'ZADD', keys.ready}, to_ready)
  end
  local n = num(now)
  for i = 1, #dead do
    local d = dead[i]
    redis.call('HSET', keys.job_prefix .. d[1], 'state', 'dead', 'ended', 'reap/' .. d[5],
      'finished', n,
      'error', 'lease expired on attempt ' .. d[2] .. ' of ' .. d[3])
    redis.call('ZADD', keys.dead, n, d[1])
    clear_unique(keys.unique, d[4], d[1])
  end
  chunks({'ZREM', keys.leased}, ids)
  return #ready_ids, #dead
end

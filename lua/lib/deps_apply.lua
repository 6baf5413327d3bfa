--- @include "lib/num"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/rec_blobs"
--- @include "lib/ready_score"
--- @include "lib/deps_name"
-- Tells waiting job `child` that its parent `parent` ended with `outcome` ('completed', 'dead',
-- 'cancelled' or 'deleted'); dk holds the queue's keys (jobs, deps, waiting, ready, scheduled,
-- cancelled, prefix). The child's record in dk.deps is '<policy>\n<parent>\n<parent>...', the
-- parents it still waits for. Idempotent: a parent that is no longer on the list (told before,
-- or the child is gone) changes nothing ('gone'). A failed parent under policy 'fail' cancels
-- the child ('cancelled', its error names the parent); under 'continue' or 'ignore' the parent
-- is struck from the list like a completed one. The last parent struck releases the child to
-- ready (or scheduled, when its run_at is still ahead): 'released'; else 'waiting'. O(parents).
local function deps_apply(dk, child, parent, outcome, now)
  local raw = redis.call('HGET', dk.deps, child)
  if not raw then
    return 'gone'
  end
  local policy = string.match(raw, '^(%l+)\n')
  local left = {}
  local found = false
  for p in string.gmatch(string.sub(raw, #policy + 2), '[^\n]+') do
    if p == parent and not found then
      found = true
    else
      left[#left + 1] = p
    end
  end
  if not found then
    return 'gone'
  end
  if outcome ~= 'completed' and policy == 'fail' then
    redis.call('HDEL', dk.deps, child)
    redis.call('ZREM', dk.waiting, child)
    local s = redis.call('HGET', dk.jobs, child)
    local t = s and rec_parse(s)
    if t then
      local _, result, progress, payload = rec_blobs(t)
      local named = deps_name(parent)
      rec_set_blobs(t, 'parent ' .. named .. ' ended ' .. outcome, result, progress, payload)
      t[F.STATE] = 'cancelled'
      t[F.FINISHED] = num(now)
      t[F.ENDED] = 'parent/' .. named
      redis.call('HSET', dk.jobs, child, rec_pack(t))
      redis.call('ZADD', dk.cancelled, num(now), child)
    end
    return 'cancelled'
  end
  if #left > 0 then
    redis.call('HSET', dk.deps, child, policy .. '\n' .. table.concat(left, '\n'))
    return 'waiting'
  end
  redis.call('HDEL', dk.deps, child)
  redis.call('ZREM', dk.waiting, child)
  local s = redis.call('HGET', dk.jobs, child)
  local t = s and rec_parse(s)
  if not t or t[F.STATE] ~= 'waiting' then
    return 'gone'
  end
  if tonumber(t[F.RUN_AT]) > now then
    t[F.STATE] = 'scheduled'
    redis.call('ZADD', dk.scheduled, t[F.RUN_AT], child)
  else
    t[F.STATE] = 'ready'
    redis.call('ZADD', dk.ready, ready_score(t[F.PRIO], t[F.SEQ]), child)
  end
  redis.call('HSET', dk.jobs, child, rec_pack(t))
  return 'released'
end

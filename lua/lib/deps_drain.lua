--- @include "lib/deps_settle"
--- @include "lib/deps_state"
-- dk also holds done and dead (the sets of finished jobs) for lib/deps_state.
-- Housekeeping of dependencies (run by reap, so by every worker periodically): settles up to
-- `limit` children of the parents on the todo list (those whose children were more than the
-- ending transition's budget, and cascades of cancels), then checks up to `limit` parents of
-- the watch set (dk.parents, score = last checked) that the transitions did not settle at
-- once (a lease reaped to dead by a claim, a purge): an ended or missing parent is settled
-- like its transition would have. Returns the children settled and the parents checked.
-- Bounded: `limit` todo entries and children, `limit` watched parents, `limit` early records.
local function deps_drain(dk, now, limit)
  local settled = 0
  local steps = 0
  while settled < limit and steps < limit do
    steps = steps + 1
    local e = redis.call('LPOP', dk.todo)
    if not e then
      break
    end
    local outcome, parent = string.match(e, '^(%l+)\n(.+)$')
    if outcome then
      settled = settled + deps_settle(dk, parent, outcome, now, limit - settled)
    end
  end
  local watch = redis.call('ZRANGE', dk.parents, 0, limit - 1)
  for i = 1, #watch do
    local p = watch[i]
    local state = deps_state(dk.jobs, dk.done, dk.dead, dk.cancelled, p)
    if not state then
      settled = settled + deps_settle(dk, p, 'deleted', now, limit)
    elseif state ~= 'live' then
      settled = settled + deps_settle(dk, p, state, now, limit)
    else
      redis.call('ZADD', dk.parents, 'XX', num(now), p)
    end
  end
  -- Releases that came for a child that never appeared (its enqueue died between its two
  -- steps, or it was deleted) are dropped after a day, a few at random per call.
  local early = redis.call('HRANDFIELD', dk.early, limit, 'WITHVALUES')
  if type(early) ~= 'table' then
    early = {}  -- fakeredis answers nil for a missing key (Redis: an empty list)
  end
  for i = 1, #early, 2 do
    local at = tonumber(string.match(early[i + 1], '\n(%d+)$'))
    if not at or at < now - 86400000 then
      redis.call('HDEL', dk.early, early[i])
    end
  end
  return settled, #watch
end

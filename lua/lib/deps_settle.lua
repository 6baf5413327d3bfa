--- @include "lib/deps_apply"
--- @include "lib/wake"
-- Settles up to `most` children of `parent`, which ended with `outcome` (lib/deps_apply):
-- the children are popped from its children set (dk.prefix .. 'c/' .. parent), so each is told
-- at most once. When children are left, the parent goes to the todo list ('<outcome>\n<id>'),
-- which later calls drain (lib/deps_drain); a child cancelled by policy 'fail' goes there too
-- when it has children of its own (the cancel cascades, in bounded steps). The parent leaves
-- the set of parents to watch (dk.parents). Returns the number of children settled.
local function deps_settle(dk, parent, outcome, now, most)
  local ckey = dk.prefix .. 'c/' .. parent
  redis.call('ZREM', dk.parents, parent)
  local kids = {}
  if most > 0 then
    kids = redis.call('SPOP', ckey, most)
  end
  local woke = false
  for i = 1, #kids do
    local r = deps_apply(dk, kids[i], parent, outcome, now)
    if r == 'released' then
      woke = true
    elseif r == 'cancelled' and redis.call('EXISTS', dk.prefix .. 'c/' .. kids[i]) == 1 then
      redis.call('ZREM', dk.parents, kids[i])
      redis.call('RPUSH', dk.todo, 'cancelled\n' .. kids[i])
    end
  end
  if #kids == most and redis.call('EXISTS', ckey) == 1 then
    redis.call('RPUSH', dk.todo, outcome .. '\n' .. parent)
  end
  if woke then
    wake(dk.wake)
  end
  return #kids
end

--- @include "lib/deps_apply"
--- @include "lib/deps_after"
--- @include "lib/wake"
-- Settles up to `most` children of `parent`, which ended with `outcome` (lib/deps_apply):
-- the children of this queue are popped from its children set (dk.prefix .. 'c/' .. parent),
-- so each is told at most once; its children in other queues (x/<parent>, members
-- '<queue>\n<child>') get an entry in the outbox ('<outcome>\n<queue>\n<child>\n<parent>'),
-- which clients deliver to the child's queue (lua/deps_deliver.lua) and then remove. When
-- children are left, the parent goes to the todo list ('<outcome>\n<id>'), which later calls
-- drain (lib/deps_drain). The parent leaves the set of parents to watch (dk.parents). Returns
-- the number of children settled.
local function deps_settle(dk, parent, outcome, now, most)
  redis.call('ZREM', dk.parents, parent)
  local ckey = dk.prefix .. 'c/' .. parent
  local xkey = dk.prefix .. 'x/' .. parent
  local kids = {}
  if most > 0 then
    kids = redis.call('SPOP', ckey, most)
  end
  local woke = false
  for i = 1, #kids do
    if deps_after(dk, kids[i], deps_apply(dk, kids[i], parent, outcome, now)) then
      woke = true
    end
  end
  local far = {}
  if most > #kids then
    far = redis.call('SPOP', xkey, most - #kids)
  end
  for i = 1, #far do
    redis.call('ZADD', dk.outbox, num(now), outcome .. '\n' .. far[i] .. '\n' .. parent)
  end
  if #kids + #far == most and (redis.call('EXISTS', ckey) == 1
      or redis.call('EXISTS', xkey) == 1) then
    redis.call('RPUSH', dk.todo, outcome .. '\n' .. parent)
  end
  if woke then
    wake(dk.wake)
  end
  return #kids + #far
end

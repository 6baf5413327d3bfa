-- What follows a child's settling (lib/deps_apply's answer r): a child cancelled by policy
-- 'fail' that has children of its own (here, c/<id>, or in other queues, x/<id>) goes to the
-- todo list, so that the cancel cascades in bounded steps. Returns true when it was released.
local function deps_after(dk, kid, r)
  if r == 'cancelled' and (redis.call('EXISTS', dk.prefix .. 'c/' .. kid) == 1
      or redis.call('EXISTS', dk.prefix .. 'x/' .. kid) == 1) then
    redis.call('ZREM', dk.parents, kid)
    redis.call('RPUSH', dk.todo, 'cancelled\n' .. kid)
  end
  return r == 'released'
end

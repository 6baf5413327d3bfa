-- The keys of a queue's dependencies (lib/deps_apply), from the scripts' KEYS: the waiting
-- children's lists (deps_prefix .. 'pending', a hash), the todo list of ended parents whose
-- children are not all settled ('todo'), the parents to watch ('parents', a zset), the
-- children sets ('c/<parent>'), the children in other queues ('x/<parent>'), the outbox of
-- releases for other queues ('outbox', a zset) and the releases that came before their child
-- ('early', a hash; lua/deps_deliver.lua), with the job keys the release and the cancel write.
local function deps_keys(prefix, jobs, waiting, ready, scheduled, cancelled, wake_key)
  return {prefix = prefix, deps = prefix .. 'pending', todo = prefix .. 'todo',
    parents = prefix .. 'parents', outbox = prefix .. 'outbox', early = prefix .. 'early',
    jobs = jobs, waiting = waiting, ready = ready,
    scheduled = scheduled, cancelled = cancelled, wake = wake_key}
end

-- Adds to the queue's monotonic counters in its meta hash (the completed, retried and dead
-- counts of the sets are capped by retention, so rates need these). One HINCRBY per nonzero
-- counter; callers have validated the meta hash before their first write.
local function add_totals(meta_key, completed, retried, dead)
  if completed > 0 then
    redis.call('HINCRBY', meta_key, 'completed', completed)
  end
  if retried > 0 then
    redis.call('HINCRBY', meta_key, 'retried', retried)
  end
  if dead > 0 then
    redis.call('HINCRBY', meta_key, 'dead', dead)
  end
end

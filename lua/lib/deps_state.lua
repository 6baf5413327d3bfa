-- The state of a parent for a dependency, without reading its record (a record may hold a
-- large payload; membership checks copy nothing): nil when there is no such job, else
-- 'completed', 'dead' or 'cancelled' from the sets of finished jobs, else 'live'. O(log N).
local function deps_state(jobs_key, done_key, dead_key, cancelled_key, id)
  if redis.call('HEXISTS', jobs_key, id) == 0 then
    return nil
  end
  if redis.call('ZSCORE', done_key, id) then
    return 'completed'
  end
  if redis.call('ZSCORE', dead_key, id) then
    return 'dead'
  end
  if redis.call('ZSCORE', cancelled_key, id) then
    return 'cancelled'
  end
  return 'live'
end

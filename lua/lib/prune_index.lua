-- Drops from an index zset at most `limit` members whose score (their expiry, ms) is before
-- `now`: the worker registry's bounded pruning, shared by heartbeat and list_workers. A limit
-- of 0 reads nothing.
local function prune_index(index, now, limit)
  if limit > 0 then
    local expired = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. now, 'LIMIT', 0, limit)
    for _, gone in ipairs(expired) do
      redis.call('ZREM', index, gone)
    end
  end
end

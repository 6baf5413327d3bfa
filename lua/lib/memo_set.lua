-- Remembers what a claim handed out under the caller's request id for a short while, so that a
-- client that re-sends the same script after a lost reply (redis-py retries on timeouts) gets the
-- same jobs back instead of leasing more. The memo has a TTL: it only shortens the retry path and
-- is never correctness state (without it, unreturned leases expire and are reaped as usual).
-- Job ids never contain control characters, so a newline separates the values.
local function memo_set(memo_key, list, ttl_ms)
  redis.call('SET', memo_key, table.concat(list, '\n'), 'PX', ttl_ms)
end

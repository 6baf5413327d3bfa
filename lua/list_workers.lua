--[[ list_workers: (worker registry) read-only but for pruning expired names
  Lists the live workers (record not expired on the Redis clock) by expiry, from `offset`,
  at most `limit` of them; drops up to `prune` expired names from the index on the way, so
  that the index never holds the workers that died long ago for long.
  KEYS[1] workers       zset   worker names, score = record expiry (ms, Redis clock)
  KEYS[2] worker_prefix prefix records are worker_prefix .. <name> (strings with a TTL)
  ARGV[1] offset        int    live workers skipped (the page's start)
  ARGV[2] limit         int    most workers returned (1..1000)
  ARGV[3] prune         int    most expired names dropped from the index by this call
  ARGV[4] now_ms        int    test clock override ('' = Redis TIME)
  Returns: {status, now_ms, more (1 = names left after these), name, expires_at_ms, record, ...}
  Status: OK, BAD_ARGUMENT
  Cost: O(log N + prune + limit)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/prune_index"

local workers = KEYS[1]
local worker_prefix = KEYS[2]
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local prune = tonumber(ARGV[3])
local now = now_ms(ARGV[4])

if not offset or offset < 0 then
  return {STATUS.BAD_ARGUMENT, 'offset'}
end
if not limit or limit < 1 or limit > 1000 then
  return {STATUS.BAD_ARGUMENT, 'limit'}
end
if not prune or prune < 0 or prune > 1000 then
  return {STATUS.BAD_ARGUMENT, 'prune'}
end

prune_index(workers, now, prune)
local names = redis.call('ZRANGEBYSCORE', workers, now, '+inf', 'WITHSCORES', 'LIMIT', offset,
  limit + 1)
local out = {STATUS.OK, now, 0}
for i = 1, #names, 2 do
  if i > 2 * limit then
    out[3] = 1
    break
  end
  local record = redis.call('GET', worker_prefix .. names[i])
  if record then
    out[#out + 1] = names[i]
    out[#out + 1] = names[i + 1]
    out[#out + 1] = record
  end
end
return out

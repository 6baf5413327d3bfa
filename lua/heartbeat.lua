--[[ heartbeat: (worker registry) -> the worker is listed until ttl_ms from now
  Writes a worker's record with a TTL and indexes its name by that expiry, both on the Redis
  clock, so that a worker that stops beating (kill -9) drops out of the list by itself; drops
  up to `prune` expired names from the index. ttl_ms 0 removes the worker (a clean stop).
  KEYS[1] workers       zset   worker names, score = record expiry (ms, Redis clock)
  KEYS[2] worker_prefix prefix records are worker_prefix .. <name> (strings with a TTL)
  ARGV[1] worker        str    the worker's name
  ARGV[2] record        str    its packed record (opaque here)
  ARGV[3] ttl_ms        int    how long the record lives; 0 removes it
  ARGV[4] prune         int    most expired names dropped from the index by this call
  ARGV[5] now_ms        int    test clock override ('' = Redis TIME)
  Returns: {status, expires_at_ms (0 when removed)}
  Status: OK, BAD_ARGUMENT
  Cost: O(log N + prune)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/prune_index"

local workers = KEYS[1]
local worker_prefix = KEYS[2]
local worker = ARGV[1]
local record = ARGV[2]
local ttl_ms = tonumber(ARGV[3])
local prune = tonumber(ARGV[4])
local now = now_ms(ARGV[5])

if worker == '' then
  return {STATUS.BAD_ARGUMENT, 'worker'}
end
if not ttl_ms or ttl_ms < 0 then
  return {STATUS.BAD_ARGUMENT, 'ttl_ms'}
end
if not prune or prune < 0 or prune > 1000 then
  return {STATUS.BAD_ARGUMENT, 'prune'}
end

prune_index(workers, now, prune)
if ttl_ms == 0 then
  redis.call('ZREM', workers, worker)
  redis.call('DEL', worker_prefix .. worker)
  return {STATUS.OK, 0}
end
local expires = now + ttl_ms
redis.call('SET', worker_prefix .. worker, record, 'PX', ttl_ms)
redis.call('ZADD', workers, expires, worker)
return {STATUS.OK, expires}

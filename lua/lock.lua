--[[ lock: (job lock) -> held
  Takes the advisory lock of a job id for `owner` when nobody holds it (qml's
  try_acquire_job_lock): not re-entrant (the owner asking again is refused too) and it expires
  after ttl_ms on the Redis clock. Independent of the job's state and existence.
  KEYS[1] lock_prefix prefix lock keys are lock_prefix .. <id> (strings with a TTL)
  ARGV[1] id          str    job id
  ARGV[2] owner       str    the would-be holder
  ARGV[3] ttl_ms      int    lock lifetime
  Returns: {status, 1 = acquired | 0 = held by someone}
  Status: OK, BAD_ARGUMENT
  Cost: O(1)
]]
--- @include "lib/status"

local lock_prefix = KEYS[1]
local id = ARGV[1]
local owner = ARGV[2]
local ttl_ms = tonumber(ARGV[3])

if not ttl_ms or ttl_ms < 1 then
  return {STATUS.BAD_ARGUMENT, 'ttl_ms'}
end
if redis.call('SET', lock_prefix .. id, owner, 'NX', 'PX', ttl_ms) then
  return {STATUS.OK, 1}
end
return {STATUS.OK, 0}

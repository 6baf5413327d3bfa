--[[ unlock: (job lock) held -> free
  Releases the advisory lock of a job id, only when `owner` holds it (qml's release_job_lock).
  KEYS[1] lock_prefix prefix lock keys are lock_prefix .. <id>
  ARGV[1] id          str    job id
  ARGV[2] owner       str    the holder
  Returns: {status, 1 = released | 0 = not held by owner (or expired)}
  Status: OK, WRONG_TYPE
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/wrong_type"

local lock_prefix = KEYS[1]
local id = ARGV[1]
local owner = ARGV[2]

local key = lock_prefix .. id
local holder = redis.pcall('GET', key)
if type(holder) == 'table' and holder['err'] then
  return wrong_type(key, holder)
end
if holder == owner then
  redis.call('DEL', key)
  return {STATUS.OK, 1}
end
return {STATUS.OK, 0}

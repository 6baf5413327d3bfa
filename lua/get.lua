--[[ get: read-only
  Reads one job record, refusing a key that holds something other than a hash.
  KEYS[1] job_prefix  prefix job record hashes are job_prefix .. <id>
  ARGV[1] id          str    job id
  Returns: {status, {field, value, ...}} (an empty list when there is no such job)
  Status: OK, WRONG_TYPE
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/wrong_type"

local job_prefix = KEYS[1]
local id = ARGV[1]

local record = redis.pcall('HGETALL', job_prefix .. id)
if record['err'] then
  return wrong_type(job_prefix .. id)
end
return {STATUS.OK, record}

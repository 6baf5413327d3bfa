--[[ get: read-only
  Reads one packed job record, refusing a jobs key that holds something other than a hash.
  KEYS[1] jobs        hash   job id -> packed job record (lib/record)
  ARGV[1] id          str    job id
  Returns: {status, record} (false, a nil reply, when there is no such job)
  Status: OK, WRONG_TYPE
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/wrong_type"

local jobs_key = KEYS[1]
local id = ARGV[1]

local record = redis.pcall('HGET', jobs_key, id)
if type(record) == 'table' then
  return wrong_type(jobs_key)
end
return {STATUS.OK, record}

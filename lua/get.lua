--[[ get: read-only
  Reads one packed job record, refusing a queue written with another schema version (whose
  records this redisq cannot read) and a key that holds another type. A completed record that
  retention trimmed is read from its stored result while that lives (see ack).
  KEYS[1] meta        hash   schema
  KEYS[2] jobs        hash   job id -> packed job record (lib/record)
  KEYS[3] result_prefix prefix stored results are result_prefix .. <id> (strings with a TTL)
  ARGV[1] id          str    job id
  Returns: {status, record} (false, a nil reply, when there is no such job)
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/read_meta"
--- @include "lib/wrong_type"

local meta_key = KEYS[1]
local jobs_key = KEYS[2]
local result_prefix = KEYS[3]
local id = ARGV[1]

local meta, err = read_meta(meta_key)
if not meta then
  return err
end
local record = redis.pcall('HGET', jobs_key, id)
if type(record) == 'table' then
  return wrong_type(jobs_key, record)
end
if not record then
  local result_key = result_prefix .. id
  record = redis.pcall('GET', result_key)
  if type(record) == 'table' then
    return wrong_type(result_key, record)
  end
end
return {STATUS.OK, record}

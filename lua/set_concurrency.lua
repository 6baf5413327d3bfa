--[[ set_concurrency: (queue) -> capped | uncapped
  Sets or clears one of a queue's concurrency limits, for every worker: `conc`, the most jobs of
  the queue leased at once, or `gconc`, the most leased at once per concurrency group
  (lib/groups). Claims enforce both from the leases themselves. Setting the same value again
  changes nothing. A lowered limit holds from the next claim; a raised group limit reaches a
  group at its old limit when one of its leases ends (or a job joins it).
  KEYS[1] meta        hash   schema, conc, gconc
  KEYS[2] wake        zset   signalled, so that waiting workers claim under the new limit
  ARGV[1] lib_version str    redisq version, recorded in meta on the first write
  ARGV[2] field       str    'conc' or 'gconc'
  ARGV[3] limit       int    1 to 1,000,000; '' = no limit
  Returns: {status}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/init_meta"
--- @include "lib/wake"

local meta_key = KEYS[1]
local wake_key = KEYS[2]
local lib_version = ARGV[1]
local field = ARGV[2]
local limit = ARGV[3]

if (field ~= 'conc' and field ~= 'gconc')
    or (limit ~= '' and not string.match(limit, '^[1-9]%d?%d?%d?%d?%d?%d?$')) then
  return {STATUS.BAD_ARGUMENT, 'limit'}
end
local err, is_new = check_queue({meta_key, 'hash'})
if err then
  return err
end
if is_new then
  init_meta(meta_key, lib_version)
end
if limit == '' then
  redis.call('HDEL', meta_key, field)
else
  redis.call('HSET', meta_key, field, limit)
end
wake(wake_key)
return {STATUS.OK}

--[[ set_paused: (queue) -> paused | running
  Pauses or resumes a queue for every worker: while paused, claims lease nothing (they still
  promote due jobs and reap expired leases). Setting the same value again changes nothing.
  KEYS[1] meta        hash   schema, paused
  KEYS[2] wake        zset   signalled on resume, so waiting workers claim again
  ARGV[1] lib_version str    redisq version, recorded in meta on the first write
  ARGV[2] paused      int    1 = pause, 0 = resume
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
local paused = ARGV[2]

if paused ~= '0' and paused ~= '1' then
  return {STATUS.BAD_ARGUMENT, 'paused'}
end
local err, is_new = check_queue({meta_key, 'hash'})
if err then
  return err
end
if is_new then
  init_meta(meta_key, lib_version)
end
redis.call('HSET', meta_key, 'paused', paused)
if paused == '0' then
  wake(wake_key)
end
return {STATUS.OK}

--[[ progress: leased -> leased
  Records the handler's progress on a job whose lease the caller still holds; a stale or expired
  lease changes nothing. Writing the same value again is harmless (a client retry).
  KEYS[1] meta        hash   schema
  KEYS[2] job_prefix  prefix job record hashes are job_prefix .. <id>
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] token       int    the caller's fencing token
  ARGV[4] progress    bytes  msgpack-encoded progress value
  Returns: {status}; refusals: {status, 1, detail}
  Status: OK, NOT_FOUND, LEASE_LOST, LEASE_EXPIRED, WRONG_TYPE, SCHEMA_MISMATCH
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/check_queue"
--- @include "lib/read_job"
--- @include "lib/lease_check"
--- @include "lib/wrong_type"

local meta_key = KEYS[1]
local job_prefix = KEYS[2]
local now_arg = ARGV[1]
local id = ARGV[2]
local token = ARGV[3]
local progress = ARGV[4]

local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash'})
if err then
  return err
end
local key = job_prefix .. id
local f, bad = read_job(key, 'state', 'token', 'ended', 'deadline')
if bad then
  return wrong_type(bad)
end
local refusal = lease_check(f, token, now, 'progress', 1)
if refusal then
  return refusal
end
redis.call('HSET', key, 'progress', progress)
return {STATUS.OK}

--[[ release: leased -> ready
  Gives a lease back without counting the attempt (a worker stopping gracefully): the job returns
  to its place in the ready set. A stale token changes nothing; re-sending a successful release
  with the same token succeeds again.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] leased      zset   job ids, score = lease deadline (ms)
  KEYS[4] job_prefix  prefix job record hashes are job_prefix .. <id>
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] token       int    the caller's fencing token
  Returns: {status, {field, value, ...}}; refusals: {status, 1, detail}
  Status: OK, NOT_FOUND, LEASE_LOST, LEASE_EXPIRED, WRONG_TYPE, SCHEMA_MISMATCH
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/read_job"
--- @include "lib/lease_check"
--- @include "lib/ready_score"
--- @include "lib/wrong_type"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local leased_key = KEYS[3]
local job_prefix = KEYS[4]
local now_arg = ARGV[1]
local id = ARGV[2]
local token = ARGV[3]

local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', leased_key, 'zset'})
if err then
  return err
end
local key = job_prefix .. id
local f, bad = read_job(key, 'state', 'token', 'ended', 'deadline', 'attempts', 'prio', 'seq')
if bad then
  return wrong_type(bad)
end
local refusal = lease_check(f, token, now, 'release', 1)
if refusal == 'again' then
  return {STATUS.OK, redis.call('HGETALL', key)}
elseif refusal then
  return refusal
end
local attempts = tonumber(f[5]) - 1
if attempts < 0 then
  attempts = 0
end
redis.call('HSET', key, 'state', 'ready', 'attempts', num(attempts),
  'ended', 'release/' .. token)
redis.call('ZREM', leased_key, id)
redis.call('ZADD', ready_key, ready_score(f[6], f[7]), id)
return {STATUS.OK, redis.call('HGETALL', key)}

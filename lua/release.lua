--[[ release: leased -> ready
  Gives a lease back without counting the attempt (a worker stopping gracefully): the job returns
  to its place in the ready set. A stale token changes nothing; re-sending a successful release
  with the same token succeeds again.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] leased      zset   job ids, score = lease deadline (ms)
  KEYS[4] jobs        hash   job id -> packed job record (lib/record)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] token       int    the caller's fencing token
  Returns: {status, record}; refusals: {status, 1, detail}
  Status: OK, NOT_FOUND, LEASE_LOST, LEASE_EXPIRED, WRONG_TYPE, SCHEMA_MISMATCH, BAD_RECORD
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/read_job"
--- @include "lib/lease_check"
--- @include "lib/ready_score"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local leased_key = KEYS[3]
local jobs_key = KEYS[4]
local now_arg = ARGV[1]
local id = ARGV[2]
local token = ARGV[3]

local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', leased_key, 'zset'})
if err then
  return err
end
local t, stored, bad = read_job(jobs_key, id)
if bad then
  return bad
end
local refusal = lease_check(t, token, now, 'release', 1)
if refusal == 'again' then
  return {STATUS.OK, stored}
elseif refusal then
  return refusal
end
local attempts = tonumber(t[F.ATTEMPTS]) - 1
if attempts < 0 then
  attempts = 0
end
t[F.STATE] = 'ready'
t[F.ATTEMPTS] = num(attempts)
t[F.ENDED] = 'release/' .. token
local record = rec_pack(t)
redis.call('HSET', jobs_key, id, record)
redis.call('ZREM', leased_key, id)
redis.call('ZADD', ready_key, ready_score(t[F.PRIO], t[F.SEQ]), id)
return {STATUS.OK, record}

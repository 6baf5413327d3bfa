--[[ release: leased -> ready | scheduled
  Gives a lease back without counting the attempt (a worker stopping gracefully, or a handler
  snoozing): the job returns to its place in the ready set, or waits `delay_ms` in the scheduled
  set first. A stale token changes nothing; re-sending a successful release with the same token
  succeeds again.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] leased      zset   job ids, score = lease deadline (ms)
  KEYS[5] jobs        hash   job id -> packed job record (lib/record)
  KEYS[6] wake        zset   signalled when the job is ready or scheduled again
  KEYS[7] gready      zset   grouped ready jobs (lib/groups)
  KEYS[8] gturn       zset   group -> turn, the groups that may lease now
  KEYS[9] gleased     zset   leased grouped jobs, member <group> \0 <id>
  KEYS[10] gjob       hash   job id -> group
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] token       int    the caller's fencing token
  ARGV[4] delay_ms    int    0 = ready now, else scheduled this long
  Returns: {status, record}; refusals: {status, 1, detail}
  Status: OK, NOT_FOUND, LEASE_LOST, LEASE_EXPIRED, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT,
          BAD_RECORD
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
--- @include "lib/requeue"
--- @include "lib/wake"
--- @include "lib/grp_ctx"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local jobs_key = KEYS[5]
local wake_key = KEYS[6]
local gready_key = KEYS[7]
local gturn_key = KEYS[8]
local gleased_key = KEYS[9]
local gjob_key = KEYS[10]
local now_arg = ARGV[1]
local id = ARGV[2]
local token = ARGV[3]
local delay_ms = tonumber(ARGV[4])

if not delay_ms or delay_ms < 0 then
  return {STATUS.BAD_ARGUMENT, 'delay_ms'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset'})
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
t[F.ATTEMPTS] = num(attempts)
t[F.ENDED] = 'release/' .. token
redis.call('ZREM', leased_key, id)
-- A grouped job's slot is free again (lib/groups), before it takes its place in the group.
local g = redis.call('HGET', gjob_key, id)
local gctx
if g then
  gctx = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)
  gctx.unlease(g, id)
end
requeue(t, id, ready_key, scheduled_key, now, delay_ms, nil, gctx, g)
local record = rec_pack(t)
redis.call('HSET', jobs_key, id, record)
wake(wake_key)
return {STATUS.OK, record}

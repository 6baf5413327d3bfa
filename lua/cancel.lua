--[[ cancel: waiting | ready | scheduled | leased -> cancelled
  Cancels a job that has not finished. Cancelling a leased job issues a new token, so the holder's
  later ack, nack, renew or progress is refused (LEASE_LOST), and the queue's cancel stream gets
  an entry (id, the holder's token) that the workers of the queue block on (XREAD), so the
  holder stops its handler at once instead of at its next renewal. The stream is capped at
  `signal_cap` entries and only cancels of leased jobs write it: a queue where nobody cancels
  never has one. A finished job is left as it is (reply 0). The cancelled set is trimmed like
  the done set. A re-sent call (same request id) reports 1 again without changing anything
  (and signals nothing again).
  In a queue with dependencies, a waiting job is cancelled like a ready one (it leaves the
  waiting set and its list), and the job's children are settled as for a cancelled parent in
  the same step (lib/deps_finish, by their policies).
  KEYS[1] meta        hash   schema, token counter
  KEYS[2] ready       zset   job ids
  KEYS[3] scheduled   zset   job ids
  KEYS[4] leased      zset   job ids
  KEYS[5] cancelled   zset   job ids, score = time of cancellation (ms)
  KEYS[6] unique      hash   unique key -> job id
  KEYS[7] jobs        hash   job id -> packed job record (lib/record)
  KEYS[8] cancels     stream cancels of leased jobs: id, token (the lease's), capped
  KEYS[9] gready      zset   grouped ready jobs (lib/groups)
  KEYS[10] gturn      zset   group -> turn, the groups that may lease now
  KEYS[11] gleased    zset   leased grouped jobs, member <group> \0 <id>
  KEYS[12] gjob       hash   job id -> group
  KEYS[13] waiting     zset   job ids waiting for parents
  KEYS[14] deps_prefix prefix dependency keys (lib/deps_keys), used only when meta deps = 1
  KEYS[15] wake       zset   signalled when children were released
  KEYS[16] events     stream the queue's events while they are on (lib/events)
  KEYS[17] wait_prefix prefix result waiters' counters and lists (lib/events)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] request_id  str    the caller's id for this call, recorded on the job
  ARGV[4] keep        int    retention of the cancelled set: count
  ARGV[5] max_age_ms  int    retention of the cancelled set: age (0 = no age limit)
  ARGV[6] batch       int    most records trimmed in this call
  ARGV[7] signal_cap  int    most entries kept in the cancel stream (1 to 10000)
  Returns: {status, 1 = cancelled now | 0 = already finished}
  Status: OK, NOT_FOUND, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O(log N + batch)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/read_job"
--- @include "lib/clear_unique"
--- @include "lib/trim_retention"
--- @include "lib/grp_ctx"
--- @include "lib/deps_keys"
--- @include "lib/deps_finish"
--- @include "lib/events"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local cancelled_key = KEYS[5]
local unique_key = KEYS[6]
local jobs_key = KEYS[7]
local cancels_key = KEYS[8]
local gready_key = KEYS[9]
local gturn_key = KEYS[10]
local gleased_key = KEYS[11]
local gjob_key = KEYS[12]
local waiting_key = KEYS[13]
local deps_prefix = KEYS[14]
local wake_key = KEYS[15]
local events_key = KEYS[16]
local wait_prefix = KEYS[17]
local now_arg = ARGV[1]
local id = ARGV[2]
local request_id = ARGV[3]
local keep = tonumber(ARGV[4])
local max_age_ms = tonumber(ARGV[5])
local batch = tonumber(ARGV[6])
local signal_cap = tonumber(ARGV[7])

if not keep or not max_age_ms or not batch or not signal_cap or signal_cap < 1
  or signal_cap > 10000 then
  return {STATUS.BAD_ARGUMENT, 'cancel'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', cancelled_key, 'zset', unique_key, 'hash', cancels_key, 'stream'})
if err then
  return err
end
local t, _, bad = read_job(jobs_key, id)
if bad then
  return bad
end
if not t then
  return {STATUS.NOT_FOUND, id}
end
local state = t[F.STATE]
if state ~= 'ready' and state ~= 'scheduled' and state ~= 'leased' and state ~= 'waiting' then
  if state == 'cancelled' and t[F.ENDED] == 'cancel/' .. request_id then
    return {STATUS.OK, 1}
  end
  return {STATUS.OK, 0}
end
local n = num(now)
-- A grouped job (lib/groups) leaves its group: its waiting place or its lease slot.
local g = redis.call('HGET', gjob_key, id)
if g then
  local gctx = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)
  gctx.forget(g, gctx.member(g, t[F.PRIO], t[F.SEQ], id), id)
end
if state == 'leased' then
  -- The holder's token goes into the signal, so that a worker stops that run only (not a
  -- later run of a job with the same id).
  local held = t[F.TOKEN]
  t[F.TOKEN] = num(redis.call('HINCRBY', meta_key, 'token', 1))
  redis.call('ZREM', leased_key, id)
  redis.call('XADD', cancels_key, 'MAXLEN', signal_cap, '*', 'id', id, 'token', held)
elseif state == 'ready' then
  redis.call('ZREM', ready_key, id)
elseif state == 'waiting' then
  redis.call('ZREM', waiting_key, id)
  redis.call('HDEL', deps_prefix .. 'pending', id)
else
  redis.call('ZREM', scheduled_key, id)
end
t[F.STATE] = 'cancelled'
t[F.FINISHED] = n
t[F.ENDED] = 'cancel/' .. request_id
local rec = rec_pack(t)
redis.call('HSET', jobs_key, id, rec)
events(meta_key, events_key, wait_prefix, nil, now, 'cancelled', {id, rec})
redis.call('ZADD', cancelled_key, n, id)
clear_unique(unique_key, {t[F.UKEY], id})
local has_deps = redis.call('HGET', meta_key, 'deps') == '1'
trim_retention(cancelled_key, jobs_key, keep, max_age_ms, now, batch, nil, nil,
  has_deps and deps_prefix or nil)
if has_deps then
  deps_finish(deps_keys(deps_prefix, jobs_key, waiting_key, ready_key, scheduled_key,
    cancelled_key, wake_key), {id}, 'cancelled', now)
end
return {STATUS.OK, 1}

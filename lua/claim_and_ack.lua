--[[ claim_and_ack: ready -> completed
  Takes the best ready job and completes it in one step (thingd's claim_and_ack): the attempt is
  counted and a new token issued, as a claim would. Like claim, it first promotes due scheduled
  jobs and reaps expired leases, and a re-sent call with the same request id returns the job the
  first run completed instead of completing another. One call moves at most about 512 KiB of
  job records in its housekeeping (lib/budget). In a queue with dependencies, the job's
  children whose last parent it was are released in the same step (lib/deps_finish).
  KEYS[1] meta        hash   schema, token counter, paused, totals, rate, rate_at (lib/rate:
                             a queue's rate limit or hold lets it take a job only in turn)
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] leased      zset   job ids, score = lease deadline (ms)
  KEYS[5] done        zset   completed job ids, score = completion time (ms)
  KEYS[6] dead        zset   job ids, score = time of death (ms)
  KEYS[7] unique      hash   unique key -> job id
  KEYS[8] jobs        hash   job id -> packed job record (lib/record)
  KEYS[9] memo_prefix prefix claim memos are memo_prefix .. <request id>
  KEYS[10] expiring   zset   '<seq>/<id>' of jobs enqueued with expires_ms, score = expiry (ms)
  KEYS[11] cancelled  zset   job ids, score = time of cancellation (ms)
  KEYS[12] gready     zset   grouped ready jobs (lib/groups)
  KEYS[13] gturn      zset   group -> turn, the groups that may lease now
  KEYS[14] gleased    zset   leased grouped jobs, member <group> \0 <id>
  KEYS[15] gjob       hash   job id -> group
  KEYS[16] waiting    zset   job ids waiting for parents
  KEYS[17] deps_prefix prefix dependency keys (lib/deps_keys), used only when meta deps = 1
  KEYS[18] wake       zset   signalled when children were released
  KEYS[19] events     stream the queue's events while they are on (lib/events)
  KEYS[20] wait_prefix prefix result waiters' counters and lists (lib/events)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] worker      str    name of the worker
  ARGV[3] request_id  str    '' = no memo
  ARGV[4] memo_ms     int    how long the memo is kept
  ARGV[5] batch       int    most jobs promoted, reaped and trimmed in this call (1 to
                             MAX_BATCH of lib/budget, 250)
  ARGV[6] done_keep   int    retention of the done set: count
  ARGV[7] done_age_ms int    retention of the done set: age (0 = no age limit)
  ARGV[8] dead_keep   int    retention of the dead set: count
  ARGV[9] dead_age_ms int    retention of the dead set: age (0 = no age limit)
  ARGV[10] size_hint  int    the largest job record expected, in bytes (sizes the reads)
  ARGV[11] cancelled_keep int retention of the cancelled set: count (expired jobs go there)
  ARGV[12] cancelled_age_ms int retention of the cancelled set: age (0 = no age limit)
  Returns: {status, now_ms} or {status, now_ms, id, record}
  Status: OK, PAUSED, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O(batch log N), at most about 512 KiB of records moved by housekeeping
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/read_job"
--- @include "lib/chunks"
--- @include "lib/clear_unique"
--- @include "lib/trim_retention"
--- @include "lib/budget"
--- @include "lib/housekeep"
--- @include "lib/memo_get"
--- @include "lib/memo_set"
--- @include "lib/add_totals"
--- @include "lib/quarantine"
--- @include "lib/rate"
--- @include "lib/grp_ctx"
--- @include "lib/deps_keys"
--- @include "lib/deps_finish"
--- @include "lib/events"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local done_key = KEYS[5]
local dead_key = KEYS[6]
local unique_key = KEYS[7]
local jobs_key = KEYS[8]
local memo_prefix = KEYS[9]
local expiring_key = KEYS[10]
local cancelled_key = KEYS[11]
local gready_key = KEYS[12]
local gturn_key = KEYS[13]
local gleased_key = KEYS[14]
local gjob_key = KEYS[15]
local waiting_key = KEYS[16]
local deps_prefix = KEYS[17]
local wake_key = KEYS[18]
local events_key = KEYS[19]
local wait_prefix = KEYS[20]
local now_arg = ARGV[1]
local worker = ARGV[2]
local request_id = ARGV[3]
local memo_ms = tonumber(ARGV[4])
local batch = tonumber(ARGV[5])
local done_keep = tonumber(ARGV[6])
local done_age_ms = tonumber(ARGV[7])
local dead_keep = tonumber(ARGV[8])
local dead_age_ms = tonumber(ARGV[9])
local size_hint = tonumber(ARGV[10])
local cancelled_keep = tonumber(ARGV[11])
local cancelled_age_ms = tonumber(ARGV[12])

if not memo_ms or not batch or batch < 1 or batch > MAX_BATCH or not size_hint
    or not done_keep or not done_age_ms or not dead_keep or not dead_age_ms
    or not cancelled_keep or not cancelled_age_ms then
  return {STATUS.BAD_ARGUMENT, 'claim_and_ack'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', done_key, 'zset', dead_key, 'zset', unique_key, 'hash',
  jobs_key, 'hash'})
if err then
  return err
end

if request_id ~= '' then
  local memo = memo_get(memo_prefix .. request_id)
  if memo then
    local t, stored = read_job(jobs_key, memo[1])  -- a bad record: not handed out
    if t and t[F.STATE] == 'completed' and t[F.TOKEN] == memo[2] then
      return {STATUS.OK, now, memo[1], stored}
    end
    return {STATUS.OK, now}
  end
end

local keys = {ready = ready_key, scheduled = scheduled_key, leased = leased_key,
  dead = dead_key, unique = unique_key, jobs = jobs_key,
  meta = meta_key, events = events_key, wait = wait_prefix,
  grp = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)}
local expiry = {expiring = expiring_key, cancelled = cancelled_key, meta = meta_key,
  keep = cancelled_keep, age_ms = cancelled_age_ms}
local promoted, reaped, died, _, expired_left = housekeep(keys, now, batch, dead_keep,
  dead_age_ms, budget(size_hint), expiry)
if not promoted then
  return reaped
end
add_totals(meta_key, 0, reaped, died)
if expired_left then
  return {STATUS.OK, now}  -- expired jobs may still wait among the ready ones
end
local m = redis.call('HMGET', meta_key, 'paused', 'rate', 'rate_at', 'deps', 'events', 'wait')
if m[1] == '1' then
  return {STATUS.PAUSED, now}
end
-- The queue's rate limit or hold (lib/rate): no job while it holds claims back.
local rate_tat, rate_iv
if m[2] or m[3] then
  local allowed
  allowed, rate_tat, rate_iv = rate_allow(m[2], m[3], now)
  if allowed == 0 then
    return {STATUS.OK, now}
  end
end

-- The best ready job with a record; index entries without one are dropped on the way, and
-- records that do not parse are set aside in the dead set (lib/quarantine).
local id = nil
local t = nil
local spoiled = 0
for _ = 1, batch do
  local top = redis.call('ZRANGE', ready_key, 0, 0)
  if #top == 0 then
    break
  end
  local bad
  t, _, bad = read_job(jobs_key, top[1])
  if bad and bad[1] == STATUS.WRONG_TYPE then
    return bad
  end
  redis.call('ZREM', ready_key, top[1])
  if bad then
    spoiled = spoiled + quarantine(dead_key, now, {top[1]})
  elseif t then
    id = top[1]
    break
  end
end
add_totals(meta_key, 0, 0, spoiled)
if rate_tat then
  rate_take(meta_key, m[2], rate_tat, rate_iv, id and 1 or 0, now)
end
if not id then
  return {STATUS.OK, now}
end

local n = num(now)
local token = num(redis.call('HINCRBY', meta_key, 'token', 1))
t[F.STATE] = 'completed'
t[F.TOKEN] = token
t[F.WORKER] = worker
t[F.LEASED_AT] = n
t[F.DEADLINE] = n
t[F.FINISHED] = n
t[F.ATTEMPTS] = num(tonumber(t[F.ATTEMPTS]) + 1)
t[F.ENDED] = 'ack/' .. token
local record = rec_pack(t)
redis.call('HSET', jobs_key, id, record)
events(meta_key, events_key, wait_prefix, {m[5], m[6]}, now, 'completed', {id, record})
redis.call('ZADD', done_key, n, id)
clear_unique(unique_key, {t[F.UKEY], id})
if request_id ~= '' and memo_ms > 0 then
  memo_set(memo_prefix .. request_id, {id, token}, memo_ms)
end
trim_retention(done_key, jobs_key, done_keep, done_age_ms, now, batch, nil, nil,
  m[4] == '1' and deps_prefix or nil)
add_totals(meta_key, 1, 0, 0)
if m[4] == '1' then
  deps_finish(deps_keys(deps_prefix, jobs_key, waiting_key, ready_key, scheduled_key,
    cancelled_key, wake_key), {id}, 'completed', now)
end
return {STATUS.OK, now, id, record}

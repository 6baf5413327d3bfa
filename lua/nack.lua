--[[ nack: leased -> scheduled | ready | dead
  Ends the caller's lease after a failed attempt: the job is retried after `delay_ms` (scheduled,
  or ready at once when the delay is 0), or goes to the dead set when its attempts are used up or
  the caller asks for it. A non-empty error becomes last_error; an empty one keeps the previous.
  A stale token changes nothing; re-sending a successful nack with the same token succeeds again.
  A job that goes dead in a queue with dependencies settles its children in the same step
  (lib/deps_finish, by their policy: cancelled, or released).
  KEYS[1] meta        hash   schema, retried and dead totals
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] leased      zset   job ids, score = lease deadline (ms)
  KEYS[5] dead        zset   job ids, score = time of death (ms)
  KEYS[6] unique      hash   unique key -> job id
  KEYS[7] jobs        hash   job id -> packed job record (lib/record)
  KEYS[8] wake        zset   signalled when the job is ready or scheduled again
  KEYS[9] gready      zset   grouped ready jobs (lib/groups)
  KEYS[10] gturn      zset   group -> turn, the groups that may lease now
  KEYS[11] gleased    zset   leased grouped jobs, member <group> \0 <id>
  KEYS[12] gjob       hash   job id -> group
  KEYS[13] waiting     zset   job ids waiting for parents
  KEYS[14] cancelled  zset   job ids; children cancelled by policy 'fail'
  KEYS[15] deps_prefix prefix dependency keys (lib/deps_keys), used only when meta deps = 1
  KEYS[16] events     stream the queue's events while they are on (lib/events)
  KEYS[17] wait_prefix prefix result waiters' counters and lists (lib/events)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] token       int    the caller's fencing token
  ARGV[4] error       str    error text ('' keeps the previous last_error), at most
                             CAPS.ERROR_BYTES (lib/caps)
  ARGV[5] delay_ms    int    retry delay
  ARGV[6] dead        int    1 = dead-letter now, whatever the attempts
  ARGV[7] dead_keep   int    retention of the dead set: count
  ARGV[8] dead_age_ms int    retention of the dead set: age (0 = no age limit)
  ARGV[9] batch       int    most records trimmed in this call
  Returns: {status, record}; refusals: {status, 1, detail}
  Status: OK, NOT_FOUND, LEASE_LOST, LEASE_EXPIRED, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT,
          BAD_RECORD
  Cost: O(log N + batch)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/caps"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/rec_blobs"
--- @include "lib/read_job"
--- @include "lib/lease_check"
--- @include "lib/requeue"
--- @include "lib/clear_unique"
--- @include "lib/trim_retention"
--- @include "lib/wake"
--- @include "lib/add_totals"
--- @include "lib/grp_ctx"
--- @include "lib/deps_keys"
--- @include "lib/deps_finish"
--- @include "lib/events"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local dead_key = KEYS[5]
local unique_key = KEYS[6]
local jobs_key = KEYS[7]
local wake_key = KEYS[8]
local gready_key = KEYS[9]
local gturn_key = KEYS[10]
local gleased_key = KEYS[11]
local gjob_key = KEYS[12]
local waiting_key = KEYS[13]
local cancelled_key = KEYS[14]
local deps_prefix = KEYS[15]
local events_key = KEYS[16]
local wait_prefix = KEYS[17]
local now_arg = ARGV[1]
local id = ARGV[2]
local token = ARGV[3]
local error_text = ARGV[4]
local delay_ms = tonumber(ARGV[5])
local to_dead = ARGV[6] == '1'
local dead_keep = tonumber(ARGV[7])
local dead_age_ms = tonumber(ARGV[8])
local batch = tonumber(ARGV[9])

if not delay_ms or delay_ms < 0 or not dead_keep or not dead_age_ms or not batch
    or #error_text > CAPS.ERROR_BYTES then
  return {STATUS.BAD_ARGUMENT, 'nack'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', dead_key, 'zset', unique_key, 'hash'})
if err then
  return err
end
local t, stored, bad = read_job(jobs_key, id)
if bad then
  return bad
end
local refusal = lease_check(t, token, now, 'nack', 1)
if refusal == 'again' then
  return {STATUS.OK, stored}
elseif refusal then
  return refusal
end

local n = num(now)
if error_text ~= '' then
  local _, result, progress, payload = rec_blobs(t)
  rec_set_blobs(t, error_text, result, progress, payload)
end
t[F.ENDED] = 'nack/' .. token
redis.call('ZREM', leased_key, id)
-- A grouped job's slot is free again (lib/groups), before it takes its place in the group.
local g = redis.call('HGET', gjob_key, id)
local gctx
if g then
  gctx = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)
  gctx.unlease(g, id)
end
if to_dead or tonumber(t[F.ATTEMPTS]) >= tonumber(t[F.MAX]) then
  t[F.STATE] = 'dead'
  t[F.FINISHED] = n
  local record = rec_pack(t)
  redis.call('HSET', jobs_key, id, record)
  events(meta_key, events_key, wait_prefix, nil, now, 'dead', {id, record})
  redis.call('ZADD', dead_key, n, id)
  clear_unique(unique_key, {t[F.UKEY], id})
  local has_deps = redis.call('HGET', meta_key, 'deps') == '1'
  trim_retention(dead_key, jobs_key, dead_keep, dead_age_ms, now, batch, nil, gjob_key,
    has_deps and deps_prefix or nil)
  add_totals(meta_key, 0, 0, 1)
  -- Its lease's place is free: a worker may wait on it under a group limit or the queue's cap
  -- (a queue with neither wakes nobody for a dead letter).
  if g or redis.call('HGET', meta_key, 'conc') then
    wake(wake_key)
  end
  if has_deps then
    deps_finish(deps_keys(deps_prefix, jobs_key, waiting_key, ready_key, scheduled_key,
      cancelled_key, wake_key), {id}, 'dead', now)
  end
  return {STATUS.OK, record}
end
requeue(t, id, ready_key, scheduled_key, now, delay_ms, n, gctx, g)
local record = rec_pack(t)
redis.call('HSET', jobs_key, id, record)
events(meta_key, events_key, wait_prefix, nil, now, 'retried', {id, record})
add_totals(meta_key, 0, 1, 0)
wake(wake_key)
return {STATUS.OK, record}

--[[ reap: leased -> ready | dead, scheduled -> ready
  The lease reaper, on demand: returns up to `limit` expired leases of this queue to the ready set
  (or to the dead set when their attempts are used up), cancels up to `limit` jobs whose expiry
  passed before they started (lib/expire_due), and promotes up to `limit` due scheduled jobs,
  within the byte budget of one call (lib/budget). Claims do the same on every call;
  workers also run this periodically. Safe to repeat. The client loops over calls while the
  reply says that work was left and its own limit allows. In a queue with dependencies it also
  settles up to `limit` children of parents whose transition left them (lib/deps_drain): the
  rest of a large fan-out, cancels that cascade, and parents reaped to dead by a claim.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] leased      zset   job ids, score = lease deadline (ms)
  KEYS[5] dead        zset   job ids, score = time of death (ms)
  KEYS[6] unique      hash   unique key -> job id
  KEYS[7] jobs        hash   job id -> packed job record (lib/record)
  KEYS[8] wake        zset   signalled when jobs became ready
  KEYS[9] expiring    zset   '<seq>/<id>' of jobs enqueued with expires_ms, score = expiry (ms)
  KEYS[10] cancelled  zset   job ids, score = time of cancellation (ms)
  KEYS[11] gready     zset   grouped ready jobs (lib/groups)
  KEYS[12] gturn      zset   group -> turn, the groups that may lease now
  KEYS[13] gleased    zset   leased grouped jobs, member <group> \0 <id>
  KEYS[14] gjob       hash   job id -> group
  KEYS[15] waiting    zset   job ids waiting for parents
  KEYS[16] deps_prefix prefix dependency keys (lib/deps_keys), used only when meta deps = 1
  KEYS[17] done       zset   completed job ids (a watched parent's state, lib/deps_state)
  KEYS[18] events     stream the queue's events while they are on (lib/events)
  KEYS[19] wait_prefix prefix result waiters' counters and lists (lib/events)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] limit       int    most leases reaped, and most scheduled jobs promoted (1 to
                             MAX_BATCH of lib/budget, 250)
  ARGV[3] dead_keep   int    retention of the dead set: count
  ARGV[4] dead_age_ms int    retention of the dead set: age (0 = no age limit)
  ARGV[5] size_hint   int    the largest job record expected, in bytes (sizes the reads)
  ARGV[6] cancelled_keep int  retention of the cancelled set: count (expired jobs go there)
  ARGV[7] cancelled_age_ms int retention of the cancelled set: age (0 = no age limit)
  Returns: {status, reaped to ready, dead-lettered, promoted, more[, outbox]}; more = 1 when
           expired leases or due jobs may be left (the limit or the byte budget was reached),
           else 0; outbox, only in a queue with dependencies = releases waiting to be
           delivered to other queues (the client delivers them, lua/deps_deliver.lua)
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(limit log N), at most about 512 KiB of records moved
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/check_queue"
--- @include "lib/budget"
--- @include "lib/housekeep"
--- @include "lib/wake"
--- @include "lib/add_totals"
--- @include "lib/grp_ctx"
--- @include "lib/deps_keys"
--- @include "lib/deps_drain"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local dead_key = KEYS[5]
local unique_key = KEYS[6]
local jobs_key = KEYS[7]
local wake_key = KEYS[8]
local expiring_key = KEYS[9]
local cancelled_key = KEYS[10]
local gready_key = KEYS[11]
local gturn_key = KEYS[12]
local gleased_key = KEYS[13]
local gjob_key = KEYS[14]
local waiting_key = KEYS[15]
local deps_prefix = KEYS[16]
local done_key = KEYS[17]
local events_key = KEYS[18]
local wait_prefix = KEYS[19]
local now_arg = ARGV[1]
local limit = tonumber(ARGV[2])
local dead_keep = tonumber(ARGV[3])
local dead_age_ms = tonumber(ARGV[4])
local size_hint = tonumber(ARGV[5])
local cancelled_keep = tonumber(ARGV[6])
local cancelled_age_ms = tonumber(ARGV[7])

if not limit or limit < 1 or limit > MAX_BATCH then
  return {STATUS.BAD_ARGUMENT, 'limit', limit or -1}
end
if not dead_keep or not dead_age_ms or not size_hint or not cancelled_keep
    or not cancelled_age_ms then
  return {STATUS.BAD_ARGUMENT, 'reap'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset',
  leased_key, 'zset', dead_key, 'zset', unique_key, 'hash'})
if err then
  return err
end
local keys = {ready = ready_key, scheduled = scheduled_key, leased = leased_key,
  dead = dead_key, unique = unique_key, jobs = jobs_key,
  meta = meta_key, events = events_key, wait = wait_prefix,
  grp = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)}
local expiry = {expiring = expiring_key, cancelled = cancelled_key, meta = meta_key,
  keep = cancelled_keep, age_ms = cancelled_age_ms}
local promoted, reaped, died, left = housekeep(keys, now, limit, dead_keep, dead_age_ms,
  budget(size_hint), expiry)
if not promoted then
  return reaped
end
add_totals(meta_key, 0, reaped, died)
if reaped > 0 or promoted > 0 or died > 0 then
  wake(wake_key)
end
if redis.call('HGET', meta_key, 'deps') == '1' then
  local dk = deps_keys(deps_prefix, jobs_key, waiting_key, ready_key, scheduled_key,
    cancelled_key, wake_key)
  dk.done, dk.dead = done_key, dead_key
  deps_drain(dk, now, limit)
  return {STATUS.OK, reaped, died, promoted, left and 1 or 0, redis.call('ZCARD', dk.outbox)}
end
return {STATUS.OK, reaped, died, promoted, left and 1 or 0}

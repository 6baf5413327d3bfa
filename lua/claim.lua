--[[ claim: ready -> leased
  Leases the best ready jobs (highest priority first, FIFO within a priority) to one worker, each
  with a new fencing token from the queue's counter and a deadline on the Redis clock. First it
  promotes due scheduled jobs and reaps expired leases of this queue, in bounded batches. One
  call moves at most about 512 KiB of job records (lib/budget; at least one job); the reply says
  when it left ready jobs behind, so the client claims again for the rest of its count.
  A re-sent call with the same request id returns the jobs the first run leased, if those
  leases still stand (same token, deadline not passed). When ready jobs remain, the wake set is
  signalled so that another waiting worker takes them; when the claim comes up short, the reply
  says how soon the earliest scheduled job is due, or 0 when housekeeping left due jobs or
  expired leases behind (claim again at once). A queue with a rate limit (or a hold) leases
  only what its bucket allows (lib/rate); the jobs held back stay ready, and next_in_ms then
  says when the next may start. A queue with a concurrency cap (meta conc) leases no more than
  the cap minus its leases standing; a queue with grouped jobs (lib/groups) serves its groups,
  and its ungrouped jobs as one more group, round-robin, each job from its group's head
  (O(log N) per job), at most the per-group limit (meta gconc) leased per group. Jobs held back
  by either stay where they wait; the reply then says more = 3, and the end of a lease wakes a
  waiting worker (lib/wake).
  KEYS[1] meta        hash   schema, token counter, paused, retried and dead totals, rate,
                             rate_at (lib/rate), conc, gconc, groups, grate (lib/groups)
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] leased      zset   job ids, score = lease deadline (ms)
  KEYS[5] dead        zset   job ids, score = time of death (ms)
  KEYS[6] unique      hash   unique key -> job id
  KEYS[7] jobs        hash   job id -> packed job record (lib/record)
  KEYS[8] memo_prefix prefix claim memos are memo_prefix .. <request id>
  KEYS[9] wake        zset   signalled when ready jobs remain (wakes the next waiting worker)
  KEYS[10] expiring   zset   '<seq>/<id>' of jobs enqueued with expires_ms, score = expiry (ms)
  KEYS[11] cancelled  zset   job ids, score = time of cancellation (ms)
  KEYS[12] gready     zset   grouped ready jobs (lib/groups)
  KEYS[13] gturn      zset   group -> turn, the groups that may lease now
  KEYS[14] gleased    zset   leased grouped jobs, member <group> \0 <id>
  KEYS[15] gjob       hash   job id -> group
  KEYS[16] grate      hash   group -> rate limit, <group> \0 'at' -> its bucket (lib/rate)
  KEYS[17] gwait      zset   group -> when its next token is due (ms): out of the rotation
  KEYS[18] events     stream the queue's events while they are on (lib/events)
  KEYS[19] wait_prefix prefix result waiters' counters and lists (lib/events)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] worker      str    name of the claiming worker
  ARGV[3] count       int    most jobs to lease
  ARGV[4] lease_ms    int    lease length for jobs that carry no lease_ms of their own
  ARGV[5] request_id  str    '' = no memo
  ARGV[6] memo_ms     int    how long the memo is kept
  ARGV[7] batch       int    most scheduled jobs promoted, and most leases reaped, in this call
                             (1 to MAX_BATCH of lib/budget, 250)
  ARGV[8] dead_keep   int    retention of the dead set: count
  ARGV[9] dead_age_ms int    retention of the dead set: age (0 = no age limit)
  ARGV[10] size_hint  int    the largest job record expected, in bytes (sizes the reads)
  ARGV[11] cancelled_keep int retention of the cancelled set: count (expired jobs go there)
  ARGV[12] cancelled_age_ms int retention of the cancelled set: age (0 = no age limit)
  Returns: {status, now_ms, next_in_ms, more, id, record, id, record, ...}; next_in_ms = when
           fewer than count jobs were leased, ms until the earliest scheduled job is due, 0 when
           due jobs or expired leases were left behind, -1 when none; or, when the rate limit
           held ready jobs back, ms until the next may start; else -1. more = 1 when
           ready jobs were left that this call could have leased (its byte budget ran out, or
           a candidate was set aside), 2 when the rate limit held ready jobs back (next_in_ms
           says when the next may start; also when a group's own rate limit holds it out of
           the rotation: gwait), 3 when the concurrency cap or group limits held jobs back
           and nothing else is claimable (a lease's end wakes a worker), else 0
  A candidate whose record does not parse goes to the dead set as it is (lib/quarantine).
  Jobs whose expiry passed before they started are cancelled first (lib/expire_due); while
  such jobs are left beyond the batch, the call leases nothing (next_in_ms 0, more = 1: the
  client claims again, and each call sweeps another batch).
  Status: OK, PAUSED, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O((batch + count) log N), at most about 512 KiB of records moved (or one record)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/read_meta"
--- @include "lib/record"
--- @include "lib/claim_head"
--- @include "lib/read_jobs"
--- @include "lib/read_spend"
--- @include "lib/write_jobs"
--- @include "lib/chunks"
--- @include "lib/housekeep"
--- @include "lib/memo_get"
--- @include "lib/memo_set"
--- @include "lib/wrong_type"
--- @include "lib/wake"
--- @include "lib/add_totals"
--- @include "lib/quarantine"
--- @include "lib/key_types"
--- @include "lib/budget"
--- @include "lib/rate"
--- @include "lib/grp_ctx"
--- @include "lib/events"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local leased_key = KEYS[4]
local dead_key = KEYS[5]
local unique_key = KEYS[6]
local jobs_key = KEYS[7]
local memo_prefix = KEYS[8]
local wake_key = KEYS[9]
local expiring_key = KEYS[10]
local cancelled_key = KEYS[11]
local gready_key = KEYS[12]
local gturn_key = KEYS[13]
local gleased_key = KEYS[14]
local gjob_key = KEYS[15]
local grate_key = KEYS[16]
local gwait_key = KEYS[17]
local events_key = KEYS[18]
local wait_prefix = KEYS[19]
local now_arg = ARGV[1]
local worker = ARGV[2]
local count = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local request_id = ARGV[5]
local memo_ms = tonumber(ARGV[6])
local batch = tonumber(ARGV[7])
local dead_keep = tonumber(ARGV[8])
local dead_age_ms = tonumber(ARGV[9])
local size_hint = tonumber(ARGV[10])
local cancelled_keep = tonumber(ARGV[11])
local cancelled_age_ms = tonumber(ARGV[12])

if not count or count < 1 or not lease_ms or lease_ms < 1 or not memo_ms or not batch
    or batch < 1 or batch > MAX_BATCH or not dead_keep or not dead_age_ms or not size_hint
    or not cancelled_keep or not cancelled_age_ms then
  return {STATUS.BAD_ARGUMENT, 'claim'}
end
local now = now_ms(now_arg)
-- Keys are type-checked by their first access: reads with pcall here and in the helpers, and
-- an explicit check before a helper's first write to a key it has not read.
local meta, err = read_meta(meta_key, 'paused', 'token', 'rate', 'rate_at', 'conc', 'groups',
  'grate', 'events')
if not meta then
  return err
end

-- A retried call: hand back what the first run leased, if those leases still stand: same
-- token, and a deadline still ahead (a claim re-sent behind a blocking wait may come seconds
-- later; a lease that has ended must not reach a handler).
if request_id ~= '' then
  local memo = memo_get(memo_prefix .. request_id)
  if memo then
    local out = {STATUS.OK, now, -1, 0}
    local ids = {}
    for i = 1, #memo, 2 do
      ids[#ids + 1] = memo[i]
    end
    local recs
    recs, err = read_jobs(jobs_key, ids)
    if not recs then
      return err
    end
    for i = 1, #ids do
      local t = recs[i] and rec_parse(recs[i])  -- a bad record: not handed out
      if t and t[F.STATE] == 'leased' and t[F.TOKEN] == memo[2 * i]
          and (tonumber(t[F.DEADLINE]) or 0) > now then
        out[#out + 1] = ids[i]
        out[#out + 1] = recs[i]
      end
    end
    return out
  end
end

-- Housekeeping of this queue, bounded by `batch`.
local keys = {ready = ready_key, scheduled = scheduled_key, leased = leased_key,
  dead = dead_key, unique = unique_key, jobs = jobs_key,
  meta = meta_key, events = events_key, wait = wait_prefix}
local gctx
if meta[7] then
  local bad = key_types({gready_key, 'zset', gturn_key, 'zset', gleased_key, 'zset', gjob_key,
    'hash', grate_key, 'hash', gwait_key, 'zset'})
  if bad then
    return wrong_type(bad)
  end
  gctx = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)
  keys.grp = gctx
end
local spend = budget(size_hint)
local expiry = {expiring = expiring_key, cancelled = cancelled_key, meta = meta_key,
  keep = cancelled_keep, age_ms = cancelled_age_ms}
local promoted, reaped, died, left, expired_left = housekeep(keys, now, batch, dead_keep,
  dead_age_ms, spend, expiry)
if not promoted then
  return reaped
end
add_totals(meta_key, 0, reaped, died)
if expired_left then
  -- Expired jobs may still wait among the ready ones: lease none of them now.
  return {STATUS.OK, now, 0, 1}
end

if meta[2] == '1' then
  return {STATUS.PAUSED, now}
end

-- How soon the earliest scheduled job is due, for a claim that comes up short: the worker
-- then waits that long at most; 0 (claim again now) when housekeeping left work behind.
local function next_in()
  if left then
    return 0
  end
  local first = redis.call('ZRANGE', scheduled_key, 0, 0, 'WITHSCORES')
  if #first == 0 then
    return -1
  end
  return math.max(0, tonumber(first[2]) - now)
end

-- The queue's rate limit or hold (lib/rate), read with the meta fields above: a queue with
-- neither pays nothing more. The limit caps how many jobs this call leases; the jobs it holds
-- back stay ready, and the reply's next_in_ms says when the next one may start (the worker
-- waits until then, nobody is woken for them).
local want = count
local rate_tat, rate_iv
local rate_cut = false
if meta[4] or meta[5] then
  local allowed, wait_ms
  allowed, rate_tat, rate_iv, wait_ms = rate_allow(meta[4], meta[5], now)
  if allowed == 0 then
    local queued = redis.pcall('ZCARD', ready_key)
    if type(queued) == 'table' then
      return wrong_type(ready_key, queued)
    end
    if gctx then
      queued = queued + redis.call('ZCARD', gready_key)
    end
    if queued > 0 then
      return {STATUS.OK, now, wait_ms, 2}
    end
    local due = next_in()
    return {STATUS.OK, now, due < 0 and -1 or math.max(due, wait_ms), 0}
  end
  if allowed < count then
    count, rate_cut = allowed, true
  end
end

-- The queue's concurrency cap (meta conc): its leases standing are the leased set itself, so
-- a lease that ends (ack, nack, release, cancel, reap) frees its place at once.
local capped = false
if meta[6] then
  local room = (tonumber(meta[6]) or 0) - redis.call('ZCARD', leased_key)
  if room <= 0 then
    return {STATUS.OK, now, next_in(), 3}
  end
  if room < count then
    count, capped = room, true
  end
end

local ids, recs, more, cut
local spoiled = {}
-- Groups whose rate limit (grate) held them out of the rotation take turns again once their
-- next token is due.
local rated = gctx and meta[8]
if rated then
  local due = redis.call('ZRANGEBYSCORE', gwait_key, '-inf', now, 'LIMIT', 0, batch)
  for i = 1, #due do
    redis.call('ZREM', gwait_key, due[i])
    gctx.recheck(due[i])
  end
end

-- The reply of a claim that leased nothing: when the earliest scheduled job is due, or the
-- next token of a group's rate limit (more = 2), or more = 3 when group limits hold jobs.
local function idle()
  local due = next_in()
  if rated then
    local first = redis.call('ZRANGE', gwait_key, 0, 0, 'WITHSCORES')
    if #first > 0 then
      local token_in = math.max(0, tonumber(first[2]) - now)
      return {STATUS.OK, now, due >= 0 and math.min(due, token_in) or token_in, 2}
    end
  end
  local waiting = gctx and redis.call('ZCARD', gready_key) > 0
  return {STATUS.OK, now, due, waiting and 3 or 0}
end

local grouped = gctx and redis.call('ZCARD', gturn_key) > 0
if grouped then
  -- Groups take turns (lib/groups), the ungrouped jobs as group ''. Each job: the group with
  -- the lowest turn, its head, then the group's next turn (or none: no job left, or at its
  -- limit). Each candidate's record is read and checked here; a member whose job is not
  -- ready any more is dropped.
  if redis.call('ZCARD', ready_key) > 0 and not redis.call('ZSCORE', gturn_key, '') then
    redis.call('ZADD', gturn_key, gctx.next_turn(), '')
  end
  if key_types({dead_key, 'zset'}) then
    return wrong_type(dead_key)
  end
  ids, recs = {}, {}
  local steps = 0
  while #ids + #spoiled < count and spend.left > 0 and steps < count + batch do
    steps = steps + 1
    local g = redis.call('ZRANGE', gturn_key, 0, 0)[1]
    if not g then
      break
    end
    local id, member, held, spec, tat, iv
    if g == '' then
      id = redis.call('ZRANGE', ready_key, 0, 0)[1]
    else
      held = gctx.count(g)
      if held < gctx.limit() then  -- (the limit may have been lowered since its turn)
        local ok = 1
        if rated then
          -- The group's own rate limit (its jobs' rate key): without a token now, it leaves
          -- the rotation until its next one is due.
          local r = redis.call('HMGET', grate_key, g, g .. '\0at')
          if r[1] then
            local wait_ms
            spec = r[1]
            ok, tat, iv, wait_ms = rate_allow(spec, r[2], now)
            if ok == 0 then
              redis.call('ZADD', gwait_key, now + wait_ms, g)
            end
          end
        end
        if ok > 0 then
          member = gctx.head(g)
          id = member and string.sub(member, #g + 18)
        end
      end
    end
    if not id then
      redis.call('ZREM', gturn_key, g)
    else
      if g == '' then
        redis.call('ZREM', ready_key, id)
      else
        redis.call('ZREM', gready_key, member)
      end
      local s = redis.call('HGET', jobs_key, id)
      if s and not string.match(s, CLAIM_HEAD) then
        spoiled[#spoiled + 1] = id
      elseif s and string.sub(s, 1, 9) == 'j3\nready\n' then
        ids[#ids + 1] = id
        recs[#ids] = s
        spend.left = spend.left - #s
        if g ~= '' then
          redis.call('ZADD', gleased_key, 0, g .. '\0' .. id)
          held = held + 1
          if spec then  -- one token taken; none left now: wait out of the rotation
            tat = tat + iv
            redis.call('HSET', grate_key, g .. '\0at', string.format('%d', tat))
            local ok, _, _, wait_ms = rate_allow(spec, tat, now)
            if ok == 0 then
              redis.call('ZADD', gwait_key, now + wait_ms, g)
              held = math.huge
            end
          end
        end
      end
      local again = g == '' and redis.call('ZCARD', ready_key) > 0
      if g ~= '' then
        again = held < gctx.limit() and gctx.head(g)
      end
      if again then
        redis.call('ZADD', gturn_key, gctx.next_turn(), g)
      else
        redis.call('ZREM', gturn_key, g)
      end
    end
  end
  if #ids == 0 and #spoiled == 0 then
    if redis.call('ZCARD', gturn_key) > 0 then
      return {STATUS.OK, now, 0, 1}  -- (stale members used up the steps: claim again)
    end
    return idle()
  end
  more = redis.call('ZCARD', gturn_key) > 0
  cut = more and spend.left <= 0
else
  -- Read and validate the candidates (HMGETs of budget.step ids), then lease them (one
  -- HSET). One id more than asked tells whether ready jobs remain for another worker.
  ids = redis.pcall('ZRANGE', ready_key, 0, count)
  if ids['err'] then
    return wrong_type(ready_key, ids)
  end
  if #ids == 0 then
    return idle()
  end
  more = #ids > count
  if more then
    ids[#ids] = nil
  end
  -- Within the byte budget left by housekeeping (at least one candidate): the rest stays
  -- ready.
  recs, err = read_spend(jobs_key, ids, spend, true)
  if not recs then
    return err
  end
  cut = #recs < #ids
  if cut then
    more = true
    for i = #ids, #recs + 1, -1 do
      ids[i] = nil
    end
  end
end
-- One pass over the candidates: check each head and build its leased record (nothing is
-- written until every candidate was checked; one whose head does not parse is set aside).
-- Per job only what must differ is formatted: the token, and attempts + 1 (small counts from
-- a table); deadlines once per distinct lease length. '%d' formats integers exactly and about
-- twice as fast as num's '%.0f'.
local match, fmt, sub = string.match, string.format, string.sub
local NEXT = {['0'] = '1', ['1'] = '2', ['2'] = '3', ['3'] = '4', ['4'] = '5', ['5'] = '6',
  ['6'] = '7', ['7'] = '8', ['8'] = '9'}
local token = tonumber(meta[3]) or 0
local n = num(now)
local deadlines = {}
local leased_pairs = {}
local writes = {}
local memo = {}
local out = {STATUS.OK, now, -1, 0}
local k = 0
for i = 1, #ids do
  local s = recs[i]
  if s then
    local attempts, fin, lease = match(s, CLAIM_HEAD)
    if not attempts then
      spoiled[#spoiled + 1] = ids[i]  -- set aside below (lib/quarantine)
    else
      local deadline = deadlines[lease]
      if not deadline then
        deadline = fmt('%d', now + (tonumber(lease) or lease_ms))
        deadlines[lease] = deadline
      end
      k = k + 2
      local id = ids[i]
      local tok = fmt('%d', token + k / 2)
      -- state leased; attempts + 1; token, worker, leased_at and deadline new; the rest as
      -- stored.
      local rec = 'j3\nleased\n' .. (NEXT[attempts] or fmt('%d', attempts + 1)) .. '\n' .. tok
        .. '\n' .. worker .. '\n' .. n .. '\n' .. deadline .. '\n' .. sub(s, fin)
      writes[k - 1] = id
      writes[k] = rec
      leased_pairs[k - 1] = deadline
      leased_pairs[k] = id
      memo[k - 1] = id
      memo[k] = tok
      out[k + 3] = id
      out[k + 4] = rec
    end
  end
end
if #spoiled > 0 and key_types({dead_key, 'zset'}) then
  return wrong_type(dead_key)
end
local leased = k / 2
if not grouped then
  redis.call('ZREMRANGEBYRANK', ready_key, 0, #ids - 1)
end
if #spoiled > 0 then
  add_totals(meta_key, 0, 0, quarantine(dead_key, now, spoiled))
end
-- Ready jobs left that only the rate limit holds back: no wake, no claim again at once.
local held = more and rate_cut and not capped and not cut and #spoiled == 0
local rate_wait = 0
if rate_tat then
  rate_wait = rate_take(meta_key, meta[4], rate_tat, rate_iv, leased, now)
end
if more and not held and not capped then
  wake(wake_key)
end
if leased < want then
  out[3] = held and rate_wait or next_in()
  -- Short with ready jobs left: the budget cut the call, or candidates without a (parsing)
  -- record made room. The client claims again for the rest. Or the limit held them back, or
  -- the concurrency cap did.
  if held then
    out[4] = 2
  elseif capped and not cut and #spoiled == 0 then
    out[4] = 3
  elseif more then
    out[4] = 1
  end
  -- Groups waiting for their rate limit's next token: the worker claims again then.
  if rated and out[4] == 0 then
    local first = redis.call('ZRANGE', gwait_key, 0, 0, 'WITHSCORES')
    if #first > 0 then
      local token_in = math.max(0, tonumber(first[2]) - now)
      out[3] = out[3] >= 0 and math.min(out[3], token_in) or token_in
      out[4] = 2
    end
  end
end
if leased == 0 then
  return out
end
redis.call('HINCRBY', meta_key, 'token', leased)
write_jobs(jobs_key, writes)
events(meta_key, events_key, wait_prefix, {meta[9], false}, now, 'started', writes)
chunks({'ZADD', leased_key}, leased_pairs)
if request_id ~= '' and memo_ms > 0 then
  memo_set(memo_prefix .. request_id, memo, memo_ms)
end
return out

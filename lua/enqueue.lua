--[[ enqueue: (new) -> ready | scheduled
  Creates each job at most once: an id that already exists, or a unique key held by a live job,
  returns the stored job unchanged, so a re-sent call (client retry) never creates a second job.
  All or nothing: every job and key is validated before the first write. The hot path reads
  instead of checking key types: meta, unique and jobs are read with pcall, and the first write
  (the ZADD) is itself the type check of its set. Bounded (lib/caps): at most CAPS.BATCH jobs and
  CAPS.ARG_BYTES of payloads per call (beyond the first job), and when the stored records of ids
  or unique keys already taken pass CAPS.READ_BYTES, only the jobs before that one are handled:
  the reply then holds fewer entries, and the client sends the rest again.
  KEYS[1] meta        hash   schema, lib_version, seq (enqueue counter), enqueued, paused,
                             groups ('1' once a job with a group came, lib/groups)
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] unique      hash   unique key -> job id, while the job is live
  KEYS[5] jobs        hash   job id -> packed job record (lib/record)
  KEYS[6] wake        zset   one member; signalled for a waiting worker when jobs arrive
  KEYS[7] expiring    zset   '<seq>/<id>' of jobs enqueued with expires_ms, score = expiry (ms)
  KEYS[8] window_prefix prefix throttle windows are window_prefix .. <unique key> (strings
                             '<end ms>/<id>' of the job that opened the window; the end decides
                             on the Redis clock, a TTL of throttle_ms frees the memory)
  KEYS[9] gready      zset   grouped ready jobs (lib/groups)
  KEYS[10] gturn      zset   group -> turn, the groups that may lease now
  KEYS[11] gleased    zset   leased grouped jobs, member <group> \0 <id>
  KEYS[12] gjob       hash   job id -> group
  KEYS[13] events     stream the queue's events while they are on (lib/events)
  KEYS[14] wait_prefix prefix result waiters' counters and lists (lib/events)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] lib_version str    redisq version, recorded in meta on the first write
  ARGV[3] count       int    number of jobs that follow
  ARGV[4+] jobs       list   10 values per job: id, payload, name, priority, run_at_ms ('' = now
                             + delay_ms), delay_ms, max_attempts, lease_ms ('' = claim's),
                             unique_key, group ('' = none; a grouped ready job waits in its
                             group, lib/groups);
                             optionally followed by 3 values per job (for every job or none):
                             expires_ms, throttle_ms, debounce_ms ('' = none; docs/expiry_dedupe.md)
  With expires_ms, a job not started within that many ms is cancelled (lib/expire_due). With
  throttle_ms, the job opens a window on its unique key: a repeat within it gets the job that
  opened it, whatever became of that job. With debounce_ms, the job waits that long; a repeat
  while it waits unstarted replaces its payload and pushes its due time to now + debounce_ms.
  Returns: {status, now_ms, entries, new_queue}; entry per job handled (the first ones): 0 =
           created, k > 0 = same job as entry k, or {id, record} = the existing job (record ''
           when a throttle window's job is no longer stored); new_queue
           = 1 when this call created the queue's meta hash (the client then makes sure the
           queue is in the registry)
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(n log N) for n jobs, n <= CAPS.BATCH; bytes bounded by lib/caps
]]
--- @include "lib/schema"

local meta_hash = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local unique_key = KEYS[4]
local jobs_hash = KEYS[5]
local wake_set = KEYS[6]
local expiring_key = KEYS[7]
local window_prefix = KEYS[8]
local gready_key = KEYS[9]
local gturn_key = KEYS[10]
local gleased_key = KEYS[11]
local gjob_key = KEYS[12]
local events_key = KEYS[13]
local wait_prefix = KEYS[14]
local now_arg = ARGV[1]
local lib_version = ARGV[2]
local count = tonumber(ARGV[3])
local jobs_at = 4
local STRIDE = 10

-- One new job without a unique key (the single enqueue): the steps of the general path
-- below, written out for one job and its usual outcome, so that the call runs the commands it
-- needs and little Lua besides (no helper is even defined). Anything else (a bad argument, a
-- key of another type, another schema, an id that exists) leaves this block before its first
-- write, and the general path handles the call from the start. (lib/status is included after
-- this block, so that this call does not build its table: 0 below is STATUS.OK.)
if count == 1 and #ARGV == jobs_at - 1 + STRIDE and ARGV[jobs_at + 8] == ''
    and ARGV[jobs_at + 9] == '' then
  local b = jobs_at
  local id = ARGV[b]
  local priority = tonumber(ARGV[b + 3])
  local delay = tonumber(ARGV[b + 5])
  local meta = redis.pcall('HMGET', meta_hash, 'schema', 'seq', 'enqueued', 'events')
  if id ~= '' and priority and delay and tonumber(ARGV[b + 6]) and not meta['err']
      and (not meta[1] or meta[1] == SCHEMA_VERSION)
      and redis.pcall('HEXISTS', jobs_hash, id) == 0 then
    local now
    if now_arg ~= '' then
      now = tonumber(now_arg)
    else
      local t = redis.call('TIME')
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    local run_at = now + delay
    if ARGV[b + 4] ~= '' then
      run_at = tonumber(ARGV[b + 4])
    end
    local seq = (tonumber(meta[2]) or 0) + 1
    local fmt = string.format
    local state, set_key, score = 'ready', ready_key, (1000 - priority) * 4398046511104 + seq
    if run_at > now then
      state, set_key, score = 'scheduled', scheduled_key, run_at
    end
    -- The first write is the type check of its set (as below): refused, nothing is written.
    if type(redis.pcall('ZADD', set_key, fmt('%d', score), id)) == 'number' then
      -- The layout of lib/record, written out: no error, result or progress yet.
      redis.call('HSET', jobs_hash, id, 'j3\n' .. state .. '\n0\n\n\n\n\n\n\n' .. ARGV[b + 7]
        .. '\n\n' .. ARGV[b + 3] .. '\n' .. ARGV[b + 6] .. '\n'
        .. fmt('%d\n%d\n%d\n', now, run_at, seq) .. ARGV[b + 2] .. '\n0\n0\n0\n' .. ARGV[b + 1])
      local totals = fmt('%d', (tonumber(meta[3]) or 0) + 1)
      local is_new = 0
      if meta[1] then
        redis.call('HSET', meta_hash, 'seq', fmt('%d', seq), 'enqueued', totals)
      else
        is_new = 1
        redis.call('HSET', meta_hash, 'seq', fmt('%d', seq), 'enqueued', totals,
          'schema', SCHEMA_VERSION, 'lib_version', lib_version)
      end
      -- lib/events, written out: the enqueued event of a queue whose events are on.
      if meta[4] then
        redis.pcall('XADD', events_key, 'MAXLEN', '~', meta[4], '*', 'event', 'enqueued', 'id', id,
          'name', ARGV[b + 2], 'attempt', '0', 'worker', '', 'at', fmt('%d', now))
      end
      -- lib/wake, written out.
      redis.pcall('ZADD', wake_set, 0, 'w')
      return {0, now, {0}, is_new}
    end
  end
end

--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/wrong_type"
--- @include "lib/read_meta"
--- @include "lib/wake"
--- @include "lib/caps"
--- @include "lib/read_some"
--- @include "lib/write_jobs"
--- @include "lib/chunks"
--- @include "lib/key_types"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/grp_ctx"
--- @include "lib/events"

if not count or count < 1 or count > CAPS.BATCH then
  return {STATUS.BAD_ARGUMENT, 'count'}
end
-- The flow options (expires_ms, throttle_ms, debounce_ms) follow the jobs, 3 per job, only in
-- calls that use them: a call without them pays nothing for them.
local flow_at = nil
if #ARGV == jobs_at - 1 + count * (STRIDE + 3) then
  flow_at = jobs_at + count * STRIDE
elseif #ARGV ~= jobs_at - 1 + count * STRIDE then
  return {STATUS.BAD_ARGUMENT, 'count'}
end
-- The flow options of job i: expires_ms, throttle_ms, debounce_ms (numbers or nil).
local function flow(i)
  if not flow_at then
    return nil, nil, nil
  end
  local f = flow_at + (i - 1) * 3
  return tonumber(ARGV[f]), tonumber(ARGV[f + 1]), tonumber(ARGV[f + 2])
end
local arg_bytes = 0
for i = 1, count do
  arg_bytes = arg_bytes + #ARGV[jobs_at + (i - 1) * STRIDE + 1]
end
if count > 1 and arg_bytes > CAPS.ARG_BYTES then
  return {STATUS.BAD_ARGUMENT, 'payload bytes'}
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_hash, 'seq', 'enqueued', 'events')
if not meta then
  return err
end

-- Validate every job.
local ids = {}
for i = 1, count do
  local b = jobs_at + (i - 1) * STRIDE
  if ARGV[b] == '' or not tonumber(ARGV[b + 3]) or not tonumber(ARGV[b + 5])
      or not tonumber(ARGV[b + 6]) then
    return {STATUS.BAD_ARGUMENT, 'jobs', i}
  end
  if flow_at then
    -- Each flow option is '' or a positive integer; throttle and debounce need a unique key
    -- and exclude each other (the client checks the same, naming the field).
    local f = flow_at + (i - 1) * 3
    for k = 0, 2 do
      local v = ARGV[f + k]
      if v ~= '' and not (tonumber(v) and tonumber(v) >= 1 and tonumber(v) % 1 == 0) then
        return {STATUS.BAD_ARGUMENT, 'jobs', i}
      end
    end
    if (ARGV[f + 1] ~= '' or ARGV[f + 2] ~= '')
        and (ARGV[b + 8] == '' or (ARGV[f + 1] ~= '' and ARGV[f + 2] ~= '')) then
      return {STATUS.BAD_ARGUMENT, 'jobs', i}
    end
  end
  ids[i] = ARGV[b]
end
-- Look up the ids, then the unique keys of the jobs covered; past the read budget, the jobs
-- from the first one not covered are left to the next call.
local existing, used
existing, count, used = read_some(jobs_hash, ids, CAPS.READ_BYTES)
if not existing then
  return count
end
local ukeys = {}
local ukey_job = {}
for i = 1, count do
  local ukey = ARGV[jobs_at + (i - 1) * STRIDE + 8]
  if ukey ~= '' then
    ukeys[#ukeys + 1] = ukey
    ukey_job[#ukeys] = i
  end
end
local holders = {}
if #ukeys > 0 then
  local found = redis.pcall('HMGET', unique_key, unpack(ukeys))
  if found['err'] then
    return wrong_type(unique_key, found)
  end
  local held_by = {}
  local held_keys = {}
  local held_job = {}
  for i = 1, #ukeys do
    if found[i] then
      held_by[#held_by + 1] = found[i]
      held_keys[#held_keys + 1] = ukeys[i]
      held_job[#held_by] = ukey_job[i]
    end
  end
  if #held_by > 0 then
    local recs, covered, more_used = read_some(jobs_hash, held_by, CAPS.READ_BYTES - used)
    if not recs then
      return covered
    end
    used = used + more_used
    if covered < #held_by then
      count = held_job[covered + 1] - 1
    end
    for i = 1, covered do
      local state = recs[i] and string.match(recs[i], '^j3\n(%l+)\n')
      if state == 'ready' or state == 'scheduled' or state == 'leased' then
        holders[held_keys[i]] = {held_by[i], recs[i]}
      end
    end
  end
end
-- Throttle windows open on the unique keys of throttled jobs: each holds the id of the job
-- that opened it, read with its record (within the read budget, as above).
local windows = {}
if flow_at then
  local win_ids, win_keys, win_job = {}, {}, {}
  for i = 1, count do
    local _, throttle = flow(i)
    local ukey = ARGV[jobs_at + (i - 1) * STRIDE + 8]
    if throttle and not win_keys[ukey] then
      local held = redis.pcall('GET', window_prefix .. ukey)
      if type(held) == 'table' then
        return wrong_type(window_prefix .. ukey, held)
      end
      local ends, held_id = nil, nil
      if held then
        ends, held_id = string.match(held, '^(%d+)/(.+)$')
      end
      if held_id and tonumber(ends) > now then
        win_ids[#win_ids + 1] = held_id
        win_keys[#win_ids] = ukey
        win_job[#win_ids] = i
        win_keys[ukey] = true
      end
    end
  end
  if #win_ids > 0 then
    local recs, covered = read_some(jobs_hash, win_ids, math.max(0, CAPS.READ_BYTES - used))
    if not recs then
      return covered
    end
    if covered < #win_ids then
      count = math.min(count, win_job[covered + 1] - 1)
    end
    for i = 1, covered do
      windows[win_keys[i]] = {win_ids[i], recs[i] or ''}
    end
  end
end
-- A job waiting unstarted (ready or scheduled, no attempt counted): what a debounced repeat
-- may still change.
local function waiting(rec)
  return string.match(rec, '^j3\n(%l+)\n0\n') == 'ready'
    or string.match(rec, '^j3\n(%l+)\n0\n') == 'scheduled'
end

-- Decide per job: created, the same as an earlier entry, or an existing job.
local entries = {}
local fresh = {}
local debounced = {}
local seen_id = {}
local seen_ukey = {}
local to_ready, to_scheduled, grouped = 0, 0, 0
for i = 1, count do
  local b = jobs_at + (i - 1) * STRIDE
  local id = ARGV[b]
  local ukey = ARGV[b + 8]
  -- Precedence: the same id earlier in this call, the id stored already, the unique key taken
  -- earlier in this call, the unique key held by a live stored job; else a new job.
  if seen_id[id] then
    entries[i] = seen_id[id]
  elseif not existing[i] and ukey ~= '' and seen_ukey[ukey] then
    entries[i] = seen_ukey[ukey]
  else
    local _, throttle, debounce = flow(i)
    if existing[i] then
      entries[i] = {id, existing[i]}
    elseif throttle and windows[ukey] then
      entries[i] = windows[ukey]
    elseif ukey ~= '' and holders[ukey] and not (debounce and not waiting(holders[ukey][2])) then
      entries[i] = holders[ukey]
      if debounce then
        debounced[#debounced + 1] = i
      end
    else
      entries[i] = 0
      fresh[#fresh + 1] = b
      local run_at = ARGV[b + 4]
      local due = now + tonumber(ARGV[b + 5])
      if run_at ~= '' then
        due = tonumber(run_at)
      end
      if debounce then
        due = now + debounce
      end
      if ARGV[b + 9] ~= '' then
        grouped = grouped + 1
      end
      if due > now then
        to_scheduled = to_scheduled + 1
      elseif ARGV[b + 9] == '' then
        to_ready = to_ready + 1
      end
    end
    -- A later item with this id maps here only if this entry is the job with this id (not
    -- the holder of its unique key, which has another id).
    if entries[i] == 0 or existing[i] then
      seen_id[id] = i
    end
    -- A later item with this unique key maps here only if this entry holds the key: the job
    -- created now, or the live job that held it (an existing id may hold another key or none).
    if ukey ~= '' and (entries[i] == 0 or not existing[i]) then
      seen_ukey[ukey] = i
    end
  end
end
-- Debounced repeats: the waiting job takes the repeat's payload and waits debounce_ms from
-- now (validated above; the writes come with the others below).
local rewrites = {}
for _, i in ipairs(debounced) do
  local b = jobs_at + (i - 1) * STRIDE
  local _, _, debounce = flow(i)
  local hid, rec = entries[i][1], entries[i][2]
  local t = rec_parse(rec)
  if t then
    local kept = tonumber(t[F.LEN_ERROR]) + tonumber(t[F.LEN_RESULT])
      + tonumber(t[F.LEN_PROGRESS])
    t[F.STATE] = 'scheduled'
    t[F.RUN_AT] = num(now + debounce)
    t[F.TAIL] = string.sub(t[F.TAIL], 1, kept) .. ARGV[b + 1]
    rec = rec_pack(t)
    rewrites[#rewrites + 1] = {hid, rec, num(now + debounce), i, t[F.SEQ]}
    entries[i] = {hid, rec}
  end
end
if #rewrites > 0 then
  local bad_key = key_types({ready_key, 'zset', scheduled_key, 'zset', expiring_key, 'zset'})
  if bad_key then
    return wrong_type(bad_key)
  end
  for _, w in ipairs(rewrites) do
    redis.call('ZREM', ready_key, w[1])
    redis.call('ZADD', scheduled_key, w[3], w[1])
    redis.call('HSET', jobs_hash, w[1], w[2])
    local expires = flow(w[4])
    if expires then
      -- The repeat's expiry replaces the job's (same enqueue sequence, so the same entry).
      redis.call('ZADD', expiring_key, num(now + expires), w[5] .. '/' .. w[1])
    end
  end
  wake(wake_set)
end
if #fresh == 0 then
  return {STATUS.OK, now, entries, 0}
end
-- Jobs for both sets: check both types now, since the first ZADD can only vouch for its own.
if to_ready > 0 and to_scheduled > 0 then
  local bad_key, bad_type = key_types({ready_key, 'zset', scheduled_key, 'zset'})
  if bad_key then
    return {STATUS.WRONG_TYPE, bad_key, bad_type}
  end
end
if flow_at then
  local bad_key, bad_type = key_types({expiring_key, 'zset'})
  if bad_key then
    return {STATUS.WRONG_TYPE, bad_key, bad_type}
  end
end
-- Grouped jobs (lib/groups): their keys are checked too, before the first write.
if grouped > 0 then
  local bad_key, bad_type = key_types({gready_key, 'zset', gturn_key, 'zset', gleased_key,
    'zset', gjob_key, 'hash', scheduled_key, 'zset'})
  if bad_key then
    return {STATUS.WRONG_TYPE, bad_key, bad_type}
  end
end
local gctx = grouped > 0 and grp_ctx(meta_hash, gready_key, gturn_key, gleased_key, gjob_key)
local group_jobs = {}

-- Write: the index entries first (a wrong-typed set refuses the first ZADD, before anything
-- else is written), then the records, the unique keys and the counters.
local seq = tonumber(meta[2]) or 0
local ready_pairs = {}
local scheduled_pairs = {}
local n = num(now)
local records = {}
local unique_pairs = {}
local expiring_pairs = {}
local windows_opened = {}
-- (Per job, in the hot loop of a batch: ARGV and string.format as locals, lists filled by
-- counters rather than by the length operator, ready_score written out.)
local argv, fmt = ARGV, string.format
local nr, ns, nw = 0, 0, 0
for i = 1, #fresh do
  local b = fresh[i]
  local id = argv[b]
  local priority = argv[b + 3]
  local run_at = argv[b + 4]
  if run_at == '' then
    run_at = now + tonumber(argv[b + 5])
  else
    run_at = tonumber(run_at)
  end
  seq = seq + 1
  if flow_at then
    local expires, throttle, debounce = flow((b - jobs_at) / STRIDE + 1)
    if debounce then
      run_at = now + debounce
    end
    if expires then
      expiring_pairs[#expiring_pairs + 1] = num(now + expires)
      expiring_pairs[#expiring_pairs + 1] = num(seq) .. '/' .. id
    end
    if throttle then
      windows_opened[#windows_opened + 1] = {window_prefix .. argv[b + 8],
        num(now + throttle) .. '/' .. id, throttle}
    end
  end
  local state = 'ready'
  if run_at > now then
    state = 'scheduled'
    scheduled_pairs[ns + 1] = fmt('%d', run_at)
    scheduled_pairs[ns + 2] = id
    ns = ns + 2
  elseif argv[b + 9] == '' then
    ready_pairs[nr + 1] = fmt('%d', (1000 - tonumber(priority)) * 4398046511104 + seq)
    ready_pairs[nr + 2] = id
    nr = nr + 2
  end
  if argv[b + 9] ~= '' then
    group_jobs[#group_jobs + 1] = {argv[b + 9], id, state, priority, seq}
  end
  -- The layout of lib/record, written out: no error, result or progress yet.
  local ukey = argv[b + 8]
  records[nw + 1] = id
  records[nw + 2] = 'j3\n' .. state .. '\n0\n\n\n\n\n\n\n' .. argv[b + 7] .. '\n' .. ukey
    .. '\n' .. priority .. '\n' .. argv[b + 6] .. '\n' .. n .. '\n' .. fmt('%d\n%d\n', run_at, seq)
    .. argv[b + 2] .. '\n0\n0\n0\n' .. argv[b + 1]
  nw = nw + 2
  if ukey ~= '' then
    unique_pairs[#unique_pairs + 1] = ukey
    unique_pairs[#unique_pairs + 1] = id
  end
end
for _, set in ipairs({{ready_key, ready_pairs}, {scheduled_key, scheduled_pairs}}) do
  local pairs_ = set[2]
  if #pairs_ > 0 then
    local first = math.min(#pairs_, 2000)
    local added = redis.pcall('ZADD', set[1], unpack(pairs_, 1, first))
    if type(added) == 'table' and added['err'] then
      return wrong_type(set[1], added)
    end
    if #pairs_ > first then
      chunks({'ZADD', set[1]}, {unpack(pairs_, first + 1)})
    end
  end
end
write_jobs(jobs_hash, records)
events(meta_hash, events_key, wait_prefix, {meta[4], false}, now, 'enqueued', records)
for i = 1, #group_jobs do
  local g, id, state, prio, job_seq = unpack(group_jobs[i])
  redis.call('HSET', gjob_key, id, g)
  if state == 'ready' then
    redis.call('ZADD', gready_key, 0, gctx.member(g, prio, job_seq, id))
    gctx.recheck(g)
  end
end
if #group_jobs > 0 then
  redis.call('HSET', meta_hash, 'groups', '1')
end
if #unique_pairs > 0 then
  chunks({'HSET', unique_key}, unique_pairs)
end
if #expiring_pairs > 0 then
  chunks({'ZADD', expiring_key}, expiring_pairs)
end
for _, w in ipairs(windows_opened) do
  redis.call('SET', w[1], w[2], 'PX', w[3])
end
local is_new = 0
local enqueued = num((tonumber(meta[3]) or 0) + #fresh)
if meta[1] then
  redis.call('HSET', meta_hash, 'seq', num(seq), 'enqueued', enqueued)
else
  is_new = 1
  redis.call('HSET', meta_hash, 'seq', num(seq), 'enqueued', enqueued, 'schema', SCHEMA_VERSION,
    'lib_version', lib_version)
end
wake(wake_set)
return {STATUS.OK, now, entries, is_new}

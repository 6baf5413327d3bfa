--[[ ack: leased -> completed
  Completes each job whose lease the caller still holds (its token is current and its deadline
  has not passed). All or nothing: one stale, expired or missing job refuses the whole call and
  nothing is written. Re-sending a successful ack with the same token succeeds again without a
  second completion. The done set is then trimmed to its retention limits. A job acked with a
  result also gets its completed record under result_prefix .. <id> for result_ttl_ms, so the
  result outlives the count-trimmed record; jobs without a result write nothing more. Bounded
  (lib/caps): at most CAPS.BATCH jobs and CAPS.ARG_BYTES of results per call (beyond the first
  job); when the stored records pass CAPS.READ_BYTES, only the jobs before that one are handled
  (all or nothing among them), and the client sends the rest again. In a queue with
  dependencies, the acks release the children whose last parent they completed, in the same
  step (lib/deps_finish: at most 100 children per call, the rest by the next calls).
  KEYS[1] meta        hash   schema, completed total
  KEYS[2] leased      zset   job ids, score = lease deadline (ms)
  KEYS[3] done        zset   completed job ids, score = completion time (ms)
  KEYS[4] unique      hash   unique key -> job id
  KEYS[5] jobs        hash   job id -> packed job record (lib/record)
  KEYS[6] result_prefix prefix stored results are result_prefix .. <id> (strings with a TTL)
  KEYS[7] gready      zset   grouped ready jobs (lib/groups)
  KEYS[8] gturn       zset   group -> turn, the groups that may lease now
  KEYS[9] gleased     zset   leased grouped jobs, member <group> \0 <id>
  KEYS[10] gjob       hash   job id -> group
  KEYS[11] wake       zset   signalled when leases end on a queue with groups or a cap, and
                             when children were released
  KEYS[12] ready      zset   job ids; children released by these acks (lib/deps_finish)
  KEYS[13] scheduled  zset   job ids; released children whose run_at is ahead
  KEYS[14] waiting    zset   job ids waiting for parents
  KEYS[15] cancelled  zset   job ids; not written by ack itself
  KEYS[16] deps_prefix prefix dependency keys (lib/deps_keys), used only when meta deps = 1
  KEYS[17] events     stream the queue's events while they are on (lib/events)
  KEYS[18] wait_prefix prefix result waiters' counters and lists (lib/events)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] keep        int    retention of the done set: count
  ARGV[3] max_age_ms  int    retention of the done set: age (0 = no age limit)
  ARGV[4] batch       int    most records trimmed in this call
  ARGV[5] result_ttl_ms int  how long a stored result is kept (0 = not beyond its record)
  ARGV[6] count       int    number of jobs that follow
  ARGV[7+] jobs       list   3 values per job: id, token, result ('' = none)
  Returns: {status, now_ms, {per job handled (the first ones): 0 = completed now, or the
           stored record when it had been acked already}}; refusals: {status, index, detail}
  Status: OK, NOT_FOUND, LEASE_LOST, LEASE_EXPIRED, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT,
          BAD_RECORD
  Cost: O((n + batch) log N) for n jobs, n <= CAPS.BATCH; bytes bounded by lib/caps
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/read_meta"
--- @include "lib/key_types"
--- @include "lib/bad_record"
--- @include "lib/ack_head"
--- @include "lib/caps"
--- @include "lib/read_some"
--- @include "lib/write_jobs"
--- @include "lib/lease_check_fields"
--- @include "lib/chunks"
--- @include "lib/clear_unique"
--- @include "lib/trim_retention"
--- @include "lib/wrong_type"
--- @include "lib/add_totals"
--- @include "lib/grp_ctx"
--- @include "lib/wake"
--- @include "lib/deps_keys"
--- @include "lib/deps_finish"
--- @include "lib/events"

local meta_key = KEYS[1]
local leased_key = KEYS[2]
local done_key = KEYS[3]
local unique_key = KEYS[4]
local jobs_key = KEYS[5]
local result_prefix = KEYS[6]
local gready_key = KEYS[7]
local gturn_key = KEYS[8]
local gleased_key = KEYS[9]
local gjob_key = KEYS[10]
local wake_key = KEYS[11]
local ready_key = KEYS[12]
local scheduled_key = KEYS[13]
local waiting_key = KEYS[14]
local cancelled_key = KEYS[15]
local deps_prefix = KEYS[16]
local events_key = KEYS[17]
local wait_prefix = KEYS[18]
local now_arg = ARGV[1]
local keep = tonumber(ARGV[2])
local max_age_ms = tonumber(ARGV[3])
local batch = tonumber(ARGV[4])
local result_ttl_ms = tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local jobs_at = 7
local STRIDE = 3

if not keep or not max_age_ms or not batch or not count or count < 1 or count > CAPS.BATCH
    or not result_ttl_ms or result_ttl_ms < 0
    or #ARGV ~= jobs_at - 1 + count * STRIDE then
  return {STATUS.BAD_ARGUMENT, 'ack'}
end
local arg_bytes = 0
for i = 1, count do
  arg_bytes = arg_bytes + #ARGV[jobs_at + (i - 1) * STRIDE + 2]
end
if count > 1 and arg_bytes > CAPS.ARG_BYTES then
  return {STATUS.BAD_ARGUMENT, 'result bytes'}
end
local now = now_ms(now_arg)
local meta, err = read_meta(meta_key, 'groups', 'conc', 'deps', 'events', 'wait')
if not meta then
  return err
end

local ids = {}
for i = 1, count do
  ids[i] = ARGV[jobs_at + (i - 1) * STRIDE]
end
local recs
recs, count = read_some(jobs_key, ids, CAPS.READ_BYTES)
if not recs then
  return count
end
-- One pass: check each job's lease and build its completed record (nothing is written until
-- every job passed).
local flags = {}
local n = num(now)
local done_ids = {}
local done_pairs = {}
local writes = {}
local uniques = {}
local results = {}
local done = 0
local match, sub = string.match, string.sub
for i = 1, count do
  local b = jobs_at + (i - 1) * STRIDE
  local s = recs[i]
  if not s then
    return {STATUS.NOT_FOUND, i}
  end
  local state, at, held, deadline, fin, ended, lm, ukey, pr = match(s, ACK_HEAD)
  if not state then
    return bad_record(jobs_key, ids[i])
  end
  local token = ARGV[b + 1]
  local refusal = lease_check_fields(state, held, ended, deadline, token, now, 'ack', i)
  if refusal == 'again' then
    flags[i] = s
  elseif refusal then
    return refusal
  else
    flags[i] = 0
    local rec
    local result = ARGV[b + 2]
    if result == '' then
      -- state completed, finished now, ended 'ack/<token>'; the rest (blobs too) as stored.
      rec = 'j3\ncompleted\n' .. sub(s, at, fin - 1) .. n .. '\nack/' .. token .. '\n'
        .. sub(s, lm)
    else
      -- The same, with the result spliced into the blobs in place of any stored one: the
      -- rest of the text fields must parse and the blob lengths fit (else BAD_RECORD).
      local lens, e, r, p, tail = match(s, ACK_TAIL, pr)
      e, r, p = tonumber(e), tonumber(r), tonumber(p)
      if not lens or e + r + p > #s - tail + 1 then
        return bad_record(jobs_key, ids[i])
      end
      rec = 'j3\ncompleted\n' .. sub(s, at, fin - 1) .. n .. '\nack/' .. token .. '\n'
        .. sub(s, lm, lens - 1) .. e .. '\n' .. #result .. '\n' .. p .. '\n'
        .. sub(s, tail, tail + e - 1) .. result .. sub(s, tail + e + r)
      if result_ttl_ms > 0 then
        results[#results + 1] = ids[i]
        results[#results + 1] = rec
      end
    end
    local id = ids[i]
    done = done + 1
    local k = 2 * done
    writes[k - 1] = id
    writes[k] = rec
    if ukey ~= '' then
      uniques[#uniques + 1] = ukey
      uniques[#uniques + 1] = id
    end
    done_ids[done] = id
    done_pairs[k - 1] = n
    done_pairs[k] = id
  end
end
if done == 0 then
  return {STATUS.OK, now, flags}
end
-- The type checks before the first write, with reads that are needed anyway: the done set's
-- size (for its retention below) and, as the first write, the ZREM of the leases (a wrong
-- type fails it, and nothing is written). One unpack: count <= CAPS.BATCH, far below Lua's
-- limit (lib/chunks).
local card = redis.pcall('ZCARD', done_key)
if type(card) == 'table' then
  return wrong_type(done_key, card)
end
if #uniques > 0 and key_types({unique_key, 'hash'}) then
  return wrong_type(unique_key)
end
local zrem = redis.pcall('ZREM', leased_key, unpack(done_ids))
if type(zrem) == 'table' then
  return wrong_type(leased_key, zrem)
end

write_jobs(jobs_key, writes)
events(meta_key, events_key, wait_prefix, {meta[5], meta[6]}, now, 'completed', writes)
-- The stored result: the completed record again, under a key of its own with a TTL, so that
-- `get` still finds it after the done set's count limit trimmed the record.
for j = 1, #results, 2 do
  redis.call('SET', result_prefix .. results[j], results[j + 1], 'PX', result_ttl_ms)
end
if #uniques > 0 then
  clear_unique(unique_key, uniques)
end
card = card + chunks({'ZADD', done_key}, done_pairs)
-- Trim as many as this call completed on top of `batch`: a set that grows by n per call and
-- sheds at least n stays within its limits whatever the size of the calls (bounded by the
-- call's own work).
trim_retention(done_key, jobs_key, keep, max_age_ms, now, batch + done, card, nil,
  meta[4] == '1' and deps_prefix or nil)
add_totals(meta_key, done, 0, 0)
-- A queue with groups or a concurrency cap (lib/groups): the grouped jobs' slots are free, and
-- a waiting worker is woken for the jobs the cap or the limits held back.
if meta[2] then
  local gctx = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)
  local groups = gctx and gctx.of(done_ids)
  for i = 1, groups and done or 0 do
    if groups[i] then
      gctx.forget(groups[i], nil, done_ids[i])
    end
  end
end
if meta[2] or meta[3] then
  wake(wake_key)
end
if meta[4] == '1' then
  deps_finish(deps_keys(deps_prefix, jobs_key, waiting_key, ready_key, scheduled_key,
    cancelled_key, wake_key), done_ids, 'completed', now)
end
return {STATUS.OK, now, flags}

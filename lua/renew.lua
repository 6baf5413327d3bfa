--[[ renew: leased -> leased
  Extends each lease the caller still holds to now + lease_ms on the Redis clock. Each job is
  judged on its own (a worker renews its leases in one call): a stale, expired or missing job gets
  its refusal status in the reply and is left unchanged; the others are extended. Bounded
  (lib/caps): at most CAPS.BATCH jobs per call; when the stored records pass CAPS.READ_BYTES, only
  the jobs before that one are handled (the reply lists are shorter) and the client sends the
  rest again.
  KEYS[1] meta        hash   schema
  KEYS[2] leased      zset   job ids, score = lease deadline (ms)
  KEYS[3] jobs        hash   job id -> packed job record (lib/record)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] lease_ms    int    new lease length; '' = the job's own lease_ms, else default_ms
  ARGV[3] default_ms  int    lease length for jobs that carry no lease_ms of their own
  ARGV[4] count       int    number of jobs that follow
  ARGV[5+] jobs       list   2 values per job: id, token
  Returns: {status, now_ms, {status per job}, {deadline per job, 0 when refused},
           {state per job ('' when unknown; the key's type on WRONG_TYPE)}}, per job handled
           (the first ones)
  Status: OK, NOT_FOUND, LEASE_LOST, LEASE_EXPIRED, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT,
          BAD_RECORD
  Cost: O(n log N) for n jobs, n <= CAPS.BATCH; bytes bounded by lib/caps
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/read_meta"
--- @include "lib/key_types"
--- @include "lib/wrong_type"
--- @include "lib/caps"
--- @include "lib/read_some"
--- @include "lib/write_jobs"
--- @include "lib/lease_check_fields"

local meta_key = KEYS[1]
local leased_key = KEYS[2]
local jobs_key = KEYS[3]
local now_arg = ARGV[1]
local lease_arg = ARGV[2]
local default_ms = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local jobs_at = 5
local STRIDE = 2

if not default_ms or not count or count < 1 or count > CAPS.BATCH
    or #ARGV ~= jobs_at - 1 + count * STRIDE
    or (lease_arg ~= '' and not tonumber(lease_arg)) then
  return {STATUS.BAD_ARGUMENT, 'renew'}
end
local now = now_ms(now_arg)
-- The meta hash's type and schema in one read; the leased set's type is checked by the ZADD
-- that is this call's first write (below).
local _, err = read_meta(meta_key)
if err then
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

-- The head of a record (lib/record) as renew reads it: state, token, the position of deadline,
-- deadline, the position of finished, ended and lease_ms. Renew rewrites only the deadline, by
-- splicing; a record whose head does not match is refused (BAD_RECORD) for that job.
local RENEW_HEAD = '^j3\n(%l+)\n%d+\n(%d*)\n[^\n]*\n%d*\n()(%d*)\n()%d*\n([^\n]*)\n(%d*)\n'
local match, sub = string.match, string.sub
local statuses = {}
local deadlines = {}
local states = {}
local writes = {}
local scores = {}
for i = 1, count do
  local b = jobs_at + (i - 1) * STRIDE
  local s = recs[i]
  local refusal, state, held, at, deadline, fin, ended, own
  if not s then
    refusal = {STATUS.NOT_FOUND, i}
  else
    state, held, at, deadline, fin, ended, own = match(s, RENEW_HEAD)
    if not state then
      refusal = {STATUS.BAD_RECORD, i, ''}
    else
      refusal = lease_check_fields(state, held, ended, deadline, ARGV[b + 1], now, 'renew', i)
    end
  end
  if refusal then
    -- 'again' cannot happen: renew never ends a lease.
    statuses[i] = refusal[1]
    deadlines[i] = 0
    states[i] = refusal[3] or ''
  else
    local lease = tonumber(lease_arg) or tonumber(own) or default_ms
    local new_deadline = num(now + lease)
    writes[#writes + 1] = ARGV[b]
    writes[#writes + 1] = sub(s, 1, at - 1) .. new_deadline .. '\n' .. sub(s, fin)
    scores[#scores + 1] = new_deadline
    scores[#scores + 1] = ARGV[b]
    statuses[i] = STATUS.OK
    deadlines[i] = now + lease
    states[i] = 'leased'
  end
end
if #writes == 0 then
  -- Nothing to write: the leased set is still checked, as a call that writes checks it.
  if key_types({leased_key, 'zset'}) then
    return wrong_type(leased_key)
  end
  return {STATUS.OK, now, statuses, deadlines, states}
end
-- The first write checks the leased set's type: a wrong type fails it and nothing is written.
-- One ZADD: count <= CAPS.BATCH, far below Lua's unpack limit (lib/chunks).
local zadd = redis.pcall('ZADD', leased_key, 'XX', unpack(scores))
if type(zadd) == 'table' then
  return wrong_type(leased_key, zadd)
end
write_jobs(jobs_key, writes)
return {STATUS.OK, now, statuses, deadlines, states}

--[[ update: ready | scheduled -> ready | scheduled
  Changes the priority, payload or due time of a job that is waiting (ready or scheduled); a
  leased or finished job is refused with INVALID_STATE and left unchanged. A new due time in the
  future moves a ready job to the scheduled set; one in the past makes a scheduled job ready.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] jobs        hash   job id -> packed job record (lib/record)
  KEYS[5] wake        zset   signalled so that waiting workers see the new due time
  KEYS[6] gready      zset   grouped ready jobs (lib/groups)
  KEYS[7] gturn       zset   group -> turn, the groups that may lease now
  KEYS[8] gleased     zset   leased grouped jobs, member <group> \0 <id>
  KEYS[9] gjob        hash   job id -> group
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] priority    int    new priority ('' = unchanged)
  ARGV[4] set_payload int    1 = replace the payload with ARGV[5]
  ARGV[5] payload     bytes  msgpack-encoded payload
  ARGV[6] run_at_ms   int    new due time ('' = unchanged)
  Returns: {status, record}; refusals: {status, detail}
  Status: OK, NOT_FOUND, INVALID_STATE, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/rec_blobs"
--- @include "lib/read_job"
--- @include "lib/ready_score"
--- @include "lib/wake"
--- @include "lib/grp_ctx"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local jobs_key = KEYS[4]
local wake_key = KEYS[5]
local gready_key = KEYS[6]
local gturn_key = KEYS[7]
local gleased_key = KEYS[8]
local gjob_key = KEYS[9]
local now_arg = ARGV[1]
local id = ARGV[2]
local priority_arg = ARGV[3]
local set_payload = ARGV[4] == '1'
local payload = ARGV[5]
local run_at_arg = ARGV[6]

if (priority_arg ~= '' and not string.match(priority_arg, '^%-?%d+$'))
    or (run_at_arg ~= '' and not string.match(run_at_arg, '^%d+$')) then
  return {STATUS.BAD_ARGUMENT, 'update'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset'})
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
if t[F.STATE] ~= 'ready' and t[F.STATE] ~= 'scheduled' then
  return {STATUS.INVALID_STATE, t[F.STATE]}
end

-- A grouped job (lib/groups) leaves its place in its group, and takes its new one below.
local g = redis.call('HGET', gjob_key, id)
local gctx = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)
if g and t[F.STATE] == 'ready' then
  redis.call('ZREM', gready_key, gctx.member(g, t[F.PRIO], t[F.SEQ], id))
end
if priority_arg ~= '' then
  t[F.PRIO] = priority_arg
end
if set_payload then
  local e, r, p = rec_blobs(t)
  rec_set_blobs(t, e, r, p, payload)
end
if run_at_arg ~= '' then
  t[F.RUN_AT] = run_at_arg
end
local run_at = tonumber(t[F.RUN_AT])
if run_at > now then
  redis.call('ZREM', ready_key, id)
  redis.call('ZADD', scheduled_key, num(run_at), id)
  t[F.STATE] = 'scheduled'
else
  redis.call('ZREM', scheduled_key, id)
  if g then
    gctx.ready(g, t[F.PRIO], t[F.SEQ], id)
  else
    redis.call('ZADD', ready_key, ready_score(t[F.PRIO], t[F.SEQ]), id)
  end
  t[F.STATE] = 'ready'
end
local record = rec_pack(t)
redis.call('HSET', jobs_key, id, record)
wake(wake_key)
return {STATUS.OK, record}

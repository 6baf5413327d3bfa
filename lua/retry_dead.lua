--[[ retry_dead: dead -> ready
  Replays dead-lettered jobs with a fresh attempt budget: each goes to the back of the ready set
  of its priority (a new enqueue sequence), keeping its last_error for reference. With no ids it
  takes the oldest `limit` dead jobs. A job whose unique key was taken by a newer live job stays
  dead. Ids that are not dead are skipped; a re-sent call therefore replays nothing twice.
  Bounded (lib/caps): `limit` and the ids are at most CAPS.BATCH; once the records read pass
  CAPS.READ_BYTES, the ids after that one are left for the next call (`more` = 1).
  KEYS[1] meta        hash   schema, seq counter
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] dead        zset   job ids, score = time of death (ms)
  KEYS[4] unique      hash   unique key -> job id
  KEYS[5] jobs        hash   job id -> packed job record (lib/record)
  KEYS[6] wake        zset   signalled when jobs were replayed
  KEYS[7] gready      zset   grouped ready jobs (lib/groups)
  KEYS[8] gturn       zset   group -> turn, the groups that may lease now
  KEYS[9] gleased     zset   leased grouped jobs, member <group> \0 <id>
  KEYS[10] gjob       hash   job id -> group
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] limit       int    most jobs replayed (1 to CAPS.BATCH)
  ARGV[3] count       int    number of ids that follow (0 = the oldest dead jobs)
  ARGV[4+] ids        list   job ids
  Returns: {status, number replayed, ids examined (the first ones), more (1 = ids were left
           unexamined for the read budget)}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O(limit log N), limit <= CAPS.BATCH; bytes bounded by lib/caps
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/caps"
--- @include "lib/read_some"
--- @include "lib/write_jobs"
--- @include "lib/ready_score"
--- @include "lib/chunks"
--- @include "lib/wake"
--- @include "lib/grp_ctx"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local dead_key = KEYS[3]
local unique_key = KEYS[4]
local jobs_key = KEYS[5]
local wake_key = KEYS[6]
local gready_key = KEYS[7]
local gturn_key = KEYS[8]
local gleased_key = KEYS[9]
local gjob_key = KEYS[10]
local now_arg = ARGV[1]
local limit = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local ids_at = 4

if not limit or limit < 1 or limit > CAPS.BATCH or not count or count < 0 or count > CAPS.BATCH
    or #ARGV ~= ids_at - 1 + count then
  return {STATUS.BAD_ARGUMENT, 'retry_dead'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', dead_key, 'zset',
  unique_key, 'hash'})
if err then
  return err
end
local ids
if count == 0 then
  ids = redis.call('ZRANGE', dead_key, 0, limit - 1)
else
  ids = {}
  for i = ids_at, math.min(#ARGV, ids_at + limit - 1) do
    ids[#ids + 1] = ARGV[i]
  end
end
if #ids == 0 then
  return {STATUS.OK, 0, 0, 0}
end
local recs, examined, used = read_some(jobs_key, ids, CAPS.READ_BYTES)
if not recs then
  return examined
end

local todo = {}
local seen = {}
local revived_ukeys = {}
for i = 1, examined do
  local t = not seen[ids[i]] and recs[i] and rec_parse(recs[i])  -- a bad record: left alone
  seen[ids[i]] = true
  if t and t[F.STATE] == 'dead' then
    local ukey = t[F.UKEY]
    local holder = ukey ~= '' and redis.call('HGET', unique_key, ukey)
    -- The key is taken by a live job, or by a job this call revives first: stay dead.
    local taken = ukey ~= '' and revived_ukeys[ukey]
    if not taken and holder and holder ~= ids[i] then
      local h = redis.call('HGET', jobs_key, holder)
      local state = h and string.match(h, '^j3\n(%l+)\n')
      taken = state == 'ready' or state == 'scheduled' or state == 'leased'
      -- The holder's record counts against the read budget too: stop after this job.
      used = used + (h and #h or 0)
    end
    if not taken then
      todo[#todo + 1] = {ids[i], t}
      if ukey ~= '' then
        revived_ukeys[ukey] = true
      end
    end
  end
  if used > CAPS.READ_BYTES and i < examined then
    examined = i
    break
  end
end
local more = 0
if examined < #ids then
  more = 1
end
if #todo == 0 then
  return {STATUS.OK, 0, examined, more}
end

local seq = redis.call('HINCRBY', meta_key, 'seq', #todo) - #todo
local n = num(now)
local moved = {}
local ready_pairs = {}
local gctx = grp_ctx(meta_key, gready_key, gturn_key, gleased_key, gjob_key)
local groups = {}
for i = 1, #todo do
  groups[i] = todo[i][1]
end
groups = gctx and gctx.of(groups)
local grouped = {}
local writes = {}
local uniques = {}
for i = 1, #todo do
  local id, t = todo[i][1], todo[i][2]
  seq = seq + 1
  t[F.STATE] = 'ready'
  t[F.ATTEMPTS] = '0'
  t[F.SEQ] = num(seq)
  t[F.RUN_AT] = n
  t[F.ENDED] = 'retry'
  t[F.FINISHED] = ''
  writes[#writes + 1] = id
  writes[#writes + 1] = rec_pack(t)
  if t[F.UKEY] ~= '' then
    uniques[#uniques + 1] = t[F.UKEY]
    uniques[#uniques + 1] = id
  end
  moved[#moved + 1] = id
  if groups and groups[i] then
    grouped[#grouped + 1] = i
  else
    ready_pairs[#ready_pairs + 1] = ready_score(t[F.PRIO], seq)
    ready_pairs[#ready_pairs + 1] = id
  end
end
write_jobs(jobs_key, writes)
if #uniques > 0 then
  chunks({'HSET', unique_key}, uniques)
end
chunks({'ZREM', dead_key}, moved)
if #ready_pairs > 0 then
  chunks({'ZADD', ready_key}, ready_pairs)
end
for _, i in ipairs(grouped) do
  local t = todo[i][2]
  gctx.ready(groups[i], t[F.PRIO], t[F.SEQ], todo[i][1])  -- back in its group (lib/groups)
end
wake(wake_key)
return {STATUS.OK, #moved, examined, more}

--[[ retry_dead: dead -> ready
  Replays dead-lettered jobs with a fresh attempt budget: each goes to the back of the ready set
  of its priority (a new enqueue sequence), keeping its last_error for reference. With no ids it
  takes the oldest `limit` dead jobs. A job whose unique key was taken by a newer live job stays
  dead. Ids that are not dead are skipped; a re-sent call therefore replays nothing twice.
  KEYS[1] meta        hash   schema, seq counter
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] dead        zset   job ids, score = time of death (ms)
  KEYS[4] unique      hash   unique key -> job id
  KEYS[5] job_prefix  prefix job record hashes are job_prefix .. <id>
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] limit       int    most jobs replayed
  ARGV[3] count       int    number of ids that follow (0 = the oldest dead jobs)
  ARGV[4+] ids        list   job ids
  Returns: {status, number replayed}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(limit log N)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/read_job"
--- @include "lib/ready_score"
--- @include "lib/chunks"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local dead_key = KEYS[3]
local unique_key = KEYS[4]
local job_prefix = KEYS[5]
local now_arg = ARGV[1]
local limit = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local ids_at = 4

if not limit or limit < 1 or not count or #ARGV ~= ids_at - 1 + count then
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

local todo = {}
for i = 1, #ids do
  local f = read_job(job_prefix .. ids[i], 'state', 'prio', 'ukey')
  if f and f[1] == 'dead' then
    local holder = f[3] and redis.call('HGET', unique_key, f[3])
    local taken = false
    if holder and holder ~= ids[i] then
      local h = read_job(job_prefix .. holder, 'state')
      taken = h and (h[1] == 'ready' or h[1] == 'scheduled' or h[1] == 'leased')
    end
    if not taken then
      todo[#todo + 1] = {ids[i], f[2], f[3]}
    end
  end
end
if #todo == 0 then
  return {STATUS.OK, 0}
end

local seq = redis.call('HINCRBY', meta_key, 'seq', #todo) - #todo
local n = num(now)
local moved = {}
local ready_pairs = {}
for i = 1, #todo do
  local id, prio, ukey = todo[i][1], todo[i][2], todo[i][3]
  seq = seq + 1
  redis.call('HSET', job_prefix .. id, 'state', 'ready', 'attempts', '0', 'seq', num(seq),
    'run_at', n, 'ended', 'retry')
  redis.call('HDEL', job_prefix .. id, 'finished')
  if ukey then
    redis.call('HSET', unique_key, ukey, id)
  end
  moved[#moved + 1] = id
  ready_pairs[#ready_pairs + 1] = ready_score(prio, seq)
  ready_pairs[#ready_pairs + 1] = id
end
chunks({'ZREM', dead_key}, moved)
chunks({'ZADD', ready_key}, ready_pairs)
return {STATUS.OK, #moved}

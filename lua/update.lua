--[[ update: ready | scheduled -> ready | scheduled
  Changes the priority, payload or due time of a job that is waiting (ready or scheduled); a
  leased or finished job is refused with INVALID_STATE and left unchanged. A new due time in the
  future moves a ready job to the scheduled set; one in the past makes a scheduled job ready.
  KEYS[1] meta        hash   schema
  KEYS[2] ready       zset   job ids, score = ready_score(priority, seq)
  KEYS[3] scheduled   zset   job ids, score = due time (ms)
  KEYS[4] job_prefix  prefix job record hashes are job_prefix .. <id>
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] priority    int    new priority ('' = unchanged)
  ARGV[4] set_payload int    1 = replace the payload with ARGV[5]
  ARGV[5] payload     bytes  msgpack-encoded payload
  ARGV[6] run_at_ms   int    new due time ('' = unchanged)
  Returns: {status, {field, value, ...}}; refusals: {status, detail}
  Status: OK, NOT_FOUND, INVALID_STATE, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/num"
--- @include "lib/check_queue"
--- @include "lib/read_job"
--- @include "lib/ready_score"
--- @include "lib/wrong_type"

local meta_key = KEYS[1]
local ready_key = KEYS[2]
local scheduled_key = KEYS[3]
local job_prefix = KEYS[4]
local now_arg = ARGV[1]
local id = ARGV[2]
local priority_arg = ARGV[3]
local set_payload = ARGV[4] == '1'
local payload = ARGV[5]
local run_at_arg = ARGV[6]

if (priority_arg ~= '' and not tonumber(priority_arg))
    or (run_at_arg ~= '' and not tonumber(run_at_arg)) then
  return {STATUS.BAD_ARGUMENT, 'update'}
end
local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash', ready_key, 'zset', scheduled_key, 'zset'})
if err then
  return err
end
local key = job_prefix .. id
local f, bad = read_job(key, 'state', 'prio', 'seq', 'run_at')
if bad then
  return wrong_type(bad)
end
if not f then
  return {STATUS.NOT_FOUND, id}
end
if f[1] ~= 'ready' and f[1] ~= 'scheduled' then
  return {STATUS.INVALID_STATE, f[1]}
end

local prio = f[2]
if priority_arg ~= '' then
  prio = priority_arg
  redis.call('HSET', key, 'prio', prio)
end
if set_payload then
  redis.call('HSET', key, 'payload', payload)
end
local run_at = tonumber(f[4])
if run_at_arg ~= '' then
  run_at = tonumber(run_at_arg)
  redis.call('HSET', key, 'run_at', num(run_at))
end
if run_at > now then
  redis.call('ZREM', ready_key, id)
  redis.call('ZADD', scheduled_key, num(run_at), id)
  redis.call('HSET', key, 'state', 'scheduled')
else
  redis.call('ZREM', scheduled_key, id)
  redis.call('ZADD', ready_key, ready_score(prio, f[3]), id)
  redis.call('HSET', key, 'state', 'ready')
end
return {STATUS.OK, redis.call('HGETALL', key)}

--[[ progress: leased -> leased
  Records the handler's progress on a job whose lease the caller still holds; a stale or expired
  lease changes nothing. Writing the same value again is harmless (a client retry).
  KEYS[1] meta        hash   schema
  KEYS[2] jobs        hash   job id -> packed job record (lib/record)
  KEYS[3] events     stream the queue's events while they are on (lib/events)
  KEYS[4] wait_prefix prefix result waiters' counters and lists (lib/events)
  ARGV[1] now_ms      int    test clock override; '' = Redis TIME
  ARGV[2] id          str    job id
  ARGV[3] token       int    the caller's fencing token
  ARGV[4] progress    bytes  msgpack-encoded progress value
  Returns: {status}; refusals: {status, 1, detail}
  Status: OK, NOT_FOUND, LEASE_LOST, LEASE_EXPIRED, WRONG_TYPE, SCHEMA_MISMATCH, BAD_RECORD
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/now_ms"
--- @include "lib/check_queue"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/rec_blobs"
--- @include "lib/read_job"
--- @include "lib/lease_check"
--- @include "lib/events"

local meta_key = KEYS[1]
local jobs_key = KEYS[2]
local events_key = KEYS[3]
local wait_prefix = KEYS[4]
local now_arg = ARGV[1]
local id = ARGV[2]
local token = ARGV[3]
local progress = ARGV[4]

local now = now_ms(now_arg)
local err = check_queue({meta_key, 'hash'})
if err then
  return err
end
local t, _, bad = read_job(jobs_key, id)
if bad then
  return bad
end
local refusal = lease_check(t, token, now, 'progress', 1)
if refusal then
  return refusal
end
local e, r, _, payload = rec_blobs(t)
rec_set_blobs(t, e, r, progress, payload)
local rec = rec_pack(t)
redis.call('HSET', jobs_key, id, rec)
events(meta_key, events_key, wait_prefix, nil, now, 'progress', {id, rec})
return {STATUS.OK}

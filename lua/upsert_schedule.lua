--[[ upsert_schedule: (none) | schedule -> schedule
  Stores a schedule's definition once per version: a definition whose digest is the stored one
  changes nothing (a deploy declaring the same schedules, a re-sent call), and a changed one
  replaces the stored one only if that is still the version the client read (`expect`), so two
  writers never interleave. The runs, last run and pause of an existing schedule are kept; the
  pending tick becomes `next`, which the client computed from the new definition (the old
  pending tick when the timing did not change). Bounded: at most SCHED_CAPS.SCHEDULES
  schedules per queue, a definition of at most SCHED_CAPS.DEF_BYTES.
  KEYS[1] meta           hash   schema, lib_version
  KEYS[2] schedules      hash   schedule id -> packed schedule (lib/sched_record)
  KEYS[3] schedule_due   zset   schedule ids, score = next tick (ms); active schedules only
  KEYS[4] schedule_events stream one entry; signalled for every driver on a change
  ARGV[1] lib_version    str    redisq version, recorded in meta on the first write
  ARGV[2] id             str    schedule id
  ARGV[3] digest         str    SHA-1 (hex) of the definition
  ARGV[4] expect         str    digest of the version the client read; '' = none
  ARGV[5] next           int    the pending tick (ms); '' = none (the schedule has run its course)
  ARGV[6] created        int    creation time (ms), kept from the first write (every_ms anchor)
  ARGV[7] limit          int    most runs; '' = no limit
  ARGV[8] end_at         int    last tick time (ms); '' = none
  ARGV[9] definition     bytes  the encoded definition (opaque here)
  Returns: {status, outcome, record}; outcome 'same' (nothing written), 'written', or
           'conflict' (another version is stored; record = it, or '' when none)
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT, BAD_RECORD
  Cost: O(log N)
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/init_meta"
--- @include "lib/sched_caps"
--- @include "lib/sched_record"
--- @include "lib/sched_signal"

local meta_key = KEYS[1]
local schedules_key = KEYS[2]
local due_key = KEYS[3]
local events_key = KEYS[4]
local lib_version = ARGV[1]
local id = ARGV[2]
local digest = ARGV[3]
local expect = ARGV[4]
local next_tick = ARGV[5]
local created = ARGV[6]
local limit = ARGV[7]
local end_at = ARGV[8]
local definition = ARGV[9]

local function int_or_empty(v)
  return v == '' or string.match(v, '^%d+$') ~= nil
end
if id == '' or string.find(id, '\n', 1, true) then
  return {STATUS.BAD_ARGUMENT, 'id'}
end
if not string.match(digest, '^%x+$') then
  return {STATUS.BAD_ARGUMENT, 'digest'}
end
if not int_or_empty(next_tick) or not string.match(created, '^%d+$')
    or not int_or_empty(limit) or not int_or_empty(end_at) then
  return {STATUS.BAD_ARGUMENT, 'times'}
end
if #definition > SCHED_CAPS.DEF_BYTES then
  return {STATUS.BAD_ARGUMENT, 'definition', SCHED_CAPS.DEF_BYTES}
end
local err, is_new = check_queue({meta_key, 'hash', schedules_key, 'hash', due_key, 'zset'})
if err then
  return err
end
local stored = redis.call('HGET', schedules_key, id)
local old
if stored then
  old = sched_parse(stored)
  if not old then
    return {STATUS.BAD_RECORD, schedules_key, id}
  end
  if old[S.DIGEST] == digest then
    return {STATUS.OK, 'same', stored}
  end
  if old[S.DIGEST] ~= expect then
    return {STATUS.OK, 'conflict', stored}
  end
else
  if expect ~= '' then
    return {STATUS.OK, 'conflict', ''}
  end
  if redis.call('HLEN', schedules_key) >= SCHED_CAPS.SCHEDULES then
    return {STATUS.BAD_ARGUMENT, 'schedules', SCHED_CAPS.SCHEDULES}
  end
end

local paused, runs, last = '0', '0', ''
if old then
  paused, runs, last, created = old[S.PAUSED], old[S.RUNS], old[S.LAST], old[S.CREATED]
end
local record = sched_pack({digest, paused, runs, last, next_tick, created, limit, end_at,
  definition})
redis.call('HSET', schedules_key, id, record)
if paused == '0' and next_tick ~= '' then
  redis.call('ZADD', due_key, next_tick, id)
else
  redis.call('ZREM', due_key, id)
end
if is_new then
  init_meta(meta_key, lib_version)
end
sched_signal(events_key, id)
return {STATUS.OK, 'written', record}

--- @include "lib/status"
--- @include "lib/num"
--- @include "lib/chunks"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/read_spend"
--- @include "lib/write_jobs"
--- @include "lib/ready_score"
--- @include "lib/wrong_type"
--- @include "lib/key_types"
--- @include "lib/quarantine"
-- Moves up to `limit` scheduled jobs whose due time has come into the ready set, at the
-- position their priority and original enqueue sequence give them, within the call's byte
-- budget `spend` (lib/budget). Index entries that point at no job record are dropped; a record
-- that does not parse goes to the dead set (lib/quarantine). Returns the number promoted, the
-- number set aside, and whether due jobs may be left (the limit or the budget was reached); or
-- nil and an error reply when a key holds another type (nothing of this step is written then).
-- With `gctx` (lib/groups: the queue has grouped jobs), a grouped job goes to its group.
local function promote_due(scheduled_key, ready_key, jobs_key, dead_key, now, limit, spend, gctx)
  if spend.left <= 0 then
    return 0, 0, true
  end
  local ids = redis.pcall('ZRANGEBYSCORE', scheduled_key, '-inf', num(now), 'LIMIT', 0, limit)
  if ids['err'] then
    return nil, wrong_type(scheduled_key, ids)
  end
  if #ids == 0 then
    return 0, 0, false
  end
  if key_types({ready_key, 'zset'}) then
    return nil, wrong_type(ready_key)
  end
  local recs, err = read_spend(jobs_key, ids, spend, false)
  if not recs then
    return nil, err
  end
  local more = #ids == limit or #recs < #ids
  for i = #ids, #recs + 1, -1 do
    ids[i] = nil  -- left for a later call
  end
  local moves = {}
  local writes = {}
  local spoiled = {}
  local groups = gctx and gctx.of(ids)
  local grouped = {}
  for i = 1, #ids do
    if recs[i] then
      local t = rec_parse(recs[i])
      if t then
        t[F.STATE] = 'ready'
        if groups and groups[i] then
          grouped[#grouped + 1] = {groups[i], t, ids[i]}
        else
          moves[#moves + 1] = ready_score(t[F.PRIO], t[F.SEQ])
          moves[#moves + 1] = ids[i]
        end
        writes[#writes + 1] = ids[i]
        writes[#writes + 1] = rec_pack(t)
      else
        spoiled[#spoiled + 1] = ids[i]
      end
    end
  end
  if #spoiled > 0 and key_types({dead_key, 'zset'}) then
    return nil, wrong_type(dead_key)
  end
  if #writes > 0 then
    write_jobs(jobs_key, writes)
    if #moves > 0 then
      chunks({'ZADD', ready_key}, moves)
    end
    for i = 1, #grouped do
      local t = grouped[i][2]
      gctx.ready(grouped[i][1], t[F.PRIO], t[F.SEQ], grouped[i][3])
    end
  end
  chunks({'ZREM', scheduled_key}, ids)
  return #moves / 2 + #grouped, quarantine(dead_key, now, spoiled), more
end

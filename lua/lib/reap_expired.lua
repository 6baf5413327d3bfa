--- @include "lib/status"
--- @include "lib/num"
--- @include "lib/chunks"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/rec_blobs"
--- @include "lib/read_spend"
--- @include "lib/write_jobs"
--- @include "lib/ready_score"
--- @include "lib/clear_unique"
--- @include "lib/key_types"
--- @include "lib/wrong_type"
--- @include "lib/quarantine"
--- @include "lib/reap_events"
-- Returns up to `limit` jobs whose lease deadline has passed to the ready set, or to the dead
-- set when their attempts are used up, within the call's byte budget `spend` (lib/budget). The
-- lease's token stays on the record (ended is 'reap/<token>'), so a late ack, nack or renew by
-- the old holder is refused. A record that does not parse goes to the dead set as it is
-- (lib/quarantine). Returns reaped, dead-lettered (set-aside ones included), and whether
-- expired leases may be left (the limit or the budget was reached); or nil, nil and an error
-- reply when a key holds another type (then nothing of this step is written). With keys.grp
-- (lib/groups), a grouped job's lease frees its group's slot and a ready one goes to its group.
-- With keys.meta, the reaped jobs' events are written (reap_events).
local function reap_expired(keys, now, limit, spend)
  if spend.left <= 0 then
    return 0, 0, true
  end
  local ids = redis.pcall('ZRANGEBYSCORE', keys.leased, '-inf', num(now), 'LIMIT', 0, limit)
  if ids['err'] then
    return nil, nil, wrong_type(keys.leased, ids)
  end
  if #ids == 0 then
    return 0, 0, false
  end
  local recs, err = read_spend(keys.jobs, ids, spend, false)
  if not recs then
    return nil, nil, err
  end
  local more = #ids == limit or #recs < #ids
  for i = #ids, #recs + 1, -1 do
    ids[i] = nil  -- left for a later call
  end
  local to_ready = {}
  local writes = {}
  local dead = {}
  local uniques = {}
  local spoiled = {}
  local n = num(now)
  local groups = keys.grp and keys.grp.of(ids)
  local grouped = {}
  for i = 1, #ids do
    local t = recs[i] and rec_parse(recs[i])
    if recs[i] and not t then
      spoiled[#spoiled + 1] = ids[i]
    elseif t then
      t[F.ENDED] = 'reap/' .. t[F.TOKEN]
      if tonumber(t[F.ATTEMPTS]) >= tonumber(t[F.MAX]) then
        t[F.STATE] = 'dead'
        t[F.FINISHED] = n
        local _, result, progress, payload = rec_blobs(t)
        rec_set_blobs(t, 'lease expired on attempt ' .. t[F.ATTEMPTS] .. ' of ' .. t[F.MAX],
          result, progress, payload)
        dead[#dead + 1] = n
        dead[#dead + 1] = ids[i]
        uniques[#uniques + 1] = t[F.UKEY]
        uniques[#uniques + 1] = ids[i]
      else
        t[F.STATE] = 'ready'
        if not (groups and groups[i]) then
          to_ready[#to_ready + 1] = ready_score(t[F.PRIO], t[F.SEQ])
          to_ready[#to_ready + 1] = ids[i]
        end
      end
      if groups and groups[i] then
        grouped[#grouped + 1] = {groups[i], t, ids[i]}
      end
      writes[#writes + 1] = ids[i]
      writes[#writes + 1] = rec_pack(t)
    end
  end
  local bad = key_types({keys.ready, 'zset', keys.dead, 'zset', keys.unique, 'hash'})
  if bad then
    return nil, nil, wrong_type(bad)
  end
  if #writes > 0 then
    write_jobs(keys.jobs, writes)
    if keys.meta then
      reap_events(keys, now, writes)
    end
  end
  if #to_ready > 0 then
    chunks({'ZADD', keys.ready}, to_ready)
  end
  if #dead > 0 then
    chunks({'ZADD', keys.dead}, dead)
    clear_unique(keys.unique, uniques)
  end
  chunks({'ZREM', keys.leased}, ids)
  local back = 0
  for i = 1, #grouped do
    local g, t, id = grouped[i][1], grouped[i][2], grouped[i][3]
    if t[F.STATE] == 'ready' then
      back = back + 1
      redis.call('ZADD', keys.grp.gready, 0, keys.grp.member(g, t[F.PRIO], t[F.SEQ], id))
    end
    keys.grp.unlease(g, id)
  end
  return #to_ready / 2 + back, #dead / 2 + quarantine(keys.dead, now, spoiled), more
end

--- @include "lib/num"
--- @include "lib/chunks"
--- @include "lib/record"
--- @include "lib/rec_pack"
--- @include "lib/read_spend"
--- @include "lib/write_jobs"
--- @include "lib/events"
--- @include "lib/clear_unique"
--- @include "lib/key_types"
--- @include "lib/wrong_type"
--- @include "lib/trim_retention"
-- Cancels jobs whose expiry (enqueue's expires_ms) has passed before they started, with the
-- reason 'expired' (the record's ended field and its error text), up to `limit` per call and
-- within the call's byte budget `spend` (lib/budget). `x` holds the keys expiring (zset of
-- '<seq>/<id>' scored by expiry time), cancelled, meta, and the cancelled set's retention
-- (keep, age_ms); `keys` holds ready, scheduled, unique and jobs. An entry applies only to
-- the job it was written for (same enqueue sequence) while it waits unstarted (ready or
-- scheduled, no attempt counted); any other entry (the job ran, finished, was deleted, or its
-- id was reused) is dropped. A queue that never used expires_ms pays one ZRANGEBYSCORE of a
-- missing key. Returns the number cancelled and whether expired entries may be left (the
-- limit or the budget was reached: the caller leases nothing then); or nil and an error reply
-- when a key holds another type (nothing of this step is written then).
local function expire_due(keys, x, now, limit, spend)
  local due = redis.pcall('ZRANGEBYSCORE', x.expiring, '-inf', num(now), 'LIMIT', 0, limit)
  if due['err'] then
    return nil, wrong_type(x.expiring, due)
  end
  if #due == 0 then
    return 0, false
  end
  if spend.left <= 0 then
    return 0, true
  end
  local bad_key = key_types({x.cancelled, 'zset', keys.ready, 'zset',
    keys.scheduled, 'zset', keys.unique, 'hash'})
  if bad_key then
    return nil, wrong_type(bad_key)
  end
  local ids, seqs = {}, {}
  for i = 1, #due do
    local seq, id = string.match(due[i], '^(%d+)/(.+)$')
    ids[i] = id or ''
    seqs[i] = seq
  end
  local recs, err = read_spend(keys.jobs, ids, spend, false)
  if not recs then
    return nil, err
  end
  local more = #due == limit or #recs < #ids
  local n = num(now)
  local writes, from_ready, from_scheduled, scored, ukeys, gone = {}, {}, {}, {}, {}, {}
  local grouped = {}  -- (lib/groups: an expired grouped job leaves its group)
  for i = 1, #recs do
    gone[i] = due[i]
    local t = recs[i] and rec_parse(recs[i])
    local state = t and t[F.STATE]
    if t and t[F.SEQ] == seqs[i] and t[F.ATTEMPTS] == '0'
        and (state == 'ready' or state == 'scheduled') then
      local id = ids[i]
      if keys.grp then
        grouped[#grouped + 1] = {id, state == 'ready' and keys.grp.member('', t[F.PRIO],
          t[F.SEQ], id)}
      end
      if state == 'ready' then
        from_ready[#from_ready + 1] = id
      else
        from_scheduled[#from_scheduled + 1] = id
      end
      t[F.STATE] = 'cancelled'
      t[F.FINISHED] = n
      t[F.ENDED] = 'expired'
      t[F.TAIL] = 'expired' .. string.sub(t[F.TAIL], tonumber(t[F.LEN_ERROR]) + 1)
      t[F.LEN_ERROR] = '7'
      writes[#writes + 1] = id
      writes[#writes + 1] = rec_pack(t)
      scored[#scored + 1] = n
      scored[#scored + 1] = id
      ukeys[#ukeys + 1] = t[F.UKEY]
      ukeys[#ukeys + 1] = id
    end
  end
  chunks({'ZREM', x.expiring}, gone)
  if #writes == 0 then
    return 0, more
  end
  if #from_ready > 0 then
    chunks({'ZREM', keys.ready}, from_ready)
  end
  if #from_scheduled > 0 then
    chunks({'ZREM', keys.scheduled}, from_scheduled)
  end
  for i = 1, #grouped do
    local id = grouped[i][1]
    local g = redis.call('HGET', keys.grp.gjob, id)
    if g then
      local m = grouped[i][2]  -- (its member for group '': prefixed by g, the group's)
      keys.grp.forget(g, m and g .. m, id)
    end
  end
  write_jobs(keys.jobs, writes)
  if keys.meta then
    events(keys.meta, keys.events, keys.wait, nil, now, 'cancelled', writes)  -- (lib/events)
  end
  chunks({'ZADD', x.cancelled}, scored)
  clear_unique(keys.unique, ukeys)
  redis.call('HINCRBY', x.meta, 'expired', #scored / 2)
  trim_retention(x.cancelled, keys.jobs, x.keep, x.age_ms, now, limit)
  return #scored / 2, more
end

--- @include "lib/num"
--- @include "lib/chunks"
--- @include "lib/caps"
--- @include "lib/read_some"
-- Keeps a finished-jobs set (done, dead, cancelled) within its count and age limits, deleting at
-- most `batch` job records per call (one HDEL from the jobs hash), never more than CAPS.TRIM,
-- and no more than CAPS.TRIM_BYTES of records (beyond the first): freeing memory takes time too,
-- and old records may be much larger than the ones a call adds. The sizes come from reading the
-- records under that budget (lib/read_some). Each finishing script adds less than it may remove,
-- so the set converges to its limits under any steady load. `card`, when the caller knows
-- it, is the set's size (saves a ZCARD). `groups_key`, when given, is the queue's job -> group
-- hash (lib/groups), whose entries of the removed jobs go too (the dead set: a dead job keeps
-- its group for retry_dead until trimmed). `edges`, when given, is the queue's deps prefix (a
-- queue that used dependencies): the removed jobs' flow edges (u/<id>, d/<id>) go too, so a
-- workflow's inspection records last no longer than its records. Returns the number removed.
local function trim_drop(jobs_key, groups_key, edges, ids)
  chunks({'HDEL', jobs_key}, ids)
  if groups_key then
    chunks({'HDEL', groups_key}, ids)
  end
  if edges then
    local keys = {}
    for i = 1, #ids do
      keys[#keys + 1] = edges .. 'u/' .. ids[i]
      keys[#keys + 1] = edges .. 'd/' .. ids[i]
    end
    chunks({'DEL'}, keys)
  end
end
local function trim_retention(set_key, jobs_key, keep, max_age_ms, now, batch, card, groups_key,
    edges)
  batch = math.min(batch, CAPS.TRIM)
  local removed = 0
  local bytes_left = CAPS.TRIM_BYTES
  local excess = (card or redis.call('ZCARD', set_key)) - keep
  if excess > 0 then
    if excess > batch then
      excess = batch
    end
    local ids = redis.call('ZRANGE', set_key, 0, excess - 1)
    local recs, n, used = read_some(jobs_key, ids, bytes_left)
    if not recs then
      return 0  -- the jobs hash holds another type: the caller checked it; trim nothing
    end
    if n < #ids then
      ids = {unpack(ids, 1, n)}
    end
    trim_drop(jobs_key, groups_key, edges, ids)
    redis.call('ZREMRANGEBYRANK', set_key, 0, n - 1)
    removed = n
    bytes_left = bytes_left - used
    if n < excess then
      return removed  -- the byte budget is spent
    end
  end
  if max_age_ms > 0 and removed < batch and bytes_left > 0 then
    local ids = redis.call('ZRANGEBYSCORE', set_key, '-inf', num(now - max_age_ms),
      'LIMIT', 0, batch - removed)
    if #ids > 0 then
      local recs, n, used = read_some(jobs_key, ids, bytes_left)
      if not recs then
        return removed
      end
      if removed > 0 and n == 1 and used > bytes_left then
        n = 0  -- (read_some always covers its first record; this call has trimmed already)
      end
      if n < #ids then
        ids = {unpack(ids, 1, n)}
      end
      trim_drop(jobs_key, groups_key, edges, ids)
      chunks({'ZREM', set_key}, ids)
      removed = removed + n
    end
  end
  return removed
end

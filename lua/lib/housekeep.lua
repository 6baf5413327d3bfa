--- @include "lib/promote_due"
--- @include "lib/reap_expired"
--- @include "lib/trim_retention"
--- @include "lib/expire_due"
-- The queue's housekeeping, bounded by `batch` and by the call's byte budget `spend`
-- (lib/budget): promotes due scheduled jobs, returns expired leases to ready (or dead, then
-- trims the dead set); records that do not parse go to the dead set (lib/quarantine). `keys`
-- holds ready, scheduled, leased, dead, unique and jobs, and grp (lib/groups) when the queue
-- has grouped jobs. Returns promoted, reaped,
-- dead-lettered (set-aside ones included) and whether work may be left (due jobs or expired
-- leases beyond the batch or the budget: the caller tells its client to come back at once);
-- or nil and an error reply when a key holds another type (each step validates before it
-- writes). With `x` (see lib/expire_due), it first cancels jobs whose expiry passed before they
-- started; a fifth value then says whether expired entries were left (the caller must lease
-- nothing in this call, or it could hand out an expired job).
local function housekeep(keys, now, batch, dead_keep, dead_age_ms, spend, x)
  local expired_out = false
  if x then
    local expired
    expired, expired_out = expire_due(keys, x, now, batch, spend)
    if not expired then
      return nil, expired_out
    end
  end
  local promoted, set_aside, due_left = promote_due(keys.scheduled, keys.ready, keys.jobs,
    keys.dead, now, batch, spend, keys.grp)
  if not promoted then
    return nil, set_aside
  end
  local reaped, died, expired_left = reap_expired(keys, now, batch, spend)
  if not reaped then
    return nil, expired_left
  end
  died = died + set_aside
  if died > 0 then
    trim_retention(keys.dead, keys.jobs, dead_keep, dead_age_ms, now, batch, nil,
      keys.grp and keys.grp.gjob)
  end
  return promoted, reaped, died, due_left or expired_left or expired_out, expired_out
end

--- @include "lib/promote_due"
--- @include "lib/reap_expired"
--- @include "lib/trim_retention"
-- The queue's housekeeping, bounded by `batch`: promotes due scheduled jobs, returns expired
-- leases to ready (or dead, then trims the dead set); records that do not parse go to the dead
-- set (lib/quarantine). `keys` holds ready, scheduled, leased, dead, unique and jobs. Returns
-- promoted, reaped, dead-lettered (set-aside ones included); or nil and an error reply when a
-- key holds another type (each step validates before it writes).
local function housekeep(keys, now, batch, dead_keep, dead_age_ms)
  local promoted, set_aside = promote_due(keys.scheduled, keys.ready, keys.jobs, keys.dead, now,
    batch)
  if not promoted then
    return nil, set_aside
  end
  local reaped, died, reap_err = reap_expired(keys, now, batch)
  if not reaped then
    return nil, reap_err
  end
  died = died + set_aside
  if died > 0 then
    trim_retention(keys.dead, keys.jobs, dead_keep, dead_age_ms, now, batch)
  end
  return promoted, reaped, died
end

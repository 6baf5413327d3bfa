--- @include "lib/status"
-- Decides whether the caller holding `token` may act on a job, from the record's state, token,
-- ended and deadline fields. Returns nil when the lease is valid, 'again' when this very call
-- already succeeded (a client retry: ended records '<verb>/<token>' of the lease's end and
-- survives later claims), or an error reply. A stale token never changes anything.
local function lease_check_fields(state, held, ended, deadline, token, now, verb, index)
  if held ~= token or state ~= 'leased' then
    if ended == verb .. '/' .. token then
      return 'again'
    end
    return {STATUS.LEASE_LOST, index, state}
  end
  if tonumber(deadline) <= now then
    return {STATUS.LEASE_EXPIRED, index, deadline}
  end
  return nil
end

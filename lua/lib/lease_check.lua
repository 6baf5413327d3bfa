--- @include "lib/status"
--- @include "lib/record"
-- Decides whether the caller holding `token` may act on a parsed job record (lib/record).
-- Returns nil when the lease is valid, 'again' when this very call already succeeded (a client
-- retry: F.ENDED records '<verb>/<token>' of the lease's end and survives later claims), or an
-- error reply. A stale token never changes anything.
local function lease_check(t, token, now, verb, index)
  if not t then
    return {STATUS.NOT_FOUND, index}
  end
  if t[F.TOKEN] ~= token or t[F.STATE] ~= 'leased' then
    if t[F.ENDED] == verb .. '/' .. token then
      return 'again'
    end
    return {STATUS.LEASE_LOST, index, t[F.STATE]}
  end
  if tonumber(t[F.DEADLINE]) <= now then
    return {STATUS.LEASE_EXPIRED, index, t[F.DEADLINE]}
  end
  return nil
end

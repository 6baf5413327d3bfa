--- @include "lib/status"
-- Decides whether the caller holding `token` may act on a job read as {state, token, ended,
-- deadline, ...}. Returns nil when the lease is valid, 'again' when this very call already
-- succeeded (a client retry: 'ended' records '<verb>/<token>' of the lease's end and survives
-- later claims), or an error reply. A stale token never changes anything.
local function lease_check(f, token, now, verb, index)
  if not f then
    return {STATUS.NOT_FOUND, index}
  end
  if f[2] ~= token or f[1] ~= 'leased' then
    if f[3] == verb .. '/' .. token then
      return 'again'
    end
    return {STATUS.LEASE_LOST, index, f[1]}
  end
  if tonumber(f[4]) <= now then
    return {STATUS.LEASE_EXPIRED, index, f[4]}
  end
  return nil
end

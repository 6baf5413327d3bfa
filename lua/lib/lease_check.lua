--- @include "lib/status"
--- @include "lib/record"
--- @include "lib/lease_check_fields"
-- Decides whether the caller holding `token` may act on a parsed job record (lib/record), by
-- lib/lease_check_fields; a missing record is NOT_FOUND.
local function lease_check(t, token, now, verb, index)
  if not t then
    return {STATUS.NOT_FOUND, index}
  end
  return lease_check_fields(t[F.STATE], t[F.TOKEN], t[F.ENDED], t[F.DEADLINE], token, now, verb,
    index)
end

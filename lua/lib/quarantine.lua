--- @include "lib/chunks"
-- Sets aside jobs whose stored record does not parse: their ids go to the dead set (score:
-- `now`), so that one corrupt record never blocks a queue. Every sweep that meets one (claim,
-- claim_and_ack, promotion of due jobs, the reaper) calls this instead of refusing; the caller
-- removes the ids from their own set and has checked that the dead set is a sorted set. The
-- record itself is left byte for byte (get raises BadRecord for it, delete removes it, and the
-- dead set's retention trims it). Returns how many were set aside.
local function quarantine(dead_key, now, ids)
  if #ids == 0 then
    return 0
  end
  local n = string.format('%d', now)
  local scored = {}
  for i = 1, #ids do
    scored[2 * i - 1] = n
    scored[2 * i] = ids[i]
  end
  chunks({'ZADD', dead_key}, scored)
  return #ids
end

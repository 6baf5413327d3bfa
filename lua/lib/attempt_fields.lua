--- @include "lib/attempt_caps"
-- The fields of the jobs hash that go when the records of `ids` go: each id, then the
-- ATTEMPT_CAPS.KEEP attempt-history fields of every id (lib/attempt_entry). Used in the one
-- HDEL that removes the records, so removing a job costs no extra command, whether it ever
-- failed or not (HDEL skips absent fields).
local function attempt_fields(ids)
  local out = {}
  local n = #ids
  for i = 1, n do
    out[i] = ids[i]
  end
  for i = 1, n do
    local base = ids[i] .. '\0a'
    for slot = 0, ATTEMPT_CAPS.KEEP - 1 do
      n = n + 1
      out[n] = base .. slot
    end
  end
  return out
end

--- @include "lib/attempt_caps"
-- A completed record that ran once, with no error and run_at = created (lib/record): such a
-- job never failed, so it has no attempt history (a job replayed by retry_dead gets
-- run_at = the replay's time, and keeps the error it died with).
local ATTEMPT_CLEAN = '^j3\ncompleted\n1\n' .. string.rep('[^\n]*\n', 10)
  .. '(%d+)\n(%d+)\n[^\n]*\n[^\n]*\n0\n'

-- The fields of the jobs hash that go when the records of `ids` go: each id, then the
-- ATTEMPT_CAPS.KEEP attempt-history fields (lib/attempt_entry) of every id that may have
-- some. Used in the one HDEL that removes the records, so removing a job costs no extra
-- command (HDEL skips absent fields). With `recs` (the stored records, aligned with ids, as
-- lib/read_some gives them), a job whose record shows it never failed adds no field: the
-- completed jobs that retention trims on every ack cost nothing more.
local function attempt_fields(ids, recs)
  local out = {}
  local n = #ids
  for i = 1, n do
    out[i] = ids[i]
  end
  for i = 1, #ids do
    local rec = recs and recs[i]
    local clean = false
    if rec and string.sub(rec, 1, 15) == 'j3\ncompleted\n1\n' then
      local created, run_at = string.match(rec, ATTEMPT_CLEAN)
      clean = created ~= nil and created == run_at
    end
    if not clean then
      local base = ids[i] .. '\0a'
      for slot = 0, ATTEMPT_CAPS.KEEP - 1 do
        n = n + 1
        out[n] = base .. slot
      end
    end
  end
  return out
end

--- @include "lib/record"
-- Builds the stored string of a parsed (and changed) record; see lib/record.
local function rec_pack(t)
  return 'j3\n' .. table.concat(t, '\n', 1, 20)
end

--- @include "lib/status"
-- Builds the refusal for a job record that does not parse (lib/record): the jobs hash, the id.
local function bad_record(jobs_key, id)
  return {STATUS.BAD_RECORD, jobs_key, id}
end

--- @include "lib/num"
-- The stored record of a job just created (layout 3 of lib/record, as enqueue writes it): no
-- attempt, lease, error, result or progress yet. For scripts other than enqueue that create
-- jobs (a schedule's tick); the text fields are validated by the caller.
local function job_record(state, lease_ms, ukey, prio, max, created, run_at, seq, name, payload)
  return 'j3\n' .. state .. '\n0\n\n\n\n\n\n\n' .. lease_ms .. '\n' .. ukey .. '\n' .. prio
    .. '\n' .. max .. '\n' .. num(created) .. '\n' .. num(run_at) .. '\n' .. num(seq) .. '\n'
    .. name .. '\n0\n0\n0\n' .. payload
end

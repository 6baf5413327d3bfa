--- @include "lib/deps_settle"
-- The dependency step of a transition that ends jobs (ack, nack to dead, cancel, delete): for
-- each id in `ids`, settles its children (lib/deps_settle) within one budget of DEPS_BATCH
-- children per call in all; the children of the ids beyond it are left on the todo list for
-- the next calls (lib/deps_drain). Only called when the queue's meta says it has dependencies
-- (field deps), so a queue without them pays nothing. `dk` holds the keys (lib/deps_apply).
local DEPS_BATCH = 100
local function deps_finish(dk, ids, outcome, now)
  local left = DEPS_BATCH
  for i = 1, #ids do
    left = left - deps_settle(dk, ids[i], outcome, now, left)
  end
end

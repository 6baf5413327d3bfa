--- @include "lib/num"
-- Score of a job in the ready set: higher priority first, then FIFO by enqueue sequence.
-- Priorities are in [-1000, 1000] and sequences below 2^42, so the score stays an exact
-- integer below 2^53: (1000 - priority) * 2^42 + seq.
local function ready_score(priority, seq)
  return num((1000 - tonumber(priority)) * 4398046511104 + tonumber(seq))
end

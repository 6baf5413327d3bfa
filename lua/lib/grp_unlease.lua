--- @include "lib/grp_recheck"
-- A grouped job's lease ended (whatever comes next for the job): its slot is free again.
local function grp_unlease(ctx, g, id)
  if redis.call('ZREM', ctx.gleased, g .. '\0' .. id) == 1 then
    grp_recheck(ctx, g)
  end
end

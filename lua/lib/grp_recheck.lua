--- @include "lib/grp_limit"
--- @include "lib/grp_next_turn"
--- @include "lib/grp_leased_count"
--- @include "lib/grp_head"
-- Gives group g a turn if it may lease now and has none: ready jobs, fewer leased than the limit.
local function grp_recheck(ctx, g)
  if redis.call('ZSCORE', ctx.gturn, g) then
    return
  end
  if grp_leased_count(ctx, g) >= grp_limit(ctx) or not grp_head(ctx, g) then
    return
  end
  redis.call('ZADD', ctx.gturn, grp_next_turn(ctx), g)
end

--- @include "lib/record"
--- @include "lib/grp_member"
--- @include "lib/grp_recheck"
-- A grouped job becomes ready (the parsed record t gives its place).
local function grp_ready(ctx, g, t, id)
  redis.call('ZADD', ctx.gready, 0, grp_member(g, t[F.PRIO], t[F.SEQ], id))
  grp_recheck(ctx, g)
end

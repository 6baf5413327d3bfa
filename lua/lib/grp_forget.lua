--- @include "lib/grp_unlease"
-- A grouped job leaves the queue's live states for good (completed, cancelled, deleted): its
-- lease or its waiting place (`member` of gready, when the caller knows it: lib/grp_member)
-- goes, and so does its group entry.
local function grp_forget(ctx, g, member, id)
  if member then
    redis.call('ZREM', ctx.gready, member)
  end
  grp_unlease(ctx, g, id)
  redis.call('HDEL', ctx.gjob, id)
end

--- @include "lib/groups"
-- A context for one script call: the keys, and the limit and next turn read when needed.
local function grp_ctx(meta_key, gready, gturn, gleased, gjob)
  return {meta = meta_key, gready = gready, gturn = gturn, gleased = gleased, gjob = gjob}
end

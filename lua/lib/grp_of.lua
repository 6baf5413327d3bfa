-- The groups of `ids` (false where ungrouped), or nil when none has one.
local function grp_of(ctx, ids)
  if not ctx or #ids == 0 then
    return nil
  end
  local found = redis.call('HMGET', ctx.gjob, unpack(ids))
  for i = 1, #ids do
    if found[i] then
      return found
    end
  end
  return nil
end

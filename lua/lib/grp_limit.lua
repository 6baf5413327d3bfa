-- The per-group limit (math.huge: none).
local function grp_limit(ctx)
  if not ctx.limit then
    ctx.limit = tonumber(redis.call('HGET', ctx.meta, 'gconc')) or math.huge
  end
  return ctx.limit
end

local function grp_leased_count(ctx, g)
  return redis.call('ZLEXCOUNT', ctx.gleased, '[' .. g .. '\0', '(' .. g .. '\1')
end

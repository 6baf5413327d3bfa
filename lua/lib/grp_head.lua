local function grp_head(ctx, g)
  return redis.call('ZRANGEBYLEX', ctx.gready, '[' .. g .. '\0', '(' .. g .. '\1', 'LIMIT', 0, 1)[1]
end

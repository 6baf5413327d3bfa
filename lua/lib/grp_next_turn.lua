-- The next turn: after every turn given so far.
local function grp_next_turn(ctx)
  if not ctx.turn then
    local last = redis.call('ZRANGE', ctx.gturn, -1, -1, 'WITHSCORES')
    ctx.turn = tonumber(last[2]) or 0
  end
  ctx.turn = ctx.turn + 1
  return string.format('%.0f', ctx.turn)
end

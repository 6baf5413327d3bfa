--- @include "lib/groups"
-- The groups of one script call (lib/groups): the keys, and the helpers as fields of one
-- table, so that a call on a queue without groups builds none of them (only this function).
-- The limit and the next turn are read once, when first needed.
local function grp_ctx(meta_key, gready, gturn, gleased, gjob)
  local ctx = {gready = gready, gjob = gjob}
  local rcall, fmt = redis.call, string.format
  local limit, turn

  -- A grouped ready job's member of gready: group, its ready score (16 digits), id.
  function ctx.member(g, prio, seq, id)
    return g .. '\0' .. fmt('%016.0f', (1000 - tonumber(prio)) * 4398046511104 + tonumber(seq))
      .. id
  end

  -- The per-group limit (math.huge: none).
  function ctx.limit()
    if not limit then
      limit = tonumber(rcall('HGET', meta_key, 'gconc')) or math.huge
    end
    return limit
  end

  -- The next turn: after every turn given so far.
  function ctx.next_turn()
    if not turn then
      turn = tonumber(rcall('ZRANGE', gturn, -1, -1, 'WITHSCORES')[2]) or 0
    end
    turn = turn + 1
    return fmt('%.0f', turn)
  end

  -- How many jobs of group g are leased now.
  function ctx.count(g)
    return rcall('ZLEXCOUNT', gleased, '[' .. g .. '\0', '(' .. g .. '\1')
  end

  -- The gready member of group g's first job in claim order, or nil.
  function ctx.head(g)
    return rcall('ZRANGEBYLEX', gready, '[' .. g .. '\0', '(' .. g .. '\1', 'LIMIT', 0, 1)[1]
  end

  -- Gives group g a turn if it may lease now and has none: ready jobs, fewer leased than the
  -- limit.
  function ctx.recheck(g)
    if rcall('ZSCORE', gturn, g) or ctx.count(g) >= ctx.limit() or not ctx.head(g) then
      return
    end
    rcall('ZADD', gturn, ctx.next_turn(), g)
  end

  -- The groups of `ids` (false where ungrouped), or nil when none has one.
  function ctx.of(ids)
    if #ids == 0 then
      return nil
    end
    local found = rcall('HMGET', gjob, unpack(ids))
    for i = 1, #ids do
      if found[i] then
        return found
      end
    end
    return nil
  end

  -- A grouped job becomes ready, at the place its priority and enqueue sequence give it.
  function ctx.ready(g, prio, seq, id)
    rcall('ZADD', gready, 0, ctx.member(g, prio, seq, id))
    ctx.recheck(g)
  end

  -- A grouped job's lease ended (whatever comes next for the job): its slot is free again.
  function ctx.unlease(g, id)
    if rcall('ZREM', gleased, g .. '\0' .. id) == 1 then
      ctx.recheck(g)
    end
  end

  -- A grouped job leaves the queue's live states for good (completed, cancelled, deleted):
  -- its lease or its waiting place (`member`, when the caller knows it) goes, and so does its
  -- group entry.
  function ctx.forget(g, member, id)
    if member then
      rcall('ZREM', gready, member)
    end
    ctx.unlease(g, id)
    rcall('HDEL', gjob, id)
  end

  return ctx
end

--- @include "lib/record"
-- Concurrency groups (docs/groups.md). A job enqueued with a group waits in the queue's gready
-- set instead of ready, and claim serves the groups round-robin, at most `gconc` leased jobs per
-- group. Every structure is a fixed key of the queue (under its hash tag), so a script reaches
-- any group through the keys it is passed:
--   gready   zset  score 0, member <group> \0 <ready score, 16 digits> <id>: a group's jobs in
--                  claim order (priority, then FIFO), its head read with ZRANGEBYLEX, O(log N)
--   gturn    zset  group -> turn: the groups that may lease now (ready jobs, and fewer leased
--                  than the limit), claimed lowest turn first; a served group takes the next
--                  turn after the highest, so groups are served round-robin. The member ''
--                  stands for the queue's ungrouped jobs (ready) while groups take turns.
--   gleased  zset  score 0, member <group> \0 <id>: the grouped jobs leased now; a group's
--                  count is a ZLEXCOUNT. Every script that ends a lease removes its member.
--   gjob     hash  job id -> group, from enqueue until the job completes, is cancelled or
--                  deleted (a dead job keeps it, so retry_dead puts it back in its group)
--   meta     hash  gconc (the limit per group; absent = none), conc (leases of the queue at
--                  most; absent = none), groups ('1' once a grouped job was enqueued)
-- Group names are 1 to 128 characters without control characters (checked by the client), so
-- '\0' ends a group inside a member and '\1' bounds its range. A gready member whose job is no
-- longer ready (cancelled, deleted) is dropped by the claim that meets it.

-- A context for one script call: the keys, and the limit and next turn read when needed.
local function grp_ctx(meta_key, gready, gturn, gleased, gjob)
  return {meta = meta_key, gready = gready, gturn = gturn, gleased = gleased, gjob = gjob}
end

local function grp_member(g, prio, seq, id)
  return g .. '\0' .. string.format('%016.0f', (1000 - tonumber(prio)) * 4398046511104
    + tonumber(seq)) .. id
end

-- The per-group limit (math.huge: none).
local function grp_limit(ctx)
  if not ctx.limit then
    ctx.limit = tonumber(redis.call('HGET', ctx.meta, 'gconc')) or math.huge
  end
  return ctx.limit
end

-- The next turn: after every turn given so far.
local function grp_next_turn(ctx)
  if not ctx.turn then
    local last = redis.call('ZRANGE', ctx.gturn, -1, -1, 'WITHSCORES')
    ctx.turn = tonumber(last[2]) or 0
  end
  ctx.turn = ctx.turn + 1
  return string.format('%.0f', ctx.turn)
end

local function grp_leased_count(ctx, g)
  return redis.call('ZLEXCOUNT', ctx.gleased, '[' .. g .. '\0', '(' .. g .. '\1')
end

local function grp_head(ctx, g)
  return redis.call('ZRANGEBYLEX', ctx.gready, '[' .. g .. '\0', '(' .. g .. '\1', 'LIMIT', 0, 1)[1]
end

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

-- A grouped job becomes ready (the parsed record t gives its place).
local function grp_ready(ctx, g, t, id)
  redis.call('ZADD', ctx.gready, 0, grp_member(g, t[F.PRIO], t[F.SEQ], id))
  grp_recheck(ctx, g)
end

-- A grouped job's lease ended (whatever comes next for the job): its slot is free again.
local function grp_unlease(ctx, g, id)
  if redis.call('ZREM', ctx.gleased, g .. '\0' .. id) == 1 then
    grp_recheck(ctx, g)
  end
end

-- A grouped job leaves the queue's live states for good (completed, cancelled, deleted): its
-- lease or its waiting place goes, and so does its group entry.
local function grp_forget(ctx, g, t, id)
  if t then
    redis.call('ZREM', ctx.gready, grp_member(g, t[F.PRIO], t[F.SEQ], id))
  end
  grp_unlease(ctx, g, id)
  redis.call('HDEL', ctx.gjob, id)
end

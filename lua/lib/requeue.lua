--- @include "lib/num"
--- @include "lib/record"
--- @include "lib/ready_score"
-- Puts a job whose lease has ended back to wait: in the scheduled set `delay_ms` from now, or,
-- with no delay, in the ready set at its original place (priority, then enqueue sequence).
-- A ready job's run_at becomes `ready_run_at` (nil keeps it). Changes the parsed record `t` to
-- match; the caller writes it. A grouped job (group g, context gctx of lib/groups) waits in its
-- group instead of the ready set.
local function requeue(t, id, ready_key, scheduled_key, now, delay_ms, ready_run_at, gctx, g)
  if delay_ms > 0 then
    local run_at = num(now + delay_ms)
    t[F.STATE] = 'scheduled'
    t[F.RUN_AT] = run_at
    redis.call('ZADD', scheduled_key, run_at, id)
  else
    t[F.STATE] = 'ready'
    if ready_run_at then
      t[F.RUN_AT] = ready_run_at
    end
    if g then
      gctx.ready(g, t[F.PRIO], t[F.SEQ], id)
    else
      redis.call('ZADD', ready_key, ready_score(t[F.PRIO], t[F.SEQ]), id)
    end
  end
end

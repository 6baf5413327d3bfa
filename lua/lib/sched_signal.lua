-- Tells every schedule driver of the queue that its schedules changed: one entry on the
-- queue's schedule stream (capped at one entry), which drivers block on with XREAD, so each
-- of them wakes (unlike the wake set, where one signal wakes one worker). Advisory, like
-- lib/wake: drivers also wake on their timeout, so a key of another type is ignored.
local function sched_signal(events_key, id)
  redis.pcall('XADD', events_key, 'MAXLEN', '1', '*', 'id', id)
end

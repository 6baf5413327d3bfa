-- Wakes one worker blocked on the queue's wake set (BZPOPMIN): the set holds at most one
-- member, so it stays one tiny key however many jobs arrive. The signal is advisory (workers
-- also wake on their timeout), so a wake key of another type is ignored rather than refused:
-- pcall keeps it from aborting a script after its first write.
local function wake(wake_key)
  redis.pcall('ZADD', wake_key, 0, 'w')
end

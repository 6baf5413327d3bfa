-- What a transition tells the outside, for the jobs it wrote: the queue's event stream
-- (docs/events.md) and the result waiters (JobRef.result). Both are off until asked for, and
-- then cost nothing more than the check of two fields of the queue's meta hash:
--   events  the stream's MAXLEN when the queue's events are on (store.set_events), else unset
--   wait    the latest deadline (ms) of a result waiter of the queue (lua/wait_result.lua)
-- `stream` is the queue's event stream; `waiters` .. 'n' .. <id> counts a job's result waiters
-- and `waiters` .. 'q' .. <id> is the list they block on (the script's wait_prefix).
-- `m` is {events, wait} as the script read them with its own read of the meta hash (false when
-- unset), or nil to read them here (one HMGET). `list` is flat: id, record, id, record, ...
-- (the records as written, lib/record). For each job: an entry in the stream, capped with
-- MAXLEN ~ (event, id, name, attempt, worker, at = the script's clock); and when the job is
-- final (completed, dead, cancelled) and a waiter registered for it (its counter), one element
-- per waiter (at most 100) pushed on its list, which expires a minute later, read or not.
-- Every write is a pcall: a key of another type there (a hostile keyspace) loses the event
-- or the signal, never the transition, whose writes are done by then.
-- Returns `m`, so that a script calling it in a loop reads the meta hash once.
local EV_HEAD = '^j3\n%l+\n(%d+)\n%d*\n([^\n]*)\n%d*\n%d*\n%d*\n[^\n]*\n%d*\n[^\n]*\n'
  .. '%-?%d+\n%d+\n%d+\n%d+\n%d+\n([^\n]*)\n'
local EV_FINAL = {completed = true, dead = true, cancelled = true}
local function events(meta, stream, waiters, m, now, kind, list)
  if not m then
    m = redis.call('HMGET', meta, 'events', 'wait')
  end
  local maxlen = m[1]
  local waiting = m[2] and EV_FINAL[kind] and tonumber(m[2]) > now
  if not maxlen and not waiting then
    return m
  end
  local at = string.format('%d', now)
  for i = 1, #list, 2 do
    local id = list[i]
    if maxlen then
      local attempt, worker, name = string.match(list[i + 1], EV_HEAD)
      redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'event', kind, 'id', id,
        'name', name or '', 'attempt', attempt or '', 'worker', worker or '', 'at', at)
    end
    if waiting then
      local n_key = waiters .. 'n' .. id
      local n = tonumber(redis.pcall('GET', n_key))
      if n then
        local q_key = waiters .. 'q' .. id
        redis.call('DEL', n_key)
        for _ = 1, math.min(n, 100) do
          redis.pcall('RPUSH', q_key, kind)
        end
        redis.call('PEXPIRE', q_key, 60000)
      end
    end
  end
  return m
end

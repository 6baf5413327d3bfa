-- A schedule is ONE string, the value of field <id> in the queue's schedules hash (layout s1):
--   's1' \n digest \n paused \n runs \n last_run \n next \n created \n limit \n end_at \n
--   definition
-- digest is the SHA-1 (hex) of the definition, which the client encodes (msgpack) and the
-- scripts never decode: it names the version a driver computed its ticks from. next is the
-- pending tick (ms; '' once the schedule has run its course), kept while paused; the due set
-- holds the schedules that are neither paused nor finished, scored by next. limit and end_at
-- ('' = none) are copied out of the definition so that the tick script can enforce them.
-- Mirrored by redisq/_core/schedules.py.
local S = {DIGEST = 1, PAUSED = 2, RUNS = 3, LAST = 4, NEXT = 5, CREATED = 6, LIMIT = 7,
  END_AT = 8, DEF = 9}
local SCHED_PATTERN = '^s1\n(%x+)\n([01])\n(%d+)\n(%d*)\n(%d*)\n(%d+)\n(%d*)\n(%d*)\n()'

-- Parses a stored schedule; nil when it is not a layout-s1 record.
local function sched_parse(s)
  local t = {string.match(s, SCHED_PATTERN)}
  if not t[1] then
    return nil
  end
  t[9] = string.sub(s, t[9])
  return t
end

-- Packs a parsed (and changed) schedule back into its stored string.
local function sched_pack(t)
  return 's1\n' .. t[1] .. '\n' .. t[2] .. '\n' .. t[3] .. '\n' .. t[4] .. '\n' .. t[5] .. '\n'
    .. t[6] .. '\n' .. t[7] .. '\n' .. t[8] .. '\n' .. t[9]
end

-- The caps of the schedule scripts, so that no accepted argument makes a script work long:
-- schedules per queue (each read by `redisq schedules` and the drivers' peeks), jobs one tick
-- may enqueue (missed='all' catches up at most this many ticks), and bytes of a stored
-- definition (its payload included). Mirrored by redisq/_core/schedules.py; a test checks
-- parity.
local SCHED_CAPS = {
  SCHEDULES = 1000,
  CATCH_UP = 100,
  DEF_BYTES = 1048576,
}

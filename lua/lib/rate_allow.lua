-- The test of a queue's rate limit (lib/rate: the fields it reads), apart so that a read-only
-- script (counts) can ask it without the writes.
-- How many jobs the limit lets start now (math.huge: no limit), the bucket's position
-- (microseconds) and interval, and when none may: the ms until the next one may.
local function rate_allow(spec, at, now)
  local now_us = now * 1000
  local interval, tolerance = 0, 0
  if spec then
    local iv, tol = string.match(spec, '^(%d+) (%d+)')
    interval, tolerance = tonumber(iv) or 0, tonumber(tol) or 0
  end
  local tat = tonumber(at) or 0
  if tat < now_us then
    tat = now_us
  end
  if tat > now_us + tolerance then
    return 0, tat, interval, math.ceil((tat - tolerance - now_us) / 1000)
  end
  if interval <= 0 then
    return math.huge, tat, interval, 0
  end
  return math.floor((now_us + tolerance - tat) / interval) + 1, tat, interval, 0
end

-- Writes records with HSET jobs id rec id rec ..., at most 1,000 pairs per call so that
-- `unpack` stays far below Lua's C stack limit. `list` is flat: id, record, id, record, ...
local function write_jobs(jobs_key, list)
  local n = #list
  for i = 1, n, 2000 do
    redis.call('HSET', jobs_key, unpack(list, i, math.min(i + 1999, n)))
  end
end

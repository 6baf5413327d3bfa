-- The one clock: the Redis server's TIME, read once per script. `override` is the optional
-- test-clock value (ARGV now_ms); production clients always send ''.
local function now_ms(override)
  if override ~= '' then
    return tonumber(override)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

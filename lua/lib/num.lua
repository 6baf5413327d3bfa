-- Formats an integer-valued number for Redis without exponent or fraction ('%.0f' is exact for
-- integers below 2^53, unlike tostring, which keeps 14 significant digits).
local function num(n)
  return string.format('%.0f', n)
end

-- Formats an integer-valued number for Redis without exponent or fraction. '%d' is exact for
-- the integers redisq stores (all below 2^53) and about twice as fast as '%.0f' or tostring,
-- which would also print 14 significant digits at most.
local num_fmt = string.format
local function num(n)
  return num_fmt('%d', n)
end

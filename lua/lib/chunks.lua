-- Calls a variadic command with the items of `list` in chunks, so that `unpack` never goes
-- past Lua's C stack limit (about 8,000 values; Dramatiq #433). `head` holds the fixed leading
-- arguments (command, key). Returns the sum of the integer replies (members added by ZADD,
-- fields removed by HDEL, ...) of the two-argument form.
local CHUNK = 2000
local function chunks(head, list)
  local n = #list
  local total = 0
  for i = 1, n, CHUNK do
    local j = math.min(i + CHUNK - 1, n)
    if #head == 2 then
      local r = redis.call(head[1], head[2], unpack(list, i, j))
      if type(r) == 'number' then
        total = total + r
      end
    else
      local args = {}
      for k = 1, #head do
        args[#args + 1] = head[k]
      end
      for k = i, j do
        args[#args + 1] = list[k]
      end
      redis.call(unpack(args))
    end
  end
  return total
end

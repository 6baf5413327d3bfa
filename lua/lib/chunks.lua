-- Calls a variadic command with the items of `list` in chunks, so that `unpack` never goes
-- past Lua's C stack limit (about 8,000 values; Dramatiq #433). `head` holds the fixed leading
-- arguments (command, key).
local CHUNK = 2000
local function chunks(head, list)
  local n = #list
  for i = 1, n, CHUNK do
    local j = math.min(i + CHUNK - 1, n)
    if #head == 2 then
      redis.call(head[1], head[2], unpack(list, i, j))
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
end

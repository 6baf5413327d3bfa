-- Frees the unique keys of jobs that leave the live states (completed, dead, cancelled,
-- deleted). `list` is flat: unique key, id, ...; entries with an empty key are skipped. Only
-- an entry that still points at its job is removed. One HMGET and at most one HDEL (per
-- 1,000 keys).
local function clear_unique(unique_key, list)
  local ukeys, ids = {}, {}
  for i = 1, #list, 2 do
    if list[i] and list[i] ~= '' then
      ukeys[#ukeys + 1] = list[i]
      ids[#ids + 1] = list[i + 1]
    end
  end
  for i = 1, #ukeys, 1000 do
    local j = math.min(i + 999, #ukeys)
    local found = redis.call('HMGET', unique_key, unpack(ukeys, i, j))
    local gone = {}
    for k = i, j do
      if found[k - i + 1] == ids[k] then
        gone[#gone + 1] = ukeys[k]
      end
    end
    if #gone > 0 then
      redis.call('HDEL', unique_key, unpack(gone))
    end
  end
end

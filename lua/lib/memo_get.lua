-- Reads what a claim handed out under the caller's request id (see memo_set), as a flat list
-- id, token, id, token, ...; nil when there is no memo.
local function memo_get(memo_key)
  local v = redis.call('GET', memo_key)
  if not v then
    return nil
  end
  local out = {}
  for part in string.gmatch(v, '[^\n]+') do
    out[#out + 1] = part
  end
  return out
end

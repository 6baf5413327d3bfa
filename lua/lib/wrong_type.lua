--- @include "lib/status"
-- Builds the refusal for a key that holds a value of another type than redisq stores there,
-- naming the key and the type it holds.
local function wrong_type(key)
  local t = redis.call('TYPE', key)
  if type(t) == 'table' then
    t = t['ok']
  end
  return {STATUS.WRONG_TYPE, key, t}
end

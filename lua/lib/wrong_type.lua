--- @include "lib/status"
-- Builds the refusal for a key that holds a value of another type than redisq stores there,
-- naming the key and the type it holds. `reply` is the error a redis.pcall returned, when one
-- did: any other error than WRONGTYPE (an ACL denial, OOM) is raised as the server gave it,
-- as redis.call would have (the pcall only meant to catch a wrong type).
local function wrong_type(key, reply)
  local err = reply and reply['err']
  if err and not string.find(tostring(err), 'WRONGTYPE', 1, true) then
    error(reply)
  end
  local t = redis.call('TYPE', key)
  if type(t) == 'table' then
    t = t['ok']
  end
  return {STATUS.WRONG_TYPE, key, t}
end

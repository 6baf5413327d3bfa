--[[ set_events: (queue) -> events on | off
  Turns the queue's event stream on (capped at about maxlen entries, XADD MAXLEN ~) or off.
  While on, the scripts append an entry per job event to it (lib/events); while off, they
  write nothing and the stream is left as it is (read it, or delete it with the queue's
  purge). Setting the same value again changes nothing.
  KEYS[1] meta        hash   schema, events (the stream's maxlen; unset = off)
  ARGV[1] lib_version str    redisq version, recorded in meta on the first write
  ARGV[2] maxlen      int    0 = off; else the stream's cap (1 to 10,000,000)
  Returns: {status}
  Status: OK, WRONG_TYPE, SCHEMA_MISMATCH, BAD_ARGUMENT
  Cost: O(1)
]]
--- @include "lib/status"
--- @include "lib/check_queue"
--- @include "lib/init_meta"

local meta_key = KEYS[1]
local lib_version = ARGV[1]
local maxlen_arg = ARGV[2]
local maxlen = tonumber(maxlen_arg)

if not maxlen or maxlen < 0 or maxlen > 10000000 or maxlen % 1 ~= 0 then
  return {STATUS.BAD_ARGUMENT, 'maxlen'}
end
local err, is_new = check_queue({meta_key, 'hash'})
if err then
  return err
end
if is_new then
  init_meta(meta_key, lib_version)
end
if maxlen == 0 then
  redis.call('HDEL', meta_key, 'events')
else
  redis.call('HSET', meta_key, 'events', maxlen_arg)
end
return {STATUS.OK}
